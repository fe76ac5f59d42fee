"""Property tests of the decode path: whatever the bytes, decode returns an image or raises
one of the project's own ImageError classes, never anything else."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.contract.errors import ImageError
from app.contract.preprocessing import decode
from tests.builders.corpus import progressive_jpeg
from tests.builders.images import jpeg_bytes, png16_bytes, png_bytes

SEEDS = [jpeg_bytes(48, 40), jpeg_bytes(40, 48, mode="CMYK"), png_bytes(40, 32),
         png16_bytes(32, 40), png_bytes(32, 32, mode="RGBA"), progressive_jpeg()]
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _decodes_or_refuses(data: bytes) -> None:
    try:
        decoded = decode(data, max_pixels=4_000_000)
    except ImageError:
        return
    assert decoded.pixels.dtype.name == "uint8" and decoded.pixels.ndim in (2, 3)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_raise_only_image_errors(data):
    _decodes_or_refuses(data)


@st.composite
def mutated(draw):
    """A valid file with bytes overwritten (often in its headers), cut, or spliced."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        in_header = draw(st.booleans())
        limit = min(len(data), 400) if in_header else len(data)
        data[draw(st.integers(0, limit - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(1, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_images_raise_only_image_errors(data):
    _decodes_or_refuses(data)
