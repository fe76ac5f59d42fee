"""app/services/weight.py: a film's admission places from its header, never its pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset

from app.services.weight import PLACE_BYTES, decoded_bytes, dicom_decoded_bytes, places
from tests.builders.dicom import study_film
from tests.builders.images import jpeg_bytes, png16_bytes, xray_like


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "expected"), [
    (jpeg_bytes(300, 200), 300 * 200),  # grey JPEG: one byte a pixel
    (jpeg_bytes(300, 200, mode="RGB"), 300 * 200 * 3),
    (_png(np.zeros((120, 80), np.uint8)), 120 * 80),
    (_png(np.zeros((120, 80, 4), np.uint8)), 120 * 80 * 4),
    (png16_bytes(), 80 * 96 * 2),
], ids=["jpeg-grey", "jpeg-rgb", "png-grey", "png-rgba", "png-16bit"])
def test_decoded_bytes_come_from_the_header(data, expected):
    assert decoded_bytes(data) == expected


def test_a_jpeg_s_frame_header_is_found_after_its_other_segments():
    """EXIF, ICC or comment segments before the frame header are walked past."""
    image = Image.fromarray(xray_like(90, 70))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", comment=b"x" * 5000)
    assert decoded_bytes(buffer.getvalue()) == 90 * 70


def test_what_the_header_does_not_say_counts_its_own_size():
    assert decoded_bytes(b"not an image at all") == len(b"not an image at all")
    assert decoded_bytes(b"\xff\xd8\xff") == 3  # a JPEG cut off before its frame


def test_a_dicom_header_says_its_decoded_size():
    film = study_film(xray_like(96, 80))
    assert dicom_decoded_bytes(film) == 96 * 80 * film.SamplesPerPixel * \
        film.BitsAllocated // 8
    assert dicom_decoded_bytes(Dataset()) is None  # no Rows or Columns


def test_an_ordinary_film_takes_one_place_and_a_49_megapixel_16_bit_film_twelve():
    assert places(2800 * 2800) == 1
    assert places(7000 * 7000 * 2) == 12
    assert places(7000 * 7000 * 2, limit=8) == 8  # over the admission: runs alone
    assert places(0) == 1 and places(PLACE_BYTES + 1) == 2
