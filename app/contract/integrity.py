"""Is the whole film in the file? Checks that refuse damaged images instead of scoring them.

Decoders are forgiving on purpose: libjpeg reports a JPEG that ends early, or whose entropy
data is corrupt, as a *warning* and fills the missing rows with grey; Pillow's PNG reader
stops quietly when the compressed stream ends before the last row. A triage tool must not
score half a chest as if it were whole (a normal film cut to 30% scored 0.94), so:

- JPEG: the marker structure is walked to prove that the scans code every coefficient of
  every component to full precision (a progressive file cut at a scan boundary is legal to
  libjpeg but holds a blurred film), with a cap on the number of scans; then the file is
  decoded by libjpeg-turbo (simplejpeg) in strict mode: any warning (premature end of data,
  corrupt data, bad Huffman code) is damage. For a grey or colour JPEG that strict decode
  (at half scale for a film much larger than the model input) is the decode itself
  (preprocessing.py); for a CMYK one it is an extra check at 1/8 scale, cheap, before
  Pillow's decode.
  JPEG has no checksum, so a flipped bit that still decodes as valid data cannot be seen.
- PNG: the chunk order is checked (one IHDR first, consecutive IDATs, PLTE where required,
  no unknown critical chunk), every chunk's CRC is checked and the image data is inflated,
  in bounded pieces that are counted and dropped, to prove it holds every row the header
  declares and ends with a valid checksum, with ISA-L (isal), whose inflate takes half of
  zlib's time. Up to a size, what it inflates is kept as a stored copy of the file, which
  Pillow then decodes without inflating it again (`check_png`'s `stored_up_to`).
"""

from __future__ import annotations

import re
import struct

import simplejpeg
from isal import isal_zlib

from app.contract.errors import DamagedImageError, UnsupportedEncodingError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # (x0, y0, dx, dy) of the seven interlace passes
_INFLATE_PIECE = 1 << 20  # bytes of decompressed data held at once while counting
_CRITICAL_PNG = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
# A real progressive JPEG has about 10 scans; libjpeg decodes every scan of a hostile file
# with thousands, at full cost each.
MAX_JPEG_SCANS = 100
# A 20 MiB PNG in image data chunks of 8 KiB (libpng's default) has 2,560; one in chunks of a
# byte or none has a million and more, each walked and checked in Python (3 s of a worker).
MAX_PNG_CHUNKS = 65_536
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
LOSSLESS_SOF = {0xC3, 0xC7, 0xCB, 0xCF}
SOF_LS = 0xF7  # JPEG-LS


def check_jpeg(data: bytes) -> None:
    """Raise DamagedImageError when a JPEG does not code its whole image, or when libjpeg
    reports damage in a JPEG that it can decode. Lossless and JPEG-LS files never reach
    libjpeg-turbo here (dicom_frames.py checks those frames): its lossless decoding corrupted
    the process's memory on a valid 8-bit lossless file (simplejpeg 1.9)."""
    check_jpeg_scans(data)
    strict_jpeg_decode(data, min_height=1, min_width=1)


def strict_jpeg_decode(data: bytes, min_height: int, min_width: int):
    """libjpeg-turbo's decode at the smallest scale (1/8 to 1) that keeps at least
    `min_height` x `min_width` pixels, in strict mode: (H, W, C) uint8 with C = 1 (grey), 3
    (RGB) or 4 (CMYK, as stored). Any libjpeg warning raises DamagedImageError. Call
    check_jpeg_scans first."""
    if is_lossless_jpeg(data):
        raise DamagedImageError("a lossless JPEG is not read as a plain file")
    try:
        colorspace = simplejpeg.decode_jpeg_header(data, strict=False)[2]
    except ValueError as error:
        raise DamagedImageError(f"unreadable header: {error}") from None
    target = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}.get(colorspace, "RGB")
    try:
        return simplejpeg.decode_jpeg(data, colorspace=target, min_height=min_height,
                                      min_width=min_width, strict=True)
    except ValueError as error:
        # A warning, or a file libjpeg-turbo cannot decode whole: either way nothing proves
        # that the film is complete (simplejpeg's lenient mode fails on some warnings too).
        raise DamagedImageError(str(error)) from None


