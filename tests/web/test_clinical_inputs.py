"""DICOM, phone pictures (MPO), worklists of many files, and the folder command."""

import csv
import html
import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.builders.dicom import PATIENT_ID, PATIENT_NAME, dicom_bytes
from tests.builders.images import encode, jpeg_bytes, model_output, xray_like
from tests.servers import REPO

SOURCE = "test/NORMAL/IM-0001-0001.jpeg"  # a test-split film; its JPEG score is the reference
SOURCE_PNEUMONIA = "test/PNEUMONIA/person100_bacteria_475.jpeg"


def _post(client, data: bytes, name: str = "upload.bin"):
    return client.post("/predict", files={"file": (name, data, "application/octet-stream")})


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def _variants(gray: np.ndarray) -> dict[str, bytes]:
    # 16-bit: 12 stored bits, rescale slope 2 and intercept -1024, and the window that shows
    # the rescaled values (32 p - 824) exactly as the 8-bit picture p.
    wide = gray.astype(np.uint16) * 16 + 100
    return {
        "8-bit-monochrome2": dicom_bytes(gray),
        "16-bit-rescale-and-window": dicom_bytes(wide, bits=12, slope=2.0, intercept=-1024,
                                                 window=(3256.5, 8161)),
        "monochrome1": dicom_bytes(255 - gray, photometric="MONOCHROME1"),
        "jpeg-baseline": dicom_bytes(gray, syntax="jpeg-baseline"),
        "jpeg-2000": dicom_bytes(gray, syntax="jpeg2000"),
        "rle": dicom_bytes(gray, syntax="rle"),
        "no-preamble": dicom_bytes(gray, preamble=False),
    }


@pytest.mark.realdata
@pytest.mark.parametrize("source", [SOURCE, SOURCE_PNEUMONIA], ids=["normal", "pneumonia"])
def test_dicom_variants_score_like_their_source_jpeg(client, data_dir, source):
    path = data_dir / source
    reference = _post(client, path.read_bytes(), "x.jpeg").json()["probability"]
    for name, data in _variants(_gray(path)).items():
        response = _post(client, data, "no-extension")  # recognised by content, not name
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        assert body["image"]["format"] == "DICOM"
        assert abs(body["probability"] - reference) < 0.02, (name, body["probability"])
        assert body["image"]["dicom"]["modality"] == "DX"


def test_dicom_reports_the_tags_that_drove_the_decision(client):
    body = _post(client, dicom_bytes(xray_like(), view=None)).json()
    dicom = body["image"]["dicom"]
    assert dicom["view_position"] is None and dicom["body_part"] == "CHEST"
    assert dicom["study_date"] == "20241126" and dicom["window"].startswith("data range")
    assert any("View Position (0018,5101) is absent" in w for w in body["warnings"])


@pytest.mark.parametrize(("kwargs", "code", "words"), [
    ({"modality": "CT"}, "dicom_modality", "Modality (0008,0060) is CT"),
    ({"modality": "MR"}, "dicom_modality", "is MR"),
    ({"modality": "US"}, "dicom_modality", "is US"),
    ({"frames": 3}, "dicom_multi_frame", "3 frames"),
    ({"with_pixels": False}, "dicom_no_pixel_data", "no image"),
    ({"view": "LL"}, "dicom_lateral_view", "View Position (0018,5101) is LL"),
], ids=["ct", "mr", "us", "multi-frame", "no-pixel-data", "lateral"])
def test_dicom_that_must_not_be_scored_is_refused_with_its_reason(client, kwargs, code, words):
    response = _post(client, dicom_bytes(xray_like(), **kwargs))
    assert response.status_code == 422
    assert response.json()["error"] == code and words in response.json()["detail"]


