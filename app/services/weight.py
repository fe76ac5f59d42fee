"""What a film will cost to decode, from its header alone: the places it takes in the
decoder's admission (app/services/decode_pool.py `Admission`).

Read in the serving process from the first bytes of an upload, before any decoder sees it,
so nothing here decodes or inflates: a PNG's IHDR (its fixed first chunk), a JPEG's frame
header (the first SOFn marker, found by walking the marker segments of at most the first
`_JPEG_HEAD_BYTES`), a DICOM header already read (Rows, Columns, Samples per Pixel, Bits
Allocated, Number of Frames). Anything else (a DICOM upload, a file the decoder will refuse)
counts its own size: an uncompressed data set's bytes are its pixels.

One place (`PLACE_BYTES` decoded) holds any ordinary film: a 2,800 x 2,800 8-bit radiograph
is 7.8 MB; the 16-bit PNGs of the samples take one or two places, a 49-megapixel 16-bit PNG
(98 MB decoded) twelve, so that only one or two of those decode at once.
"""

from __future__ import annotations

import struct

PLACE_BYTES = 8 * 1024 * 1024  # decoded bytes per admission place
_PNG = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> samples per pixel (PNG spec 11.2.2); a palette decodes to RGB.
_PNG_SAMPLES = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG frame headers: SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC) (ITU T.81 B.1.1.3).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_HEAD_BYTES = 1 << 20  # EXIF, ICC and comment segments come before the frame


def decoded_bytes(data: bytes) -> int:
    """The bytes of `data`'s pixels once decoded, as its header says; its own size where
    the header says nothing this reads."""
    if data.startswith(_PNG) and len(data) >= 26 and data[12:16] == b"IHDR":
        width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
        return width * height * _PNG_SAMPLES.get(colour, 4) * max(depth, 8) // 8
    if data.startswith(b"\xff\xd8"):
        frame = _jpeg_frame(data)
        if frame is not None:
            return frame
    return len(data)


def dicom_decoded_bytes(header) -> int | None:
    """The pixels of a DICOM header (a pydicom Dataset read without them), decoded; None
    when it does not say."""
    try:
        rows, columns = int(header.Rows), int(header.Columns)
        samples = int(header.get("SamplesPerPixel", 1) or 1)
        bits = int(header.get("BitsAllocated", 8) or 8)
        frames = int(header.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    return rows * columns * samples * max(bits, 8) // 8 * max(frames, 1)


def places(decoded: int, limit: int | None = None) -> int:
    """Admission places for `decoded` bytes: at least one, at most `limit` (the
    admission's size: a film over it runs alone)."""
    need = max(1, -(-decoded // PLACE_BYTES))
    return need if limit is None else min(need, max(limit, 1))


def _jpeg_frame(data: bytes) -> int | None:
    """Height x width x components of the first frame header, one byte a sample (12-bit
    JPEGs are refused by the decoder); None when none is found in the head."""
    at, end = 2, min(len(data), _JPEG_HEAD_BYTES)
    while at + 4 <= end:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        if marker in _SOF and at + 10 <= len(data):
            height, width, components = struct.unpack(">HHB", data[at + 5:at + 10])
            return height * width * max(components, 1)
        if marker == 0xDA or length < 2:  # start of scan: no frame header before it
            return None
        at += 2 + length
    return None
