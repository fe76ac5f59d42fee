"""Issue 17's cases through the one pipeline's three doors: /predict, /predict/batch and the
folder command. Each is built from dataset films; the same pixels two ways: the answer
matches the plain JPEG's probability within 0.02, or the file is refused with its code, or
the film is marked not assessable (no label, not flagged, after the judged films)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from tests.builders import films as fb
from tests.builders.dicom import dicom_bytes
from tests.servers import REPO

pytestmark = pytest.mark.realdata

NORMAL = "test/NORMAL/IM-0001-0001.jpeg"
PNEUMONIA = "test/PNEUMONIA/person100_bacteria_475.jpeg"
TOLERANCE = 0.02


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    outcome: str  # "match", "look" or "refused"
    detail: str = ""  # look: a reason code; refused: the error code; match: a warning's words


def cases(gray: np.ndarray) -> list[Case]:
    wide = gray.astype(np.uint16) * 16
    extended = fb.encapsulated(gray, fb.extended_jpeg(gray), fb.SYNTAXES["jpeg-extended"])
    lossless = fb.encapsulated(gray, fb.lossless_jpeg(gray), fb.SYNTAXES["jpeg-lossless"])
    sv1 = fb.encapsulated(wide, fb.lossless_jpeg(wide, 12), fb.SYNTAXES["jpeg-lossless-sv1"],
                          bits=12)
    progressive_frame = fb.extended_jpeg(gray, progressive=True)
    progressive = fb.encapsulated(gray, progressive_frame, fb.SYNTAXES["jpeg-extended"])
    rescaled = dicom_bytes(wide, bits=12, slope=1.0, intercept=0.0)
    window = dicom_bytes(gray, window=(128, 256))
    from tests.builders.corpus import progressive_cut_at_scan

    return [
        Case("12-bit-no-window", fb.twelve_bit_no_window(gray), "match"),
        Case("12-bit-in-16-bit", fb.twelve_bits_in_16(gray), "match"),
        Case("voi-lut-descriptor-16-entries-12", fb.voi_lut_16_bit_descriptor_12_bit_entries(
            gray), "match"),
        Case("presentation-inverse", fb.presentation_inverse_on_monochrome2(gray), "match"),
        Case("monochrome1-inverse", fb.monochrome1_with_inverse(gray), "match"),
        Case("png16-12-bit-sbit", fb.png16_twelve_bit(gray, 12), "match"),
        Case("png16-12-bit-no-sbit", fb.png16_twelve_bit(gray, None), "match",
             "uses only 12 of its 16 bits"),
        Case("bare-dataset", fb.bare_dataset(gray), "match"),
        Case("bare-compressed", fb.bare_compressed_dataset(gray), "refused",
             "dicom_no_file_meta"),
        Case("rgb-secondary-capture", fb.colour_container(gray, "RGB"), "match"),
        Case("ybr-full-422-secondary-capture", fb.colour_container(gray, "YBR_FULL_422"),
             "match"),
        Case("coloured-rgb", fb.colour_container(gray, "RGB", tint=60), "refused",
             "dicom_not_grayscale"),
        Case("rescale-slope-0", fb.with_raw_tag(rescaled, 0x00281053, "DS", b"0 "), "refused",
             "dicom_unusable_rescale"),
        Case("rescale-slope-nan", fb.with_raw_tag(rescaled, 0x00281053, "DS", b"NaN "),
             "refused", "dicom_unusable_rescale"),
        Case("rescale-slope-1e308", fb.with_raw_tag(rescaled, 0x00281053, "DS", b"1e308 "),
             "refused", "dicom_unusable_rescale"),
        Case("window-width-0", fb.with_raw_tag(window, 0x00281051, "DS", b"0 "), "match",
             "ignored"),
        Case("window-width-negative", fb.with_raw_tag(window, 0x00281051, "DS", b"-40 "),
             "match", "ignored"),
        Case("window-nan", fb.with_raw_tag(window, 0x00281050, "DS", b"NaN "), "match",
             "ignored"),
        Case("window-width-1-binary-film", fb.with_raw_tag(window, 0x00281051, "DS", b"1 "),
             "look", "no_contrast"),
        Case("constant-voi-lut", fb.voi_lut(gray, np.full(256, 200), 8), "match", "constant"),
        Case("jpeg-extended", extended, "match"),
        Case("jpeg-extended-cut", fb.with_frame(extended, fb.cut(fb.frame_of(extended))),
             "refused", "corrupt_image"),
        Case("jpeg-lossless-cut", fb.with_frame(lossless, fb.cut(fb.frame_of(lossless))),
             "refused", "corrupt_image"),
        Case("jpeg-lossless-sv1-12-bit", sv1, "match"),
        Case("jpeg-lossless-sv1-12-bit-cut", fb.with_frame(sv1, fb.cut(fb.frame_of(sv1))),
             "refused", "corrupt_image"),
        Case("jpeg-progressive-cut", fb.with_frame(progressive, progressive_cut_at_scan(
            progressive_frame)), "refused", "corrupt_image"),
        Case("worker-poisoning-30000x30000", fb.poisoning_jpeg_extended(gray), "refused",
             "image_too_large"),
        Case("negative-export", fb.jpeg_of(255 - gray), "look", "inverted"),
        Case("sideways", fb.jpeg_of(np.ascontiguousarray(np.rot90(gray))), "look", "rotated"),
        Case("upside-down", fb.jpeg_of(np.ascontiguousarray(gray[::-1, ::-1])), "look",
             "rotated"),
        Case("lower-leg-cr", fb.edited(dicom_bytes(gray, modality="CR"),
                                       BodyPartExamined="LEG"), "look", "not_chest"),
        Case("view-rlo", dicom_bytes(gray, view="RLO"), "look", "not_frontal"),
        Case("view-llo", dicom_bytes(gray, view="LLO"), "look", "not_frontal"),
        Case("view-lateral-decubitus", dicom_bytes(gray, view="LATERAL DECUBITUS"), "look",
             "not_frontal"),
        Case("view-ll-and-pa", fb.edited(dicom_bytes(gray), ViewPosition=["LL", "PA"]),
             "look", "not_frontal"),
        Case("view-unknown-term", dicom_bytes(gray, view="XYZ"), "match",
             "not a defined term"),
    ]


@pytest.fixture(scope="module")
def films(data_dir) -> dict[str, tuple[float, list[Case]]]:
    """source -> (its plain JPEG's probability, its cases); the reference is asked below."""
    return {source: (None, cases(fb.gray_of(data_dir / source)))
            for source in (NORMAL, PNEUMONIA)}


def _reference(client, data_dir, source: str) -> float:
    gray = fb.gray_of(data_dir / source)
    body = client.post("/predict", files={"file": ("x.jpeg", fb.jpeg_of(gray))}).json()
    assert body["assessable"], body
    return body["probability"]


def _check_answer(case: Case, status: int, body: dict, reference: float) -> None:
    """One door's answer for one case (a /predict body, or a batch entry with its status)."""
    if case.outcome == "refused":
        code = body["error"] if isinstance(body.get("error"), str) else body["error"]["error"]
        assert status >= 400 and code == case.detail, (case.name, status, body)
        return
    assert status == 200, (case.name, body)
    if case.outcome == "look":
        assert body["assessable"] is False and case.detail in body["reasons"], (case.name, body)
        assert body["label"] is None and body["probability"] is None and not body.get("flagged")
        return
    assert body["assessable"], (case.name, body["reasons"], body["warnings"])
    assert abs(body["probability"] - reference) < TOLERANCE, (case.name, body["probability"],
                                                               reference)
    if case.detail:
        assert any(case.detail in w for w in body["warnings"]), (case.name, body["warnings"])


@pytest.mark.parametrize("source", [NORMAL, PNEUMONIA], ids=["normal", "pneumonia"])
def test_every_case_through_predict(client, data_dir, films, source):
    reference = _reference(client, data_dir, source)
    for case in films[source][1]:
        response = client.post("/predict", files={"file": ("upload.bin", case.data)})
        _check_answer(case, response.status_code, response.json(), reference)


@pytest.mark.parametrize("source", [NORMAL, PNEUMONIA], ids=["normal", "pneumonia"])
def test_every_case_through_the_batch_and_its_worklist(client, data_dir, films, source):
    reference = _reference(client, data_dir, source)
    batch = films[source][1]
    body = client.post("/predict/batch", files=[("files", (c.name, c.data)) for c in batch])
    assert body.status_code == 200
    answer = body.json()
    for case, entry in zip(batch, answer["results"], strict=True):
        status = entry["error"]["status"] if entry["error"] else 200
        _check_answer(case, status, entry if not entry["error"] else entry, reference)
    looks = sum(case.outcome == "look" for case in batch)
    assert answer["needs_human_look"] == looks
    rows = list(csv.DictReader(__import__("io").StringIO(client.post(
        "/predict/batch?format=csv", files=[("files", (c.name, c.data)) for c in batch]).text)))
    groups = [row["group"] for row in rows]
    judged = groups.count("scored")
    assert groups == ["scored"] * judged + ["needs a human look"] * looks + \
        ["not scored"] * (len(rows) - judged - looks)
    assert all(row["probability"] == "" and row["rank"] == "" and row["triage_score"] == ""
               for row in rows if row["group"] == "needs a human look")


def test_the_poisoning_frame_leaves_the_workers_able_to_score_ordinary_films(client, data_dir):
    poison = fb.poisoning_jpeg_extended(fb.gray_of(data_dir / NORMAL))
    for _ in range(4):  # more than the workers there are: none may be left unable
        response = client.post("/predict", files={"file": ("x.dcm", poison)})
        assert response.status_code == 413 and response.json()["error"] == "image_too_large"
    for film in sorted((data_dir / "test" / "NORMAL").glob("*.jpeg"))[:6]:
        response = client.post("/predict", files={"file": (film.name, film.read_bytes())})
        assert response.status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_every_case_through_the_folder_command(client, data_dir, films, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    batch = films[NORMAL][1]
    for case in batch:
        (folder / case.name).write_bytes(case.data)
    ordinary = sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[:3]
    for film in ordinary:  # scored after the poisoning file, by the same two workers
        (folder / ("z-" + film.name)).write_bytes(film.read_bytes())
    out = tmp_path / "worklist.csv"
    result = subprocess.run(
        [sys.executable, "-m", "app", "score", str(folder), "--out", str(out), "--workers",
         "2", "--quiet"], capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "PNEUMONIA_MODEL_DIR": str(REPO / "models")})
    assert result.returncode == 0, result.stderr[-2000:]
    looks = sum(case.outcome == "look" for case in batch)
    assert f"{looks} need a human look" in result.stdout
    rows = {row["file"]: row for row in csv.DictReader(out.open())}
    reference = _reference(client, data_dir, NORMAL)
    for case in batch:
        row = rows[case.name]
        if case.outcome == "refused":
            assert row["group"] == "not scored" and row["error"], case.name
        elif case.outcome == "look":
            assert row["group"] == "needs a human look" and case.detail in row["reasons"]
            assert row["probability"] == "" and row["triage_score"] == "" and row["rank"] == ""
        else:
            assert row["group"] == "scored", (case.name, row)
            assert abs(float(row["probability"]) - reference) < TOLERANCE, case.name
    for film in ordinary:
        assert rows["z-" + film.name]["group"] == "scored"
