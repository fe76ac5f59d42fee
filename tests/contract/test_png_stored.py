"""A checked PNG is decoded from the stored copy its check leaves (integrity.check_png
`stored_up_to`, preprocessing.decode): the same file but for its image data's compression,
so every kind of PNG decodes to the very pixels, mode and metadata it had, and a damaged
file is refused as before."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.contract.errors import CorruptImageError, DamagedImageError, UnsupportedFormatError
from app.contract.integrity import check_png
from app.contract.preprocessing import STORED_PNG_BYTES, decode
from tests.builders.corpus import (
    _chunk,
    palette_with_alpha_png,
    png16_damaged,
    png_interlaced,
    png_stream_ends_early,
)
from tests.builders.images import encode, png16_bytes, png_bytes, xray_like


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    found, position = [], 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        found.append((kind, data[position + 8:position + 8 + length]))
        position += 12 + length
    return found


def _split_idat(data: bytes, pieces: int) -> bytes:
    """The same PNG with its image data cut across `pieces` IDAT chunks and one empty one."""
    chunks = _chunks(data)
    stream = b"".join(body for kind, body in chunks if kind == b"IDAT")
    step = -(-len(stream) // pieces)
    out = data[:8]
    for kind, body in chunks:
        if kind == b"IDAT":
            if stream:
                out += b"".join(_chunk(b"IDAT", stream[i:i + step])
                                for i in range(0, len(stream), step)) + _chunk(b"IDAT", b"")
                stream = b""
        else:
            out += _chunk(kind, body)
    return out


def _header_apart(data: bytes) -> bytes:
    """The same PNG with its zlib header's first byte in an IDAT of its own."""
    chunks = _chunks(data)
    stream = b"".join(body for kind, body in chunks if kind == b"IDAT")
    out = data[:8]
    for kind, body in chunks:
        if kind == b"IDAT":
            out += _chunk(b"IDAT", stream[:1]) + _chunk(b"IDAT", stream[1:]) if stream else b""
            stream = b""
        else:
            out += _chunk(kind, body)
    return out


def _grey_png(rows: list[bytes], width: int, stream: bytes | None = None,
              before_data: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, len(rows), 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + before_data
            + _chunk(b"IDAT", stream if stream is not None else zlib.compress(b"".join(rows)))
            + _chunk(b"IEND", b""))


def _grey_rows(height: int = 30, width: int = 40) -> list[bytes]:
    pixels = xray_like(height, width)
    return [b"\x00" + row.tobytes() for row in pixels]


def _with_text_after_data(data: bytes) -> bytes:
    end = data.rindex(b"IEND") - 4
    return data[:end] + _chunk(b"tEXt", b"Comment\x00after the image data") + data[end:]


def _exif_rotated_png() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(xray_like(60, 100)), "PNG", exif=exif.tobytes())


def _big_grey16(height: int = 900, width: int = 700) -> bytes:
    return encode(Image.fromarray(xray_like(height, width).astype(np.uint16) * 257), "PNG")


KINDS = {
    "grey 8-bit": lambda: png_bytes(96, 80),
    "grey 16-bit": lambda: png16_bytes(96, 80),
    "grey 16-bit, 70 stored blocks": _big_grey16,
    "colour": lambda: png_bytes(96, 80, mode="RGB"),
    "colour with alpha": lambda: png_bytes(96, 80, mode="RGBA"),
    "grey with alpha": lambda: png_bytes(96, 80, mode="LA"),
    "1-bit": lambda: encode(Image.fromarray(xray_like(50, 37) > 120), "PNG"),
    "palette with transparency": palette_with_alpha_png,
    "interlaced": lambda: png_interlaced(xray_like(61, 47)),
    "image data in 5 IDATs": lambda: _split_idat(png16_bytes(96, 80), 4),
    "zlib header across two IDATs": lambda: _header_apart(png16_bytes(96, 80)),
    "text after the image data": lambda: _with_text_after_data(png_bytes(96, 80)),
    "EXIF orientation": _exif_rotated_png,
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_stored_copy_decodes_to_the_same_film(kind):
    data = KINDS[kind]()
    rebuilt = check_png(data, stored_up_to=STORED_PNG_BYTES)
    assert rebuilt is not None
    assert check_png(rebuilt) is None  # a valid PNG itself: CRCs, Adler-32, every row
    before, after = _chunks(data), _chunks(rebuilt)
    assert [k for k, _ in after if k != b"IDAT"] == [k for k, _ in before if k != b"IDAT"]
    stored = [body for k, body in after if k == b"IDAT"]
    assert len(stored) == 1
    inflated = zlib.decompress(b"".join(body for k, body in before if k == b"IDAT"))
    assert zlib.decompress(stored[0]) == inflated
    assert len(stored[0]) > len(inflated)  # stored, not compressed
    original, copy = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(rebuilt))
    assert (copy.mode, copy.size, copy.info) == (original.mode, original.size, original.info)
    assert copy.getexif() == original.getexif()
    assert np.array_equal(np.asarray(copy), np.asarray(original))


