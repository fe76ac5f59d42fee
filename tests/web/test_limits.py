"""Upload limits, threshold override and privacy, on apps built with test settings."""


import pytest
from PIL import Image

from tests.builders.images import encode, jpeg_bytes


@pytest.fixture(scope="module")
def small_limit_client(client_factory):
    with client_factory(max_upload_bytes=4096, max_image_pixels=100 * 100,
                        threshold=0.0) as client:
        yield client


def test_upload_over_byte_limit_is_413(small_limit_client):
    big = jpeg_bytes(600, 600, mode="RGB")  # tens of KB against a 4 KiB limit
    assert len(big) > 4096 + 16 * 1024
    response = small_limit_client.post("/predict", files={"file": ("x.jpeg", big)})
    assert response.status_code == 413
    assert response.json()["error"] == "file_too_large"


def test_upload_just_over_limit_within_envelope_is_413(small_limit_client):
    data = jpeg_bytes(90, 90) + b"\0" * 4096  # file part > 4 KiB, body < limit + envelope
    response = small_limit_client.post("/predict", files={"file": ("x.jpeg", data)})
    assert response.status_code == 413


def test_streamed_upload_without_content_length_is_cut_off(small_limit_client):
    boundary = "testboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"x.jpeg\"\r\n\r\n").encode()

    def body():  # chunked: no Content-Length to refuse up front
        yield head
        for _ in range(64):
            yield b"\xff" * 4096
        yield f"\r\n--{boundary}--\r\n".encode()

    response = small_limit_client.post(
        "/predict", content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413


def test_image_over_pixel_limit_is_413(small_limit_client):
    flat = encode(Image.new("L", (200, 120), 90), "PNG")  # 24,000 px in a few hundred bytes
    response = small_limit_client.post("/predict", files={"file": ("x.png", flat)})
    assert response.status_code == 413
    assert response.json()["error"] == "image_too_large"


def test_threshold_override_from_settings_is_applied(small_limit_client):
    files = {"file": ("x.jpeg", jpeg_bytes(60, 60))}
    body = small_limit_client.post("/predict", files=files).json()
    # At threshold 0 a judged film is PNEUMONIA; this 60 px blob is too small to be judged.
    assert body["threshold"] == 0.0 and body["label"] is None and not body["assessable"]
