"""Damaged films are refused, never scored; clean films are never refused."""

import zlib
from pathlib import Path

import pytest
from PIL import Image

from app.contract.errors import CorruptImageError, DamagedImageError
from app.contract.integrity import check_png
from app.contract.preprocessing import decode
from tests.builders.corpus import (
    jpeg_corrupt_scan,
    jpeg_cut_with_end_marker,
    jpeg_odd_jfif_version_cut,
    jpeg_taller_frame,
    jpeg_with_exif,
    png_bad_idat_crc,
    png_interlaced,
    png_stream_ends_early,
    progressive_cut_at_scan,
    progressive_jpeg,
    ycck_jpeg,
)
from tests.builders.images import encode, jpeg_bytes, png16_bytes, png_bytes, xray_like


@pytest.mark.parametrize("damage", [
    jpeg_cut_with_end_marker, jpeg_corrupt_scan, jpeg_taller_frame, jpeg_odd_jfif_version_cut,
], ids=["cut-plus-end-marker", "corrupt-scan", "frame-taller-than-data", "odd-jfif-cut"])
def test_damaged_jpeg_is_refused(damage):
    whole = jpeg_bytes(400, 400)
    decode(whole)  # the source is clean
    with pytest.raises(DamagedImageError):
        decode(damage(whole))


@pytest.mark.parametrize("build", [png_stream_ends_early, png_bad_idat_crc],
                         ids=["stream-ends-early", "bad-idat-crc"])
def test_damaged_png_is_refused(build):
    with pytest.raises(CorruptImageError):
        decode(build())


def test_png_with_empty_image_data_chunks_is_clean():
    whole = png_bytes()
    empty_idat = b"\x00\x00\x00\x00IDAT" + zlib.crc32(b"IDAT").to_bytes(4, "big")
    iend = whole.rindex(b"IEND") - 4
    at_end = whole[:iend] + empty_idat + whole[iend:]
    idat = whole.index(b"IDAT") - 4
    at_start = whole[:idat] + empty_idat + whole[idat:]
    for data in (at_end, at_start):
        check_png(data)
        assert (decode(data).pixels == decode(whole).pixels).all()


def test_png_check_counts_interlaced_rows():
    pixels = xray_like(37, 53)
    interlaced = png_interlaced(pixels)
    check_png(interlaced)
    assert (decode(interlaced).pixels == pixels).all()
    with pytest.raises(DamagedImageError):  # declares 37 rows, holds the passes of 30
        check_png(png_interlaced(pixels[:30], declared_height=37))


@pytest.mark.parametrize("build", [
    lambda: jpeg_bytes(mode="L"), lambda: jpeg_bytes(mode="RGB"), lambda: jpeg_bytes(mode="CMYK"),
    ycck_jpeg, progressive_jpeg, png16_bytes, lambda: png_bytes(mode="RGBA"),
    lambda: png_interlaced(xray_like()),
    lambda: encode(Image.fromarray(xray_like()).convert("1"), "PNG"),
    lambda: encode(Image.fromarray(xray_like()), "JPEG", subsampling=2, quality=50),
], ids=["jpeg-gray", "jpeg-rgb", "jpeg-cmyk", "jpeg-ycck", "jpeg-progressive", "png-16bit",
        "png-rgba", "png-interlaced", "png-1bit", "jpeg-420"])
def test_clean_generated_film_is_never_refused(build):
    decode(build())


@pytest.mark.parametrize("scan", [2, 4, 6])
def test_progressive_jpeg_cut_at_a_scan_boundary_is_refused(scan):
    whole = progressive_jpeg()
    decode(whole)
    with pytest.raises(CorruptImageError, match="not fully coded"):
        decode(progressive_cut_at_scan(whole, scan))


def test_jpeg_with_a_flood_of_scans_is_refused():
    whole = progressive_jpeg()
    first = whole.index(b"\xff\xda")
    header, rest = whole[:first], whole[first:]
    # Repeat one (legal) DC scan 150 times: libjpeg would decode every one of them.
    second = rest.index(b"\xff\xda", 2)
    flood = header + rest[:second] * 150 + rest
    with pytest.raises(CorruptImageError, match="scans"):
        decode(flood)


def test_exif_orientation_applies_even_when_another_tag_is_malformed():
    # Orientation 6 = rotate 90 degrees clockwise: a 100x60 landscape becomes 60x100.
    decoded = decode(jpeg_with_exif(6, broken_tag=True))
    assert (decoded.width, decoded.height) == (60, 100)
    assert (decode(jpeg_with_exif(99)).width, decode(jpeg_with_exif(99)).height) == (100, 60)


@pytest.mark.realdata
def test_every_dataset_file_and_sample_decodes(data_dir: Path, samples_dir: Path):
    """No clean film is refused: all 5,840 dataset files and the full-size originals."""
    files = sorted(data_dir.rglob("*.jpeg")) + sorted(samples_dir.glob("*.jpeg"))
    assert len(files) >= 5840 + 3
    refused = []
    for path in files:
        try:
            decode(path.read_bytes())
        except CorruptImageError as exc:
            refused.append(f"{path.name}: {exc}")
    assert refused == []


@pytest.mark.realdata
def test_damaged_sample_film_is_refused(samples_dir: Path):
    """The normal sample (scored 0.17 whole) cut to 30% with an end marker once scored 0.94."""
    whole = (samples_dir / "NORMAL2-IM-1258-0001.jpeg").read_bytes()
    decode(whole)
    for damaged in (jpeg_cut_with_end_marker(whole), jpeg_corrupt_scan(whole)):
        with pytest.raises(CorruptImageError):
            decode(damaged)


def _with_empty_idats(data: bytes, count: int) -> bytes:
    """The PNG with `count` empty image data chunks before its end (the standard allows
    empty IDATs; they must follow the others)."""
    import struct

    empty = struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT"))
    end = data.rindex(b"IEND") - 4
    return data[:end] + empty * count + data[end:]


def test_a_png_of_a_hundred_thousand_chunks_is_not_walked_to_its_end():
    """Each chunk is walked and its CRC checked in Python: a 20 MiB file of empty or 1-byte
    chunks held a decode worker for 3 s. Past MAX_PNG_CHUNKS (encoders write a few
    thousand), the file is refused as an encoding not read (415), not as damage."""
    from app.contract.errors import UnsupportedEncodingError
    from app.contract.integrity import MAX_PNG_CHUNKS

    data = png_bytes(96, 80)
    decode(_with_empty_idats(data, MAX_PNG_CHUNKS - 10))  # many, but under the limit
    with pytest.raises(UnsupportedEncodingError) as raised:
        decode(_with_empty_idats(data, MAX_PNG_CHUNKS + 1))
    assert raised.value.code == "unsupported_encoding"