def check_jpeg_scans(data: bytes) -> int:
    """Walk the markers up to the first end-of-image: every component's 64 coefficients must
    be coded by some scan down to full precision (successive approximation Al = 0). Returns
    where the image ends: after its end-of-image marker (the file's length without one)."""
    position, components, lossless, scans = 2, None, False, 0
    coverage: dict[int, bytearray] = {}
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise DamagedImageError("a marker was expected")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        segment = data[position + 4:position + 2 + length]
        if len(segment) != length - 2:
            raise DamagedImageError("a marker segment is cut short")
        if marker in _SOF and components is None:
            lossless = marker in LOSSLESS_SOF
            components = [segment[6 + 3 * i] for i in range(segment[5])]
            coverage = {c: bytearray(64) for c in components}
        elif marker == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise DamagedImageError(f"more than {MAX_JPEG_SCANS} scans")
            _cover(segment, coverage, lossless)
            position = _end_of_entropy_data(data, position + 2 + length)
            continue
        position += 2 + length
    if components is None or scans == 0:
        raise DamagedImageError("no frame or no scan")
    missing = [c for c, seen in coverage.items() if not all(seen)]
    if missing:
        raise DamagedImageError(f"components {missing} are not fully coded: the file ends "
                                "before its last scans")
    # The loop stops at the end-of-image marker, or short of a last one that ends the file.
    return position + 2 if data[position:position + 2] == b"\xff\xd9" else len(data)


def _cover(sos: bytes, coverage: dict[int, bytearray], lossless: bool) -> None:
    count = sos[0]
    ids = [sos[1 + 2 * i] for i in range(count)]
    start, end, approximation = sos[1 + 2 * count], sos[2 + 2 * count], sos[3 + 2 * count]
    if lossless:  # no coefficients: one scan per component codes it whole
        start, end, approximation = 0, 63, 0
    if approximation & 0x0F:  # not the last refinement of these coefficients yet
        return
    for component in ids:
        if component in coverage:
            coverage[component][start:end + 1] = b"\x01" * (end + 1 - start)


# 0xFF followed by anything but stuffing (00), a restart (D0-D7) or a fill byte (FF): the
# next marker. A regular expression finds it at C speed; a byte loop in Python cost
# milliseconds per megabyte of entropy data (one 0xFF00 every ~200 bytes).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _end_of_entropy_data(data: bytes, position: int) -> int:
    """The next marker after a scan's entropy-coded data (skipping 0xFF00 and restarts)."""
    found = _NEXT_MARKER.search(data, position)
    return found.start() if found else len(data)


