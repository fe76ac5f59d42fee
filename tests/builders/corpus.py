"""A bad-input corpus, generated: hostile and odd files and request bodies, each with the
answer the server owes it. Nothing here is read from disk except the real-data cases, which
take the dataset's sample film as their source.

Each case is (id, build, expected status, expected error code or None for 200). `build`
returns the request: a file to post in the field `file`, or a whole raw body with its
Content-Type.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, PngImagePlugin

from tests.builders.images import encode, jpeg_bytes, png16_bytes, png_bytes, xray_like

BOUNDARY = "corpusboundary"


@dataclass(frozen=True)
class Raw:
    """A whole request body with its Content-Type (for framing cases)."""

    body: bytes
    content_type: str = f"multipart/form-data; boundary={BOUNDARY}"


def part(data: bytes, name: bytes = b"file", filename: bytes | None = b"x.jpeg",
         extra: bytes = b"", content_type: bytes = b"application/octet-stream") -> bytes:
    disposition = b'form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return (b"Content-Disposition: " + disposition + b"\r\nContent-Type: " + content_type
            + b"\r\n" + extra + b"\r\n" + data)


def multipart(*parts: bytes, boundary: str = BOUNDARY, newline: bytes = b"\r\n",
              close: bool = True) -> bytes:
    b = boundary.encode()
    body = b"".join(b"--" + b + newline + p.replace(b"\r\n", newline) + newline for p in parts)
    return body + (b"--" + b + b"--" + newline if close else b"")


# --- image builders ----------------------------------------------------------------------

def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_raw(width: int, height: int, rows: bytes, ihdr: bytes | None = None,
            extra: bytes = b"") -> bytes:
    """A hand-built 8-bit grayscale PNG: `rows` is the filtered row data to compress."""
    header = ihdr if ihdr is not None else struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra
            + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b""))


def _gray_rows(width: int, height: int) -> bytes:
    pixels = xray_like(height, width)
    return b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))


def adam7_rows(pixels: np.ndarray) -> bytes:
    """The filtered rows of the seven Adam7 passes of an (H, W) uint8 image."""
    rows = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                           (1, 0, 2, 2), (0, 1, 1, 2)):
        sub = pixels[y0::dy, x0::dx]
        if sub.size:
            rows += b"".join(b"\x00" + row.tobytes() for row in sub)
    return rows


def png_interlaced(pixels: np.ndarray, declared_height: int | None = None) -> bytes:
    """An Adam7-interlaced 8-bit grayscale PNG (Pillow reads these but cannot write them)."""
    height, width = pixels.shape
    ihdr = struct.pack(">IIBBBBB", width, declared_height or height, 8, 0, 0, 0, 1)
    return png_raw(width, height, adam7_rows(pixels), ihdr=ihdr)


def png_stream_ends_early() -> bytes:
    """A complete, valid zlib stream that holds only 40 of the 96 rows the header declares."""
    return png_raw(80, 96, _gray_rows(80, 40))


def png16_damaged(kind: str, height: int = 96, width: int = 80) -> bytes:
    """A 16-bit grey PNG whose every chunk CRC holds but whose image data is damaged:
    `short` (a complete zlib stream of 40 of the rows), `adler` (its Adler-32 checksum
    wrong), `adler-apart` (a damaged pixel byte in stored blocks, the checksum that says so
    in an IDAT chunk of its own), `cut` (the stream stops before its checksum), `extra` (a
    million zero bytes past the last row), or `crc` (a flipped byte in the compressed data,
    so its chunk's CRC fails)."""
    wide = xray_like(height, width).astype(np.uint16) * 257
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in wide)
    if kind == "short":
        rows = rows[:40 * (1 + 2 * width)]
    elif kind == "extra":
        rows += bytes(1_000_000)
    stream = bytearray(zlib.compress(rows, 0 if kind == "adler-apart" else -1))
    if kind == "adler":
        stream[-1] ^= 1
    elif kind == "cut":
        del stream[-4:]
    elif kind == "adler-apart":
        stream[5000] ^= 0x40
    pieces = [stream[:-4], stream[-4:]] if kind == "adler-apart" else [stream]
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    data = bytearray(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
                     + b"".join(_chunk(b"IDAT", bytes(piece)) for piece in pieces)
                     + _chunk(b"IEND", b""))
    if kind == "crc":
        data[data.index(b"IDAT") + 10] ^= 0xFF
    return bytes(data)


