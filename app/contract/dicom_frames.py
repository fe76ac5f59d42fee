"""Compressed DICOM frames: the checks a plain file of the same codec gets, before decoding.

A frame's own header says how large the picture it codes is; a decoder allocates for that,
not for Rows/Columns. A 39 KB JPEG frame whose header claims 30000x30000 once exhausted a
decode worker's memory. So, for every compressed frame, before any decode:

- its header's size (JPEG and JPEG-LS: the frame header, SOF; JPEG 2000: the SIZ segment)
  must be under the pixel limit and equal Rows x Columns (DamagedImageError otherwise);
  a JPEG or JPEG-LS frame's sample precision must fit Bits Allocated (8 bits in 8, more in
  16; UnsupportedEncodingError otherwise: the file is whole, the decoder does not read it);
- JPEG with 8-bit samples (baseline, extended, progressive): the checks of a JPEG file
  (integrity.py): every scan present, then libjpeg-turbo's strict decode;
- JPEG with 12 or 16-bit samples, lossless JPEG and JPEG-LS, which libjpeg-turbo's strict
  mode does not decode (or, lossless, not safely): the marker structure, then a
  completeness test on pylibjpeg's decoder (which
  fills a frame that ends early with zeros, silently): the frame is decoded twice, once as
  it is and once with 512 bytes of other entropy-coded data before its end marker. A whole
  frame ends after its last sample, so the extra bytes change nothing; a frame cut short
  takes them as its missing samples, and its pixels change (or the decode fails);
- JPEG and JPEG-LS: a frame is one image: a second image after its end-of-image marker,
  which the decoder never reads, is a frame Number of Frames does not count
  (DicomNotScoredError frame_count_mismatch); other bytes there are never decoded;
- JPEG 2000: the tile-parts must chain, by their lengths (Psot), to the end-of-codestream
  marker, which ends the frame; OpenJPEG refuses a cut codestream itself;
- RLE: the header must list the segments that Samples per Pixel and Bits Allocated call
  for, inside the frame; a frame is one fragment (PS3.5 A.4.2), so a second fragment is a
  second frame (dicom.py).
"""

from __future__ import annotations

import re
import struct