def check_png(data: bytes, stored_up_to: int = 0) -> bytes | None:
    """Raise DamagedImageError unless every chunk is intact and the image data holds exactly
    the rows that the header declares.

    With `stored_up_to` > 0, a file whose image data inflates to at most that many bytes
    comes back rebuilt: the same chunks, byte for byte, but its IDATs one IDAT of the
    inflated data in stored (uncompressed) deflate blocks. Decoding it gives the very bytes
    this check has just proved whole, and the decoder's inflate is then a copy: Pillow reads
    a 16-bit film in about half the time (105 -> 60 ms on the largest sample at 6.4 MP),
    where it would otherwise inflate once more what was inflated here. None otherwise (a
    larger film is inflated in bounded pieces, counted and dropped, as without it)."""
    if not data.startswith(_PNG_SIGNATURE):
        raise DamagedImageError("no PNG signature")
    position, header, inflater = len(_PNG_SIGNATURE), None, isal_zlib.decompressobj()
    produced, ended, palette, colour, previous, idat_done = 0, False, False, None, b"", False
    stored: _StoredIdat | None = None
    head = b""  # the image data's first two bytes: its zlib header
    data_from = data_to = 0  # where the IDATs (consecutive, as checked) start and end
    chunks = 0
    while position + 8 <= len(data):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise UnsupportedEncodingError(
                f"a PNG in more than {MAX_PNG_CHUNKS:,} chunks (save it again: encoders "
                "write a few thousand at most)", f"PNG of over {MAX_PNG_CHUNKS} chunks")
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        crc = data[position + 8 + length:position + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise DamagedImageError(f"chunk {kind!r} cut short")
        if struct.unpack(">I", crc)[0] != isal_zlib.crc32(body, isal_zlib.crc32(kind)):
            raise DamagedImageError(f"chunk {kind!r} fails its CRC")
        start, position = position, position + 12 + length
        if (kind == b"IHDR") != (previous == b""):
            raise DamagedImageError("the header is not the first chunk, or comes twice")
        if previous == b"IDAT" and kind != b"IDAT":
            idat_done = True
        if kind[0:1].isupper() and (kind not in _CRITICAL_PNG or
                                    (idat_done and kind not in (b"IEND",))):
            raise DamagedImageError(f"critical chunk {kind!r} unknown or out of place")
        previous = kind
        if kind == b"IHDR":
            header = _expected_bytes(body)
            colour = body[9] if len(body) == 13 else None
        elif kind == b"PLTE":
            palette = True
        elif kind == b"IDAT":
            if colour == 3 and not palette:
                raise DamagedImageError("a palette image without its palette")
            if not data_from:
                data_from = start
                if 0 < header <= stored_up_to:  # type: ignore[operator]  # IHDR came first
                    stored = _StoredIdat(header)  # type: ignore[arg-type]
            data_to = position
            if len(head) < 2 <= len(head) + len(body):  # its first two bytes, now in
                head += body[:2 - len(head)]
                _check_zlib_header(head)
            elif len(head) < 2:
                head += body
            if body:  # the standard allows empty IDAT chunks
                produced += _inflate_counting(inflater, body, header - produced, stored)
        elif kind == b"IEND":
            ended = True
            break
    if header is None or not ended:
        raise DamagedImageError("the file ends before its end chunk")
    produced += _inflate_counting(inflater, b"", header - produced, stored, final=True)
    if produced != header or not inflater.eof:
        raise DamagedImageError(f"image data holds {produced} of {header} bytes")
    if stored is None:
        return None
    # What follows the end chunk is not the file's: it is left out, as decoders leave it.
    return b"".join((data[:data_from], stored.chunk(), data[data_to:position]))


def _check_zlib_header(head: bytes) -> None:
    """The image data's two-byte zlib header (RFC 1950, 2.2): deflate (CM 8) with a window
    of at most 32 KiB (CINFO 7), no preset dictionary (PNG, 10.1), its check bits right.
    ISA-L reads a larger window, which zlib, Pillow's inflate, refuses: the film would be
    decoded from the check's stored copy when small and refused when large."""
    cmf, flg = head[0], head[1]
    if cmf & 0x0F != 8 or cmf >> 4 > 7 or flg & 0x20 or (cmf * 256 + flg) % 31:
        raise DamagedImageError(f"the image data's zlib header {head.hex()} is not one "
                                "PNG allows")


_STORED_BLOCK = 65535  # bytes of a stored deflate block at most (RFC 1951, 3.2.4)


class _StoredIdat:
    """One IDAT chunk holding a zlib stream (RFC 1950) of `size` bytes in stored deflate
    blocks, written piece by piece as they are inflated. It grows with what is written, so
    a small file that only declares a large image costs what it holds."""

    def __init__(self, size: int) -> None:
        self.size, self.written, self.left, self.adler = size, 0, 0, 1
        # Length (written last), type, then the zlib header: deflate with a 32 KiB window,
        # no dictionary, the fastest level (0x7801: a multiple of 31, as its check requires).
        self.buffer = bytearray(struct.pack(">I4sBB", 0, b"IDAT", 0x78, 0x01))

    def write(self, piece: bytes) -> None:
        view = memoryview(piece)
        self.adler = isal_zlib.adler32(view, self.adler)
        while len(view):
            if self.left == 0:  # a block starts: BFINAL on the last, BTYPE 00, LEN, NLEN
                size = min(_STORED_BLOCK, self.size - self.written)
                self.buffer += struct.pack("<BHH", int(self.written + size == self.size),
                                           size, size ^ 0xFFFF)
                self.left = size
            count = min(len(view), self.left)
            self.buffer += view[:count]
            self.written, self.left = self.written + count, self.left - count
            view = view[count:]

    def chunk(self) -> bytearray:
        """The whole chunk, its length, Adler-32 and CRC written; once every byte has been."""
        self.buffer += struct.pack(">I", self.adler)
        struct.pack_into(">I", self.buffer, 0, len(self.buffer) - 8)
        self.buffer += struct.pack(">I", isal_zlib.crc32(memoryview(self.buffer)[4:]))
        return self.buffer


def _expected_bytes(ihdr: bytes) -> int:
    """Decompressed size of the image data: filter byte + packed samples, for every row of
    every interlace pass."""
    if len(ihdr) != 13:
        raise DamagedImageError("bad header length")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    if colour not in _CHANNELS:
        raise DamagedImageError(f"unknown colour type {colour}")
    bits = depth * _CHANNELS[colour]

    def size(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w and h else 0

    if interlace == 0:
        return size(width, height)
    return sum(size((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy)
               for x0, y0, dx, dy in _ADAM7)


def _inflate_counting(inflater, chunk: bytes, room: int, stored: _StoredIdat | None = None,
                      final: bool = False) -> int:
    """Feed `chunk`, count the output and drop it (or write it to `stored`); more output
    than `room` is damage."""
    count = 0
    try:
        piece = inflater.decompress(chunk, _INFLATE_PIECE)
        while True:
            count += len(piece)
            if count > room:
                raise DamagedImageError("more image data than the header declares")
            if stored is not None and piece:
                stored.write(piece)
            if not inflater.unconsumed_tail:
                break
            piece = inflater.decompress(inflater.unconsumed_tail, _INFLATE_PIECE)
        if final and not inflater.eof:  # the end: whatever the stream still holds
            piece = inflater.flush()
            count += len(piece)
            if count <= room and stored is not None and piece:
                stored.write(piece)
    except isal_zlib.error as exc:
        raise DamagedImageError(f"image data does not inflate: {exc}") from None
    if count > room:
        raise DamagedImageError("more image data than the header declares")
    return count


def jpeg_frame_header(frame: bytes) -> tuple[int, int, int, int]:
    """(SOF marker, sample precision, height, width) from the first frame header."""
    if not frame.startswith(b"\xff\xd8"):
        raise DamagedImageError("the frame does not start as a JPEG")
    position = 2
    while position + 4 <= len(frame):
        if frame[position] != 0xFF:
            raise DamagedImageError("a marker was expected")
        marker = frame[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        length = int.from_bytes(frame[position + 2:position + 4], "big")
        if marker in _SOF or marker == SOF_LS:
            if length < 8 or position + 2 + length > len(frame):
                raise DamagedImageError("the frame header is cut short")
            precision, height, width = struct.unpack(">BHH", frame[position + 4:position + 9])
            return marker, precision, height, width
        if marker in (0xDA, 0xD9):  # a scan or the end before any frame header
            break
        position += 2 + length
    raise DamagedImageError("no JPEG frame header")


def is_lossless_jpeg(data: bytes) -> bool:
    """A lossless (SOF3, 7, 11, 15) or JPEG-LS file: never decoded as a plain file (see
    check_jpeg); False for anything whose frame header cannot be read."""
    try:
        return jpeg_frame_header(data)[0] in LOSSLESS_SOF | {SOF_LS}
    except DamagedImageError:
        return False