@pytest.mark.parametrize("kind", list(KINDS))
def test_decode_gives_what_the_compressed_file_gives(kind, monkeypatch):
    data = KINDS[kind]()
    through_copy = decode(data, target=(32, 32))
    monkeypatch.setattr("app.contract.preprocessing.STORED_PNG_BYTES", 0)  # no copy made
    direct = decode(data, target=(32, 32))
    assert np.array_equal(through_copy.pixels, direct.pixels)
    assert (through_copy.width, through_copy.height, through_copy.mode, through_copy.warnings) \
        == (direct.width, direct.height, direct.mode, direct.warnings)


def test_no_copy_over_the_limit_and_bytes_after_the_end_chunk_left_out():
    data = png16_bytes(96, 80)
    raw = len(zlib.decompress(b"".join(b for k, b in _chunks(data) if k == b"IDAT")))
    assert check_png(data, stored_up_to=raw - 1) is None
    assert check_png(data) is None
    rebuilt = check_png(data + b"trailing bytes", stored_up_to=raw)
    assert rebuilt is not None and rebuilt.endswith(_chunk(b"IEND", b""))


@pytest.mark.parametrize("damaged", [
    *(lambda kind=kind: png16_damaged(kind)
      for kind in ("short", "adler", "adler-apart", "cut", "extra", "crc")),
    lambda: png16_bytes(96, 80)[:-30], png_stream_ends_early,
], ids=["short", "adler", "adler-apart", "cut", "extra", "crc", "truncated", "ends-early"])
def test_damage_is_refused_before_any_copy_is_made(damaged):
    with pytest.raises(DamagedImageError):
        check_png(damaged(), stored_up_to=STORED_PNG_BYTES)
    with pytest.raises(DamagedImageError):
        decode(damaged())



@pytest.fixture(params=["stored copy", "inflated twice"])
def either_path(request, monkeypatch):
    """decode() as it reads a small PNG (from the check's stored copy) and a large one."""
    if request.param == "inflated twice":
        monkeypatch.setattr("app.contract.preprocessing.STORED_PNG_BYTES", 0)


def test_a_row_pillow_cannot_decode_refuses_the_film(either_path):
    """A row whose filter type is unknown (PNG, 9.2: 0-4): the check inflates the data but
    reads no filter; Pillow's decode fails there, and the rows after it must not come back
    black and be scored."""
    rows = _grey_rows()
    rows[20] = b"\x07" + rows[20][1:]
    with pytest.raises(CorruptImageError):
        decode(_grey_png(rows, 40))
    decode(_grey_png(_grey_rows(), 40))  # the same film, every filter known


def test_a_window_over_32_kib_is_refused_on_either_path(either_path):
    """CINFO 8 in the zlib header: ISA-L inflates it, zlib (Pillow) refuses it."""
    stream = bytearray(zlib.compress(b"".join(_grey_rows())))
    stream[0] = 0x88  # CM 8, CINFO 8
    stream[1] = (31 - (0x88 * 256) % 31) % 31  # FCHECK made right again, FLEVEL 0
    assert (stream[0] * 256 + stream[1]) % 31 == 0
    with pytest.raises(DamagedImageError):
        decode(_grey_png(_grey_rows(), 40, stream=bytes(stream)))


def test_a_one_frame_animation_is_not_read(either_path):
    """An APNG's first frame drawn where its frame control chunk says: here a 10 x 10 frame
    of a 40 x 30 image, which Pillow draws on a blank image."""
    control = struct.pack(">IIIIIHHBB", 0, 10, 10, 5, 5, 1, 1, 0, 0)
    apng = _grey_png(_grey_rows(), 40, before_data=_chunk(b"acTL", struct.pack(">II", 1, 0))
                     + _chunk(b"fcTL", control))
    with pytest.raises(UnsupportedFormatError, match="APNG"):
        decode(apng)


def test_a_small_file_declaring_a_large_image_costs_what_it_holds():
    """The stored copy grows with what is inflated: an 80-byte file that declares a 32 MiB
    image and holds one row is refused without reserving 32 MiB."""
    import tracemalloc

    ihdr = struct.pack(">IIBBBBB", 4096, 4095, 16, 0, 0, 0, 0)
    small = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
             + _chunk(b"IDAT", zlib.compress(bytes(1 + 2 * 4096))) + _chunk(b"IEND", b""))
    tracemalloc.start()
    try:
        with pytest.raises(DamagedImageError):
            check_png(small, stored_up_to=STORED_PNG_BYTES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20
