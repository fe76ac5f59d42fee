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
    out = tmp_path / "worklist.csv"
    run = subprocess.run(
        [sys.executable, "-m", "app", "score", str(folder), "--out", str(out), "--quiet",
         "--workers", "1"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PNEUMONIA_MODEL_DIR": str(REPO / "models"),
             "PNEUMONIA_STATE_DIR": str(tmp_path / "state")})
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {row["file"]: row for row in csv.DictReader(out.open())}
    assert "JPEG XL" in rows["xl.dcm"]["error"]
    assert "damaged" not in rows["xl.dcm"]["error"]
    assert rows["film.jpeg"]["error"] == ""
