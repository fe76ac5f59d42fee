"""Plain files the way archives export them (app/contract/preprocessing.py): 16-bit PNGs of
12-bit data, with and without sBIT, and lossless JPEGs, which are never handed to
libjpeg-turbo. Built from a dataset film."""

import numpy as np
import pytest

from app.contract.errors import UnsupportedFormatError
from app.contract.preprocessing import decode
from tests.builders import films as fb
from tests.builders.images import png16_bytes

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def gray(data_dir) -> np.ndarray:
    return fb.gray_of(data_dir / "test/NORMAL/IM-0001-0001.jpeg")


def test_a_16_bit_png_with_sbit_12_is_read_as_12_bit_data(gray):
    decoded = decode(fb.png16_twelve_bit(gray, sbit=12))
    assert np.abs(decoded.pixels.astype(int) - gray).max() <= 1
    assert decoded.warnings == ()  # the file said so itself


def test_a_16_bit_png_of_12_bit_data_without_sbit_is_read_by_its_range_and_says_so(gray):
    decoded = decode(fb.png16_twelve_bit(gray, sbit=None))
    assert np.abs(decoded.pixels.astype(int) - gray).max() <= 1
    assert len(decoded.warnings) == 1 and "uses only 12 of its 16 bits" in decoded.warnings[0]


def test_a_16_bit_png_over_its_whole_range_is_unchanged():
    decoded = decode(png16_bytes())
    assert decoded.warnings == ()
    assert decoded.pixels.max() > 200


def test_sbit_16_on_12_bit_data_is_taken_at_its_word(gray):
    decoded = decode(fb.png16_twelve_bit(gray, sbit=16))
    assert decoded.pixels.max() <= 16  # the file says 16 significant bits: a dark film


def test_a_lossless_jpeg_file_is_unsupported_never_decoded_by_libjpeg_turbo(gray):
    with pytest.raises(UnsupportedFormatError) as raised:
        decode(fb.lossless_jpeg(gray))
    assert "Lossless JPEG" in raised.value.message


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_transparent_areas_are_read_as_a_viewer_shows_them_black(gray, mode):
    """What is under a transparent area is nobody's film: grey with alpha is read as it is
    shown over a radiograph's black background, as colour with alpha is (one rule)."""
    import io

    from PIL import Image

    alpha = np.full_like(gray, 255)
    alpha[:, : gray.shape[1] // 2] = 0  # the left half hidden
    grey = Image.fromarray(gray)
    image = Image.merge("LA", (grey, Image.fromarray(alpha))) if mode == "LA" else \
        Image.merge("RGBA", (grey, grey, grey, Image.fromarray(alpha)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    pixels = decode(buffer.getvalue()).pixels
    pixels = pixels if pixels.ndim == 2 else pixels[..., 0]
    assert pixels.shape == gray.shape
    assert pixels[:, : gray.shape[1] // 2].max() == 0
    assert np.array_equal(pixels[:, gray.shape[1] // 2:], gray[:, gray.shape[1] // 2:])