def test_patient_identity_never_leaves_the_request(client, caplog):
    data = dicom_bytes(xray_like())
    assert PATIENT_NAME.encode() in data and PATIENT_ID.encode() in data
    secrets = ("Doe", "Jane", "Secret", "SECRET", PATIENT_ID, "20200229", "ACC-99")
    with caplog.at_level(logging.DEBUG):
        api = _post(client, data).text
        page = client.post("/", files={"files": ("scan.dcm", data)},
                           headers={"Accept": "text/html"}).text
        batch = client.post("/predict/batch", files=[("files", ("a.dcm", data)),
                                                     ("files", ("b.dcm", data))]).text
        refused = _post(client, dicom_bytes(xray_like(), modality="CT")).text
    for text in (api, page, batch, refused, caplog.text):
        for secret in secrets:
            assert secret not in text


def test_phone_multi_picture_jpeg_scores_like_its_first_picture(client):
    first, second = Image.fromarray(xray_like(seed=1)), Image.fromarray(xray_like(seed=9))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second], quality=95)
    mpo = _post(client, buffer.getvalue()).json()
    assert mpo["image"]["format"] == "MPO"
    alone = _post(client, encode(first, "JPEG", quality=95)).json()
    assert abs(model_output(mpo) - model_output(alone)) < 1e-6


@pytest.mark.realdata
def test_worklist_of_50_films_a_corrupt_file_and_a_dicom_in_one_request(client, data_dir):
    films = sorted((data_dir / "test").glob("*/*.jpeg"))[::12][:50]
    assert len(films) == 50
    files = [(f.name, f.read_bytes()) for f in films]
    files.insert(20, ("broken.jpeg", films[0].read_bytes()[:3000]))
    files.insert(35, ("film.dcm", dicom_bytes(_gray(films[1]))))
    multipart = [("files", (name, data, "application/octet-stream")) for name, data in files]
    response = client.post("/predict/batch", files=multipart)
    assert response.status_code == 200
    body = response.json()
    results = body["results"]
    assert [r["filename"] for r in results] == [name for name, _ in files]  # upload order
    assert [r["index"] for r in results] == list(range(52))
    # A test film the input guard finds unlike the training films needs a human look.
    judged = body["scored"]
    assert body["count"] == 52 and judged + body["needs_human_look"] == 51
    assert results[20]["error"]["error"] == "corrupt_image" and results[20]["probability"] is None
    assert results[35]["image"]["format"] == "DICOM"
    # Each probability is the single-file API's.
    for entry in results[:5] + results[45:]:
        single = model_output(_post(client, dict(files)[entry["filename"]]).json())
        assert abs(model_output(entry) - single) < 1e-6
    # The CSV: the same files, highest probability first, the corrupt one last with its error.
    text = client.post("/predict/batch?format=csv", files=multipart).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 52
    by_name = {r["filename"]: r for r in results}
    shown = [float(r["probability"]) for r in rows[:judged]]
    assert shown == sorted(shown, reverse=True)
    assert all(r["group"] == "needs a human look" and r["probability"] == ""
               for r in rows[judged:51])
    for row in rows[:judged]:
        assert abs(float(row["probability"]) - by_name[row["file"]]["probability"]) < 1e-6
        assert row["decision"] == by_name[row["file"]]["decision_text"]
        assert row["triage_score"] == by_name[row["file"]]["triage_score_text"]
    assert rows[-1]["file"] == "broken.jpeg" and "damaged" in rows[-1]["error"]


def test_worklist_limits_hold(client_factory):
    with client_factory(max_batch_files=3, max_batch_bytes=20_000) as small:
        four = [("files", (f"{i}.jpeg", jpeg_bytes(seed=i))) for i in range(4)]
        response = small.post("/predict/batch", files=four)
        assert response.status_code == 413 and response.json()["error"] == "too_many_files"
        big = [("files", (f"{i}.jpeg", jpeg_bytes(120, 120, mode="RGB", seed=i)))
               for i in range(3)]
        response = small.post("/predict/batch", files=big)
        assert response.status_code == 413 and response.json()["error"] == "file_too_large"


