"""Every endpoint and every error case, with real generated files, on the committed model."""

import html
import io

import numpy as np
import pytest
from PIL import Image

from app.contract.card import read_card
from app.contract.errors import CorruptImageError, NotAnImageError, UnsupportedFormatError
from app.services.display import percent
from app.services.saved_model import find_model
from app.web.errors import describe
from tests.builders.borders import bordered
from tests.builders.dicom import unsupported_films
from tests.builders.images import (
    encode,
    exif_rotated_jpeg,
    jpeg_bytes,
    model_output,
    png16_bytes,
    png_bytes,
    xray_like,
)
from tests.servers import REPO

SERVED_CARD = read_card(find_model(REPO / "models", "pneumonia"))


def post(client, data: bytes, name: str = "xray.jpeg", field: str = "file"):
    return client.post("/predict", files={field: (name, data, "application/octet-stream")})


@pytest.mark.parametrize(
    ("data", "fmt", "mode", "size"),
    [
        (jpeg_bytes(mode="L"), "JPEG", "L", (80, 96)),
        (jpeg_bytes(mode="RGB"), "JPEG", "RGB", (80, 96)),
        (jpeg_bytes(mode="CMYK"), "JPEG", "CMYK", (80, 96)),
        (png_bytes(mode="L"), "PNG", "L", (80, 96)),
        (png_bytes(mode="RGBA"), "PNG", "RGBA", (80, 96)),
        (png16_bytes(), "PNG", "I;16", (80, 96)),
        (exif_rotated_jpeg(height=60, width=100), "JPEG", "L", (60, 100)),
        (jpeg_bytes(224, 224), "JPEG", "L", (224, 224)),
    ],
    ids=["jpeg-gray", "jpeg-rgb", "jpeg-cmyk", "png-gray", "png-rgba", "png-16bit",
         "jpeg-exif-rotated", "jpeg-224"],
)
def test_predict_valid_image_returns_probability(client, data, fmt, mode, size):
    response = post(client, data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0.0 <= model_output(body) <= 1.0
    card = SERVED_CARD  # the threshold and version come from the served model's card
    assert body["threshold"] == card.threshold
    # Generated blobs are small and unlike chest films: not assessable, so no label.
    assert body["assessable"] is False and body["label"] is None and body["probability"] is None
    assert body["model"] == {"name": "pneumonia", "version": card.version}
    cropped = body["image"].pop("borders_cropped")
    assert len(cropped) == 4 and all(isinstance(px, int) and px >= 0 for px in cropped)
    assert body["image"] == {"width": size[0], "height": size[1], "format": fmt, "mode": mode,
                             "dicom": None}
    assert all(isinstance(w, str) and w for w in body["warnings"])
    assert body["elapsed_ms"] > 0
    assert body["note"] == "Prioritisation aid, not a diagnosis."  # the card's disclaimer
    assert body["probability_text"] is None and "unlike_training" in body["reasons"]


def test_predict_16bit_png_equals_its_8bit_picture(client):
    # Scaled to the full range, a 16-bit image made as 8-bit*257 is the same picture.
    wide = model_output(post(client, png16_bytes()).json())
    narrow = model_output(post(client, png_bytes(mode="L")).json())
    assert abs(wide - narrow) < 1e-6


def test_predict_tells_the_borders_it_cut_before_scoring(client):
    """The served model (preprocessing version 3) scores a film without its uniform borders
    and says how many pixels it cut from each side, in the file's upright pixels."""
    pixels, _ = bordered(xray_like(400, 360, seed=3), 0, top=12, left=14, right=7)
    image = post(client, encode(Image.fromarray(pixels), "PNG"), "x.png").json()["image"]
    assert image["borders_cropped"] == [12, 14, 0, 7]
    plain = post(client, png_bytes(mode="L"), "x.png").json()["image"]
    assert plain["borders_cropped"] == [0, 0, 0, 0]


def test_predict_exif_rotation_is_applied_before_the_model(client):
    rotated = model_output(post(client, exif_rotated_jpeg(height=60, width=100)).json())
    upright = Image.open(io.BytesIO(exif_rotated_jpeg(height=60, width=100)))
    upright = upright.transpose(Image.Transpose.ROTATE_270)
    manual = model_output(post(client, encode(upright, "PNG"), "x.png").json())
    assert abs(rotated - manual) < 1e-6


def _expected(exc) -> tuple[int, str]:
    status, code, _ = describe(exc)
    return status, code


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"patient notes: not an image\n" * 20, 415, "not_an_image"),
        (encode(Image.fromarray(xray_like()), "GIF"), 415, "unsupported_format"),
        (encode(Image.fromarray(xray_like()), "BMP"), 415, "unsupported_format"),
        (jpeg_bytes(400, 400)[:3000], 400, "corrupt_image"),
        (png_bytes(300, 300)[:-400], 400, "corrupt_image"),
        (encode(Image.new("L", (9000, 9000)), "PNG"), 413, "image_too_large"),
    ],
    ids=["zero-bytes", "text-file", "gif", "bmp", "truncated-jpeg", "truncated-png",
         "pixel-bomb"],
)
def test_predict_bad_image_gets_clear_json_error(client, data, status, code):
    response = post(client, data)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == code
    assert len(body["detail"]) > 20  # a sentence for a person, not a stack trace
    # and the server keeps serving
    assert post(client, jpeg_bytes()).status_code == 200


