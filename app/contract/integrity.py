"""Is the whole film in the file? Checks that refuse damaged images instead of scoring them.

Decoders are forgiving on purpose: libjpeg reports a JPEG that ends early, or whose entropy
data is corrupt, as a *warning* and fills the missing rows with grey; Pillow's PNG reader
stops quietly when the compressed stream ends before the last row. A triage tool must not
score half a chest as if it were whole (a normal film cut to 30% scored 0.94), so:

- JPEG: decoded once more by libjpeg-turbo (simplejpeg) in strict mode, at 1/8 scale so it
  is cheap; any warning (premature end of data, corrupt data, bad Huffman code) is damage.
- PNG: every chunk's CRC is checked and the image data is inflated, in bounded pieces that
  are counted and dropped, to prove it holds every row the header declares and ends with a
  valid checksum.
"""

from __future__ import annotations

import struct
import zlib

import simplejpeg

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # (x0, y0, dx, dy) of the seven interlace passes
_INFLATE_PIECE = 1 << 20  # bytes of decompressed data held at once while counting


class DamagedImageError(ValueError):
    """The file is readable but does not hold the whole image it declares."""


def check_jpeg(data: bytes) -> None:
    """Raise DamagedImageError when libjpeg reports damage in a JPEG that it can decode."""
    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
    except ValueError:
        return  # a header libjpeg-turbo cannot read: Pillow's own decode decides
    target = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}.get(colorspace, "RGB")
    try:
        simplejpeg.decode_jpeg(data, colorspace=target, min_height=1, min_width=1, strict=True)
    except ValueError as strict_error:
        try:  # an error that is not a warning (say, a coding simplejpeg lacks) is not ours
            simplejpeg.decode_jpeg(data, colorspace=target, min_height=1, min_width=1,
                                   strict=False)
        except ValueError:
            return
        raise DamagedImageError(str(strict_error)) from None


def check_png(data: bytes) -> None:
    """Raise DamagedImageError unless every chunk is intact and the image data holds exactly
    the rows that the header declares."""
    if not data.startswith(_PNG_SIGNATURE):
        raise DamagedImageError("no PNG signature")
    position, header, inflater = len(_PNG_SIGNATURE), None, zlib.decompressobj()
    produced, ended = 0, False
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        crc = data[position + 8 + length:position + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise DamagedImageError(f"chunk {kind!r} cut short")
        if struct.unpack(">I", crc)[0] != zlib.crc32(kind + body):
            raise DamagedImageError(f"chunk {kind!r} fails its CRC")
        position += 12 + length
        if kind == b"IHDR":
            header = _expected_bytes(body)
        elif kind == b"IDAT":
            if header is None:
                raise DamagedImageError("image data before the header")
            produced += _inflate_counting(inflater, body, header - produced)
        elif kind == b"IEND":
            ended = True
            break
    if header is None or not ended:
        raise DamagedImageError("the file ends before its end chunk")
    produced += _inflate_counting(inflater, b"", header - produced)
    if produced != header or not inflater.eof:
        raise DamagedImageError(f"image data holds {produced} of {header} bytes")


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


def _inflate_counting(inflater, chunk: bytes, room: int) -> int:
    """Feed `chunk`, count the output and drop it; more output than `room` is damage."""
    count = 0
    try:
        piece = inflater.decompress(chunk, _INFLATE_PIECE)
        while True:
            count += len(piece)
            if count > room:
                raise DamagedImageError("more image data than the header declares")
            if not inflater.unconsumed_tail:
                break
            piece = inflater.decompress(inflater.unconsumed_tail, _INFLATE_PIECE)
        if not chunk:  # the end: whatever the stream still holds
            count += len(inflater.flush())
    except zlib.error as exc:
        raise DamagedImageError(f"image data does not inflate: {exc}") from None
    if count > room:
        raise DamagedImageError("more image data than the header declares")
    return count