def png_bad_idat_crc() -> bytes:
    data = bytearray(png_bytes(96, 80))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF  # a flipped byte inside the compressed data
    return bytes(data)


def png_text_bomb(kind: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    huge = "A" * (70 * 1024 * 1024)  # inflates past Pillow's text limit
    if kind == "ztxt":
        info.add_text("comment", huge, zip=True)
    elif kind == "itxt":
        info.add_itxt("comment", huge, zip=True)
    else:
        return png_raw(80, 96, _gray_rows(80, 96), extra=_chunk(
            b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * (70 * 1024 * 1024), 9)))
    return encode(Image.fromarray(xray_like()), "PNG", pnginfo=info)


def png_idat_bomb() -> bytes:
    """A tiny declared image whose data inflates to far more than it declares."""
    return png_raw(16, 16, b"\x00" * (50 * 1024 * 1024))


def jpeg_cut_with_end_marker(data: bytes, keep: float = 0.3) -> bytes:
    """The film cut short, with an end-of-image marker so it still looks well formed."""
    return data[: int(len(data) * keep)] + b"\xff\xd9"


def jpeg_corrupt_scan(data: bytes) -> bytes:
    """Bytes in the middle of the entropy-coded scan replaced with others (no markers)."""
    out = bytearray(data)
    start = data.index(b"\xff\xda") + 200
    rng = np.random.default_rng(7)
    for i in range(start + (len(data) - start) // 3, start + (len(data) - start) // 3 + 64):
        if out[i] != 0xFF and out[i - 1] != 0xFF:
            out[i] = int(rng.integers(0, 0xFF))
    return bytes(out)


def jpeg_taller_frame(data: bytes, extra_rows: int = 400) -> bytes:
    """The frame header (SOF0) declares more rows than the scan data holds."""
    out = bytearray(data)
    sof = data.index(b"\xff\xc0")
    height = struct.unpack(">H", data[sof + 5:sof + 7])[0]
    out[sof + 5:sof + 7] = struct.pack(">H", height + extra_rows)
    return bytes(out)


def jpeg_odd_jfif_version_cut(data: bytes) -> bytes:
    """Cut to 10% with an end marker, and a JFIF major version of 2: the version warning once
    hid the premature-end warning from the damage check."""
    out = bytearray(data[: len(data) // 10] + b"\xff\xd9")
    out[11] = 2
    return bytes(out)


def progressive_cut_at_scan(data: bytes, scan: int = 2) -> bytes:
    """A progressive JPEG cut just before its `scan`-th scan, with an end marker: legal to
    libjpeg, but every later refinement of the film is missing."""
    at = -1
    for _ in range(scan):
        at = data.index(b"\xff\xda", at + 1)
    return data[:at] + b"\xff\xd9"


def png_second_header_after_data() -> bytes:
    """A 96-row header, 20 rows of data, then a second header declaring 20 rows."""
    head = png_raw(80, 96, _gray_rows(80, 20))
    iend = head.rindex(b"IEND") - 4
    second = _chunk(b"IHDR", struct.pack(">IIBBBBB", 80, 20, 8, 0, 0, 0, 0))
    return head[:iend] + second + head[iend:]


def png_palette_without_plte() -> bytes:
    return png_raw(80, 96, _gray_rows(80, 96),
                   ihdr=struct.pack(">IIBBBBB", 80, 96, 8, 3, 0, 0, 0))


def jpeg_with_exif(orientation: object, broken_tag: bool = False) -> bytes:
    image = Image.fromarray(xray_like(60, 100))
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw = exif.tobytes()
    if broken_tag:
        # Append a second IFD entry (Software, ASCII) that claims a huge count at a bad offset.
        raw = _exif_with_bad_entry(orientation)
    return encode(image, "JPEG", quality=95, exif=raw)


def _exif_with_bad_entry(orientation: object) -> bytes:
    entries = [
        struct.pack("<HHI", 0x0112, 3, 1) + struct.pack("<HH", int(orientation), 0),
        struct.pack("<HHII", 0x0131, 7, 0xFFFFFFF0, 0xFFFFFF00),  # UNDEFINED, absurd count
        struct.pack("<HHII", 0x010F, 99, 1, 0),  # a type that does not exist
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def jpeg_extreme_exif() -> bytes:
    """An EXIF block whose IFD offset points far outside the block."""
    raw = b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">I", 0x7FFFFFF0)
    return encode(Image.fromarray(xray_like()), "JPEG", exif=raw)


def ycck_jpeg() -> bytes:
    cmyk = np.dstack([xray_like()] * 3 + [np.zeros((96, 80), np.uint8)])
    return simplejpeg.encode_jpeg(np.ascontiguousarray(cmyk), colorspace="CMYK")


def progressive_jpeg() -> bytes:
    return encode(Image.fromarray(xray_like(200, 180)), "JPEG", progressive=True, quality=90)


def palette_with_alpha_png() -> bytes:
    image = Image.fromarray(xray_like()).convert("RGB").quantize(64)
    image.info["transparency"] = 0
    return encode(image, "PNG", transparency=0)


def animated(fmt: str) -> bytes:
    frames = [Image.fromarray(xray_like(seed=i)) for i in range(3)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:])


def multipage_tiff() -> bytes:
    return animated("TIFF")


def zip_file() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xray.jpeg", jpeg_bytes())
    return buffer.getvalue()


def jpeg_zip_polyglot() -> bytes:
    """A valid JPEG with a zip archive appended: a JPEG to every JPEG reader."""
    return jpeg_bytes() + zip_file()


def jpeg_html_polyglot() -> bytes:
    """A valid JPEG whose comment segment carries HTML and script."""
    return encode(Image.fromarray(xray_like()), "JPEG",
                  comment=b"<html><script>alert(document.cookie)</script></html>")


def pdf_jpeg_polyglot() -> bytes:
    return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + jpeg_bytes()


SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
       b'<script>alert(1)</script></svg>')
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
PDF = (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], bytes | Raw]
    status: int
    code: str | None  # None: scored (200)
    filename: str = "x.jpeg"