def test_error_messages_come_from_one_table():
    assert _expected(NotAnImageError()) == (415, "not_an_image")
    assert _expected(UnsupportedFormatError("GIF"))[0] == 415
    assert _expected(CorruptImageError("x"))[0] == 400
    assert "GIF images are not supported" in describe(UnsupportedFormatError("GIF"))[2]


def test_predict_without_file_is_422(client):
    assert client.post("/predict").status_code == 422
    response = client.post("/predict", data={"note": "no file here"},
                           files={"other": ("a.txt", b"x")})
    assert response.status_code == 422
    assert response.json()["error"] == "missing_file"
    assert client.post("/predict", json={"file": "abc"}).status_code == 422


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok", "model": None}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready",
                            "model": {"name": "pneumonia", "version": SERVED_CARD.version},
                            "warnings": []}


def test_index_page_has_upload_form_and_disclaimer(client):
    page = client.get("/")
    assert page.status_code == 200
    text = page.text
    assert 'enctype="multipart/form-data"' in text and 'name="files"' in text
    assert "not a diagnosis" in text
    assert 'href="/report"' in text
    assert client.get("/static/upload.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


@pytest.mark.realdata
def test_index_form_post_without_javascript_renders_result(client, samples_dir):
    film = (samples_dir / "person1945_bacteria_4872.jpeg").read_bytes()
    page = client.post("/", files={"files": ("x.jpeg", film, "image/jpeg")})
    assert page.status_code == 200
    api = post(client, film).json()
    assert f'<span id="probability">{html.escape(api["probability_text"])}</span>' in page.text
    assert f'<span id="decision" class="decision {api["decision"]}">{api["decision_text"]}' \
        in page.text
    assert f'id="triage-score" class="{api["decision"]}">{api["triage_score_text"]}<' in page.text
    assert 'id="file-name" class="file-name">x.jpeg<' in page.text


@pytest.mark.parametrize(("probability", "shown"), [
    (0.99992, ">99.9%"), (0.9995, ">99.9%"), (0.999, "99.9%"), (0.4321, "43.2%"),
    (0.5, "50.0%"), (0.001, "0.1%"), (0.0009, "<0.1%"), (0.0, "<0.1%"), (1.0, ">99.9%"),
])
def test_percent_never_shows_certainty(probability, shown):
    assert percent(probability) == shown


def test_index_form_post_bad_file_shows_message_as_a_page(client):
    page = client.post("/", files={"files": ("notes.txt", b"hello", "text/plain")},
                       headers={"Accept": "text/html"})
    assert page.status_code == 415
    assert page.headers["content-type"].startswith("text/html")
    assert "not an image we can read" in page.text and 'href="/"' in page.text


def test_report_page_shows_experiments_figures_and_card(client):
    page = client.get("/report")
    assert page.status_code == 200
    text = page.text
    for number in range(1, 8):
        assert f"<td class=\"name\">{number}. " in text
    assert "Original study" in text and "Kermany" in text
    assert "Intended use" in text and "Known limits" in text
    for src in ("figures/roc_curves.png", "figures/training_curves.png",
                "figures/confusion_matrix_5.png"):
        assert src in text
        image = client.get(f"/report/{src}")
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"


def test_openapi_documents_predict_upload_and_example(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/predict"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["file"]["format"] == "binary"
    assert {"200", "400", "413", "415", "422"} <= operation["responses"].keys()
    response_schema = spec["components"]["schemas"]["PredictionResponse"]
    assert response_schema["examples"][0]["label"] == "PNEUMONIA"
    assert client.get("/docs").status_code == 200


def test_predict_batch_of_identical_images_is_deterministic(client):
    data = jpeg_bytes(seed=3)
    probabilities = {model_output(post(client, data).json()) for _ in range(3)}
    assert len(probabilities) == 1
    assert np.isfinite(list(probabilities)[0])


# --- unsupported_encoding at every door (issue 27) ------------------------------------------

_NOT_READ = unsupported_films(xray_like(96, 80))


@pytest.mark.parametrize("name", sorted(_NOT_READ))
def test_predict_of_an_intact_film_in_an_encoding_not_read_is_415_naming_it(client, name):
    response = post(client, _NOT_READ[name], "film.dcm")
    assert response.status_code == 415
    body = response.json()
    assert body["error"] == "unsupported_encoding"
    assert "damaged" not in body["detail"] and "not read" in body["detail"]


def test_batch_and_page_answer_unsupported_encoding_beside_the_films_they_score(client):
    files = [("files", ("xl.dcm", _NOT_READ["jpeg-xl"], "application/dicom")),
             ("files", ("film.jpeg", jpeg_bytes(), "image/jpeg"))]
    batch = client.post("/predict/batch", files=files).json()
    [refused, scored] = batch["results"]
    assert refused["error"]["error"] == "unsupported_encoding"
    assert refused["error"]["status"] == 415 and "JPEG XL" in refused["error"]["detail"]
    assert scored["error"] is None  # the other file of the batch is read
    page = client.post("/", files={"files": ("xl.dcm", _NOT_READ["jpeg-xl"],
                                             "application/dicom")},
                       headers={"Accept": "text/html"})
    assert page.status_code == 415
    assert "JPEG XL" in html.unescape(page.text) and "damaged" not in page.text