import numpy as np
from pydicom.uid import (
    UID,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from app.contract.errors import (
    DamagedImageError,
    DicomNotScoredError,
    TooManyPixelsError,
    UnsupportedEncodingError,
)
from app.contract.integrity import (
    LOSSLESS_SOF,
    SOF_LS,
    check_jpeg_scans,
    jpeg_frame_header,
    strict_jpeg_decode,
)

# pydicom's lists: JPEG baseline, extended, lossless (.50 .51 .57 .70), JPEG-LS (.80 .81),
# JPEG 2000 (.90 .91 .92 .93) and High-Throughput JPEG 2000 (.201 .202 .203).
JPEG_SYNTAXES = tuple(JPEGTransferSyntaxes)
JPEG_LS_SYNTAXES = tuple(JPEGLSTransferSyntaxes)
J2K_SYNTAXES = tuple(JPEG2000TransferSyntaxes)
# No 0xFF byte (it would start a marker), fixed so that the check is repeatable.
_EXTRA = bytes(np.random.default_rng(20261126).integers(0, 0xFF, 512, dtype=np.uint8))


def check_frame(frame: bytes, syntax: UID, rows: int, columns: int, samples: int,
                bits_allocated: int, max_pixels: int | None) -> None:
    """Raise DamagedImageError or TooManyPixelsError for a frame that is not whole, or
    whose own header does not match the dataset's; return quietly otherwise (or for a
    transfer syntax without such checks)."""
    if syntax in JPEG_SYNTAXES or syntax in JPEG_LS_SYNTAXES:
        marker, precision, height, width = jpeg_frame_header(frame)
        _check_size(height, width, rows, columns, max_pixels, "JPEG frame header (SOF)")
        if (precision <= 8) != (bits_allocated <= 8):
            # PS3.5 8.2.1: 8-bit samples in 8 allocated bits, more in 16. The decoders
            # write a frame's samples at the size the header allocates: intact, not read.
            raise UnsupportedEncodingError(
                f"JPEG samples of {precision} bits under Bits Allocated (0028,0100) "
                f"{bits_allocated}", f"{precision}-bit JPEG in {bits_allocated} allocated bits")
        _check_one_image(frame, _jpeg_ls_end(frame) if marker == SOF_LS
                         else check_jpeg_scans(frame))
        if marker != SOF_LS and marker not in LOSSLESS_SOF and precision == 8:
            strict_jpeg_decode(frame, min_height=1, min_width=1)  # check_jpeg's second half
        else:
            # libjpeg-turbo's lossless decoding corrupted memory on a valid frame (simplejpeg
            # 1.9): lossless frames never reach it, nor 12/16-bit ones it does not decode.
            _check_complete(frame)
    elif syntax in J2K_SYNTAXES:
        codestream = _j2k_codestream(frame)
        height, width = _j2k_size(codestream)
        _check_size(height, width, rows, columns, max_pixels, "JPEG 2000 header (SIZ)")
        _check_tile_parts(codestream)
    elif syntax == RLELossless:
        _check_rle_header(frame, samples * max(bits_allocated // 8, 1))


# In JPEG-LS scan data a 0xFF is followed by a stuffed bit (a byte under 0x80); a marker's
# second byte is 0x80 or more (ITU-T T.87 9.1), 0xFF a fill byte; a restart marker (D0-D7)
# is part of the scan.
_LS_MARKER = re.compile(rb"\xff[\x80-\xcf\xd8-\xfe]")
# A start-of-image marker, after any fill bytes, and the next marker's first byte.
_SECOND_IMAGE = re.compile(rb"\xff+\xd8\xff")


def _jpeg_ls_end(frame: bytes) -> int:
    """Where a JPEG-LS image ends: after its end-of-image marker (the frame's length
    without one). Marker segments by their lengths, scan data to the next marker."""
    position = 2
    while position + 4 <= len(frame) and frame[position] == 0xFF:
        marker = frame[position + 1]
        if marker == 0xFF:
            position += 1
        elif marker == 0xD9:
            return position + 2
        elif 0xD0 <= marker <= 0xD7:  # a restart: no length
            position += 2
        else:
            position += 2 + int.from_bytes(frame[position + 2:position + 4], "big")
            if marker == 0xDA:  # the scan's data, to the next marker
                found = _LS_MARKER.search(frame, position)
                position = found.start() if found else len(frame)
    return position + 2 if frame[position:position + 2] == b"\xff\xd9" else len(frame)


def _check_one_image(frame: bytes, end: int) -> None:
    """A JPEG frame is one image: a second image after its end-of-image marker (at `end`)
    is a frame that Number of Frames does not count, never read (the decoder stops at the
    first one: a second film, another view or patient, went unseen). Other bytes there
    (padding, fill bytes, a second end marker, a writer's trailer) are never decoded and
    are accepted."""
    if _SECOND_IMAGE.search(frame, end):
        raise DicomNotScoredError(
            "frame_count_mismatch", "The DICOM Pixel Data holds a second JPEG image after "
            "the first, in a data set of one frame (Number of Frames, 0028,0008): upload a "
            "single radiograph.")


def _check_size(height: int, width: int, rows: int, columns: int, max_pixels: int | None,
                where: str) -> None:
    if max_pixels is not None and height * width > max_pixels:
        raise TooManyPixelsError(height * width, max_pixels)
    if (height, width) != (rows, columns):
        raise DamagedImageError(f"the {where} says {width}x{height}, Rows/Columns say "
                                f"{columns}x{rows}")


def _check_complete(frame: bytes) -> None:
    from libjpeg import decode  # noqa: PLC0415 - pylibjpeg's decoder, used by pydicom too

    body = frame.rstrip(b"\x00")  # DICOM pads fragments to an even length
    body = body[:-2] if body.endswith(b"\xff\xd9") else body
    try:
        whole = decode(body + b"\xff\xd9")
    except RuntimeError as error:
        raise DamagedImageError(f"the frame does not decode: {error}") from None
    try:
        extended = decode(body + _EXTRA + b"\xff\xd9")
    except RuntimeError:
        raise DamagedImageError("the frame ends before its last sample") from None
    if not np.array_equal(whole, extended):
        raise DamagedImageError("the frame ends before its last sample")


def _j2k_codestream(frame: bytes) -> bytes:
    """The codestream of a frame; some writers wrap it in a JP2 file (the 'jp2c' box)."""
    if frame.startswith(b"\xff\x4f\xff\x51"):
        return frame
    at = frame.find(b"jp2c")
    if frame[4:8] == b"jP  " and at >= 4:
        return frame[at + 4:]
    raise DamagedImageError("the frame does not start as a JPEG 2000 codestream")


def _j2k_size(codestream: bytes) -> tuple[int, int]:
    if len(codestream) < 4 + 2 + 2 + 16:
        raise DamagedImageError("the JPEG 2000 header is cut short")
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", codestream[8:24])
    if xosiz > xsiz or yosiz > ysiz:
        raise DamagedImageError("the JPEG 2000 image offset lies outside the image")
    return ysiz - yosiz, xsiz - xosiz


def _check_tile_parts(codestream: bytes) -> None:
    """Each tile-part (SOT, FF90) says its length (Psot, from its SOT marker; 0 = up to the
    end-of-codestream marker); they must follow each other up to that marker (FFD9)."""
    end = len(codestream.rstrip(b"\x00"))
    position = codestream.find(b"\xff\x90")
    if position < 0:
        raise DamagedImageError("the JPEG 2000 codestream has no tile-part")
    while position + 12 <= end and codestream[position:position + 2] == b"\xff\x90":
        psot = int.from_bytes(codestream[position + 6:position + 10], "big")
        if psot == 0:
            position = end - 2
            break
        position += psot
    if position + 2 != end or codestream[position:position + 2] != b"\xff\xd9":
        raise DamagedImageError("the JPEG 2000 codestream ends before its last tile-part")


def _check_rle_header(frame: bytes, segments: int) -> None:
    """PS3.5 G.3.1: a 64-byte header, the number of segments and their offsets."""
    if len(frame) < 64:
        raise DamagedImageError("the RLE header is cut short")
    count, *offsets = struct.unpack("<16I", frame[:64])
    if count != segments or not 1 <= count <= 15:
        raise DamagedImageError(f"the RLE header lists {count} segments, not {segments}")
    used = offsets[:count]
    if used[0] != 64 or any(b <= a for a, b in zip(used, used[1:])) or used[-1] >= len(frame):
        raise DamagedImageError("the RLE segment offsets lie outside the frame")
