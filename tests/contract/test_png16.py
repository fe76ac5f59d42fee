"""16-bit grey PNGs decoded by libpng (preprocessing.py `_grey16_by_libpng`): the same film
as Pillow's path gives, and damaged image data refused (tests/builders/corpus.py has the
damaged files, which tests/web/test_corpus.py also sends through every entry point)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.contract import preprocessing
from app.contract.errors import DamagedImageError
from app.contract.preprocessing import decode
from tests.builders.corpus import png16_damaged
from tests.builders.images import encode, xray_like

MODEL_INPUT = (64, 64)  # a 64 px model input: films of 512 px and more are halved


def _png16(wide: np.ndarray, **params) -> bytes:
    return encode(Image.fromarray(wide.astype(np.uint16)), "PNG", **params)


def _with_chunk(data: bytes, kind: bytes, body: bytes, before: bytes) -> bytes:
    """`data` with a chunk inserted before the first chunk of type `before`."""
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    at = data.index(before) - 4
    return data[:at] + chunk + data[at:]


def _film(height: int, width: int, seed: int = 0) -> np.ndarray:
    return xray_like(height, width, seed).astype(np.uint16) * 257


def _sbit12() -> bytes:
    twelve = (xray_like(120, 100).astype(np.uint16) * 16)  # 12-bit data, unscaled
    return _with_chunk(_png16(twelve), b"sBIT", b"\x0c", b"IDAT")


def _exif_rotated() -> bytes:
    return _png16(_film(60, 100), exif=_orientation_6())


FILMS = {
    "full range": lambda: _png16(_film(96, 80)),
    "random, odd sides": lambda: _png16(np.random.default_rng(3).integers(
        0, 65536, (97, 83))),
    "halved, odd sides": lambda: _png16(_film(1031, 777, seed=1)),
    "12-bit with sBIT": _sbit12,
    "10-bit without sBIT": lambda: _png16(xray_like(90, 70).astype(np.uint16) * 4),
    "EXIF orientation 6": _exif_rotated,
}


@pytest.mark.parametrize("build", FILMS.values(), ids=FILMS.keys())
def test_libpng_gives_the_film_that_pillow_gives(build, monkeypatch):
    data = build()
    img = Image.open(io.BytesIO(data))
    assert preprocessing._grey16_by_libpng(img, data) is not None  # the libpng path
    by_libpng = decode(data, target=MODEL_INPUT)
    monkeypatch.setattr(preprocessing, "_grey16_by_libpng", lambda img, data: None)
    by_pillow = decode(data, target=MODEL_INPUT)
    assert by_libpng.pixels.dtype == by_pillow.pixels.dtype == np.uint8
    assert np.array_equal(by_libpng.pixels, by_pillow.pixels)
    assert (by_libpng.width, by_libpng.height, by_libpng.mode, by_libpng.format,
            by_libpng.warnings) == (by_pillow.width, by_pillow.height, by_pillow.mode,
                                    by_pillow.format, by_pillow.warnings)


def _interlaced() -> bytes:
    wide = _film(37, 29)
    rows = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                           (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        sub = wide[y0::dy, x0::dx]
        if sub.size:
            rows += b"".join(b"\x00" + row.astype(">u2").tobytes() for row in sub)
    data = _png16(wide)
    start = data.index(b"IHDR") + 4
    ihdr = struct.pack(">IIBBBBB", 29, 37, 16, 0, 0, 0, 1)
    out = data[:start - 8] + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(
        ">I", zlib.crc32(b"IHDR" + ihdr)) + data[start + 17:]
    idat = out.index(b"IDAT") - 4
    length = struct.unpack(">I", out[idat:idat + 4])[0]
    stream = zlib.compress(rows)
    return out[:idat] + struct.pack(">I", len(stream)) + b"IDAT" + stream + struct.pack(
        ">I", zlib.crc32(b"IDAT" + stream)) + out[idat + 12 + length:]


OTHERS = {  # (file, its upright (width, height))
    "8-bit grey": (lambda: encode(Image.fromarray(xray_like()), "PNG"), (80, 96)),
    "interlaced": (_interlaced, (29, 37)),
    "a transparent grey": (lambda: _with_chunk(
        _png16(_film(50, 40)), b"tRNS", b"\x00\x05", b"IDAT"), (40, 50)),
    # Pillow finds it only once it has decoded the image: turned upright all the same.
    "EXIF after the image data": (lambda: _with_chunk(
        _png16(_film(50, 40)), b"eXIf", _orientation_6()[len(b"Exif\x00\x00"):], b"IEND"),
        (50, 40)),
}


def _orientation_6() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


@pytest.mark.parametrize(("build", "upright"), OTHERS.values(), ids=OTHERS.keys())
def test_other_pngs_keep_pillow_s_path(build, upright):
    data = build()
    img = Image.open(io.BytesIO(data))
    assert preprocessing._grey16_by_libpng(img, data) is None
    decoded = decode(data, target=MODEL_INPUT)
    assert (decoded.width, decoded.height) == upright == decoded.pixels.shape[1::-1]


@pytest.mark.parametrize("kind", ["short", "adler", "cut", "crc"])
def test_damaged_16bit_image_data_is_refused(kind):
    with pytest.raises(DamagedImageError):
        decode(png16_damaged(kind), target=MODEL_INPUT)


def test_halving_rounds_each_block_s_mean_half_up():
    pixels = np.array([[0, 1, 65535, 65535, 7], [1, 1, 65534, 65535, 7], [9, 9, 9, 9, 9]],
                      dtype=np.uint16)
    # Blocks (0, 1, 1, 1): mean 0.75 -> 1; (65535, 65535, 65534, 65535): 65534.75 -> 65535;
    # the last column and row make no whole block and are left out.
    assert preprocessing._block_means_16bit(pixels, 2).tolist() == [[1, 65535]]
    three = np.arange(36, dtype=np.uint16).reshape(6, 6)
    expected = np.round(three.reshape(2, 3, 2, 3).mean(axis=(1, 3)) + 1e-9)
    assert np.array_equal(preprocessing._block_means_16bit(three, 3), expected)


def test_16bit_image_data_past_the_last_row_is_read_as_libpng_reads_it():
    """libpng warns, and reads the declared film: whole, its chunks' CRCs intact (the film
    every libpng-based viewer shows). Pillow's path refuses it (integrity.check_png)."""
    wide = _film(40, 30)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in wide)
    data = _png16(wide)
    idat = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[idat:idat + 4])[0]
    stream = zlib.compress(rows + rows[:5 * 61])  # five rows more than the header declares
    data = data[:idat] + struct.pack(">I", len(stream)) + b"IDAT" + stream + struct.pack(
        ">I", zlib.crc32(b"IDAT" + stream)) + data[idat + 12 + length:]
    expected = decode(_png16(wide)).pixels
    assert np.array_equal(decode(data).pixels, expected)
