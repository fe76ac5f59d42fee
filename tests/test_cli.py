"""The console command (app/cli.py) as a user runs it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from tests.builders.dicom import unsupported_films
from tests.builders.images import jpeg_bytes, xray_like
from tests.servers import REPO


@pytest.mark.slow
def test_score_folder_names_an_encoding_it_does_not_read_apart_from_damage(tmp_path):
    """The folder command's door: an intact film in JPEG XL gets its own row, whose error
    names the transfer syntax and never calls the film damaged; the other film is scored."""
    folder = tmp_path / "films"
    folder.mkdir()
    (folder / "xl.dcm").write_bytes(unsupported_films(xray_like(96, 80))["jpeg-xl"])
    (folder / "film.jpeg").write_bytes(jpeg_bytes())
    rows, printed = _score_folder(folder, tmp_path)
    assert "JPEG XL" in rows["xl.dcm"]["error"]
    assert "damaged" not in rows["xl.dcm"]["error"]
    assert rows["film.jpeg"]["error"] == ""


@pytest.mark.slow
@pytest.mark.realdata
def test_score_folder_ranks_no_film_outside_the_cards_population(tmp_path, data_dir):
    """The intended-use gate at the folder command's door: a real pneumonia film the model
    flags (the control), and the same pixels with each header fact outside the card's
    population: each needs a human look with its reason code, unranked, never flagged."""
    import numpy as np
    from PIL import Image

    from tests.builders import films as fb
    from tests.builders.dicom import dicom_bytes

    image = Image.open(sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[0])
    image = image.convert("L")
    image.thumbnail((256, 256))
    control = dicom_bytes(np.asarray(image))  # a DX chest PA film of a 4-year-old
    cases = {"adult.dcm": ("outside_intended_age", {"PatientAge": "045Y"}),
             "babygram.dcm": ("not_chest", {"BodyPartExamined": "CHESTABDOMEN"}),
             "mammography.dcm": ("not_chest_radiograph",
                                 {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.1.2"}),
             "raw.dcm": ("not_for_presentation",
                         {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.1.1.1"}),
             "raw-intent.dcm": ("not_for_presentation",
                                {"PresentationIntentType": "FOR PROCESSING"})}
    folder = tmp_path / "films"
    folder.mkdir()
    (folder / "control.dcm").write_bytes(control)
    for name, (_, tags) in cases.items():
        (folder / name).write_bytes(fb.edited(control, **tags))
    rows, printed = _score_folder(folder, tmp_path)
    assert (rows["control.dcm"]["flagged"], rows["control.dcm"]["rank"]) == ("yes", "1")
    for name, (code, _) in cases.items():
        row = rows[name]
        assert (row["group"], row["flagged"], row["rank"], row["triage_score"]) == (
            "needs a human look", "no", "", ""), row
        assert code in row["reasons"].split(), row
    assert f"{len(cases)} need a human look" in printed


def _score_folder(folder, tmp_path) -> tuple[dict[str, dict[str, str]], str]:
    """`python -m app score FOLDER` with the committed models: its CSV rows by file name,
    and what it printed."""
    out = tmp_path / "worklist.csv"
    run = subprocess.run(
        [sys.executable, "-m", "app", "score", str(folder), "--out", str(out), "--quiet",
         "--workers", "1"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PNEUMONIA_MODEL_DIR": str(REPO / "models"),
             "PNEUMONIA_STATE_DIR": str(tmp_path / "state")})
    assert run.returncode == 0, run.stderr[-2000:]
    return {row["file"]: row for row in csv.DictReader(out.open())}, run.stdout