@pytest.mark.realdata
def test_page_without_javascript_renders_a_sorted_worklist_with_csv(client, data_dir):
    films = sorted((data_dir / "test").glob("*/*.jpeg"))[::150][:4]  # assessable films
    files = [("files", (f"film-{i}.jpeg", f.read_bytes())) for i, f in enumerate(films)]
    files.append(("files", ("notes.txt", b"not an image")))
    page = client.post("/", files=files, headers={"Accept": "text/html"})
    assert page.status_code == 200
    text = page.text
    assert 'id="worklist-table"' in text and "not an image we can read" in text
    assert 'download="worklist.csv"' in text and "data:text/csv" in text
    cells = [html.unescape(c.split(">", 1)[1].split("<")[0])
             for c in text.split('<td class="score"')[1:]]
    shown = [int(c) for c in cells[:4]]
    assert "4 scored" in text and "1 not scored." in text
    assert cells[4] == "–"  # the text file: not scored, last
    assert shown == sorted(shown, reverse=True)


@pytest.mark.slow
@pytest.mark.realdata
def test_folder_command_gives_the_api_probabilities(client, data_dir, tmp_path):
    folder = tmp_path / "archive"
    (folder / "day2").mkdir(parents=True)
    films = sorted((data_dir / "test").glob("*/*.jpeg"))[::60][:8]
    for i, film in enumerate(films):
        target = folder / ("day2" if i % 2 else "") / film.name
        target.write_bytes(film.read_bytes())
    (folder / "scan-without-extension").write_bytes(dicom_bytes(_gray(films[0])))
    (folder / "readme.txt").write_text("not an image")
    (folder / "lateral.dcm").write_bytes(dicom_bytes(_gray(films[1]), view="LL"))
    out = tmp_path / "results.csv"
    result = subprocess.run(
        [sys.executable, "-m", "app", "score", str(folder), "--out", str(out), "--workers", "2"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**__import__("os").environ, "PNEUMONIA_MODEL_DIR": str(REPO / "models")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "11 files: 9 scored" in result.stdout and "file/s" in result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 11
    refused = {row["file"]: row["error"] for row in rows[9:]}
    assert "View Position (0018,5101) is LL" in refused["lateral.dcm"]  # not a crash
    assert "not an image" in refused["readme.txt"]
    for row in rows[:9]:
        data = (folder / row["file"]).read_bytes()
        api = _post(client, data).json()["probability"]
        assert abs(float(row["probability"]) - api) < 1e-5, row["file"]


@pytest.mark.slow
@pytest.mark.realdata
def test_folder_command_asks_the_model_it_is_told_to(client, data_dir, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    films = sorted((data_dir / "test").glob("*/*.jpeg"))[::150][:4]
    for film in films:
        (folder / film.name).write_bytes(film.read_bytes())
    out = tmp_path / "results.csv"
    result = subprocess.run(
        [sys.executable, "-m", "app", "score", str(folder), "--out", str(out), "--quiet",
         "--model", "pneumonia_compact"], capture_output=True, text=True, timeout=300,
        cwd=REPO, env={**__import__("os").environ, "PNEUMONIA_MODEL_DIR": str(REPO / "models"),
                       "PNEUMONIA_THRESHOLD": "0.01"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(model pneumonia_compact v" in result.stdout
    compact_threshold = client.get("/models").json()["models"][1]["threshold"]
    for row in csv.DictReader(out.open()):
        answer = client.post("/predict?model=pneumonia_compact",
                             files={"file": ("x", (folder / row["file"]).read_bytes())}).json()
        assert abs(float(row["probability"]) - answer["probability"]) < 1e-5
        # The default model's threshold override does not apply to another model.
        assert (row["flagged"] == "yes") == (answer["probability"] >= compact_threshold)
        assert row["decision"] == answer["decision_text"]