def _framing() -> list[Case]:
    good = jpeg_bytes()
    return [
        Case("filename-over-header-limit", lambda: Raw(multipart(
            part(good, filename=b"a" * 5000))), 400, "malformed_upload"),
        Case("more-than-8-part-headers", lambda: Raw(multipart(part(
            good, extra=b"".join(b"X-H%d: v\r\n" % i for i in range(12))))), 400,
            "malformed_upload"),
        Case("header-name-with-space", lambda: Raw(multipart(part(
            good, extra=b"Bad Header: v\r\n"))), 400, "malformed_upload"),
        Case("lf-only-line-endings", lambda: Raw(multipart(part(good), newline=b"\n")), 400,
             "malformed_upload"),
        Case("boundary-not-in-body", lambda: Raw(multipart(part(good), boundary="other")), 400,
             "malformed_upload"),
        Case("boundary-over-256-chars", lambda: Raw(
            multipart(part(good), boundary="b" * 300),
            f"multipart/form-data; boundary={'b' * 300}"), 400, "malformed_upload"),
        Case("body-cut-before-closing-boundary", lambda: Raw(
            multipart(part(good), close=False)[:-40]), 400, "malformed_upload"),
        Case("too-many-parts", lambda: Raw(multipart(*[
            part(b"x", name=b"f%d" % i, filename=None) for i in range(40)], part(good))),
            400, "malformed_upload"),
        Case("wrong-field-name", lambda: Raw(multipart(part(good, name=b"image"))), 422,
             "missing_file"),
        Case("two-files", lambda: Raw(multipart(part(good), part(good))), 400,
             "too_many_files"),
        Case("no-file-name", lambda: Raw(multipart(part(good, filename=None))), 200, None),
        Case("non-utf8-file-name", lambda: Raw(multipart(
            part(good, filename=b"\xff\xfe\xc3(bad)"))), 200, None),
        Case("lying-part-content-type", lambda: Raw(multipart(
            part(good, content_type=b"text/html"))), 200, None),
        Case("not-multipart", lambda: Raw(b'{"file": "abc"}', "application/json"), 422,
             "missing_file"),
        Case("multipart-without-boundary", lambda: Raw(b"abc", "multipart/form-data"), 422,
             "missing_file"),
        Case("empty-body", lambda: Raw(b""), 400, "malformed_upload"),
    ]


def _images() -> list[Case]:
    return [
        Case("zero-bytes", lambda: b"", 400, "empty_file"),
        Case("text", lambda: b"patient notes: not an image\n" * 20, 415, "not_an_image"),
        Case("html-named-jpg", lambda: HTML, 415, "not_an_image"),
        Case("svg-named-jpg", lambda: SVG, 415, "not_an_image"),
        Case("pdf", lambda: PDF, 415, "not_an_image"),
        Case("zip", zip_file, 415, "not_an_image"),
        Case("pdf-jpeg-polyglot", pdf_jpeg_polyglot, 415, "not_an_image"),
        Case("jpeg-zip-polyglot", jpeg_zip_polyglot, 200, None),
        Case("jpeg-html-polyglot", jpeg_html_polyglot, 200, None),
        Case("gif", lambda: encode(Image.fromarray(xray_like()), "GIF"), 415,
             "unsupported_format"),
        Case("animated-gif", lambda: animated("GIF"), 415, "unsupported_format"),
        Case("animated-png", lambda: animated("PNG"), 415, "multi_frame"),
        Case("multipage-tiff", multipage_tiff, 415, "unsupported_format"),
        Case("webp", lambda: encode(Image.fromarray(xray_like()), "WEBP"), 415,
             "unsupported_format"),
        Case("bmp", lambda: encode(Image.fromarray(xray_like()), "BMP"), 415,
             "unsupported_format"),
        Case("ico", lambda: encode(Image.fromarray(xray_like(32, 32)), "ICO"), 415,
             "unsupported_format"),
        Case("bomb-by-dimensions", lambda: encode(Image.new("L", (9000, 9000)), "PNG"), 413,
             "image_too_large"),
        Case("bomb-by-declared-size", lambda: png_raw(
            100_000, 100_000, b"\x00" * 10), 413, "image_too_large"),
        Case("bomb-by-idat-chunks", png_idat_bomb, 400, "corrupt_image"),
        Case("png-ztxt-bomb", lambda: png_text_bomb("ztxt"), 400, "corrupt_image"),
        Case("png-itxt-bomb", lambda: png_text_bomb("itxt"), 400, "corrupt_image"),
        Case("png-iccp-bomb", lambda: png_text_bomb("iccp"), 400, "corrupt_image"),
        Case("jpeg-cut-in-header-200-bytes", lambda: jpeg_bytes(400, 400)[:200], 400,
             "corrupt_image"),
        Case("jpeg-truncated", lambda: jpeg_bytes(400, 400)[:3000], 400, "corrupt_image"),
        Case("png-cut-inside-ihdr", lambda: png_bytes()[:20], 400, "corrupt_image"),
        Case("png-wrong-ihdr-length", lambda: png_raw(
            80, 96, _gray_rows(80, 96), ihdr=struct.pack(">IIBBBBB", 80, 96, 8, 0, 0, 0, 0)
            + b"\x00\x00"), 400, "corrupt_image"),
        Case("png-zero-width", lambda: png_raw(0, 96, b"\x00" * 96), 400, "corrupt_image"),
        Case("png-truncated", lambda: png_bytes(300, 300)[:-400], 400, "corrupt_image"),
        Case("png-stream-ends-early", png_stream_ends_early, 400, "corrupt_image"),
        Case("png-bad-idat-crc", png_bad_idat_crc, 400, "corrupt_image"),
        Case("png16-stream-ends-early", lambda: png16_damaged("short"), 400, "corrupt_image"),
        Case("png16-bad-adler32", lambda: png16_damaged("adler"), 400, "corrupt_image"),
        Case("png16-bad-adler32-in-its-own-idat", lambda: png16_damaged("adler-apart"), 400,
             "corrupt_image"),
        Case("png16-data-past-the-last-row", lambda: png16_damaged("extra"), 400,
             "corrupt_image"),
        Case("png16-stream-cut-before-checksum", lambda: png16_damaged("cut"), 400,
             "corrupt_image"),
        Case("png16-bad-idat-crc", lambda: png16_damaged("crc"), 400, "corrupt_image"),
        Case("png16-truncated", lambda: png16_bytes(300, 300)[:-400], 400, "corrupt_image"),
        Case("jpeg-cut-plus-end-marker", lambda: jpeg_cut_with_end_marker(
            jpeg_bytes(400, 400)), 400, "corrupt_image"),
        Case("jpeg-corrupt-scan", lambda: jpeg_corrupt_scan(jpeg_bytes(400, 400)), 400,
             "corrupt_image"),
        Case("jpeg-frame-taller-than-data", lambda: jpeg_taller_frame(jpeg_bytes(400, 400)),
             400, "corrupt_image"),
        Case("jpeg-odd-jfif-version-cut", lambda: jpeg_odd_jfif_version_cut(
            jpeg_bytes(400, 400)), 400, "corrupt_image"),
        Case("jpeg-progressive-cut-at-scan", lambda: progressive_cut_at_scan(
            progressive_jpeg()), 400, "corrupt_image"),
        Case("png-second-header-after-data", png_second_header_after_data, 400,
             "corrupt_image"),
        Case("png-palette-without-plte", png_palette_without_plte, 400, "corrupt_image"),
        Case("exif-rotated-with-wrongly-typed-tag", lambda: jpeg_with_exif(6, broken_tag=True),
             200, None),
        Case("exif-orientation-out-of-range", lambda: jpeg_with_exif(99), 200, None),
        Case("exif-extreme-offset", jpeg_extreme_exif, 200, None),
        Case("one-pixel", lambda: encode(Image.new("L", (1, 1), 128), "PNG"), 200, None),
        Case("1x100000", lambda: encode(Image.new("L", (1, 100_000), 90), "PNG"), 200, None),
        Case("png-16-bit", png16_bytes, 200, None),
        Case("png-1-bit", lambda: encode(Image.fromarray(xray_like()).convert("1"), "PNG"),
             200, None),
        Case("jpeg-cmyk", lambda: jpeg_bytes(mode="CMYK"), 200, None),
        Case("jpeg-ycck", ycck_jpeg, 200, None),
        Case("jpeg-progressive", progressive_jpeg, 200, None),
        Case("png-palette-with-alpha", palette_with_alpha_png, 200, None),
        Case("jpeg-trailing-garbage", lambda: jpeg_bytes() + b"\x00garbage" * 100, 200, None),
    ]


CASES = _framing() + _images()
FRAMING_IDS = {case.id for case in _framing()}
