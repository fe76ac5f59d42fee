"""Compressed DICOM frames (app/contract/dicom_frames.py): every codec's frame refused when cut
or when its own header disagrees with Rows/Columns, before any decode; whole ones read as
their plain pixels. Built from a dataset film."""

import io

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, itemize_fragment

from app.contract.errors import (
    CorruptImageError,
    DamagedImageError,
    ImageError,
    TooManyPixelsError,
)
from app.contract.preprocessing import decode
from tests.builders import films as fb
from tests.builders.corpus import progressive_cut_at_scan
from tests.builders.dicom import dicom_bytes

pytestmark = pytest.mark.realdata
_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000), little endian


@pytest.fixture(scope="module")
def gray(data_dir) -> np.ndarray:
    return fb.gray_of(data_dir / "test/NORMAL/IM-0001-0001.jpeg")


def _frames(gray: np.ndarray) -> dict[str, bytes]:
    wide = gray.astype(np.uint16) * 16
    return {
        "jpeg-extended": fb.encapsulated(gray, fb.extended_jpeg(gray), fb.SYNTAXES[
            "jpeg-extended"]),
        "jpeg-lossless-8": fb.encapsulated(gray, fb.lossless_jpeg(gray), fb.SYNTAXES[
            "jpeg-lossless"]),
        "jpeg-lossless-sv1-12": fb.encapsulated(wide, fb.lossless_jpeg(wide, 12), fb.SYNTAXES[
            "jpeg-lossless-sv1"], bits=12),
        "jpeg-lossless-16-predictor-7": fb.encapsulated(
            wide, fb.lossless_jpeg(wide, 16, predictor=7), fb.SYNTAXES["jpeg-lossless"],
            bits=16),
        "jpeg-2000": dicom_bytes(gray, syntax="jpeg2000"),
        "rle": dicom_bytes(gray, syntax="rle"),
    }


@pytest.mark.parametrize("kind", ["jpeg-extended", "jpeg-lossless-8", "jpeg-lossless-sv1-12",
                                  "jpeg-lossless-16-predictor-7", "jpeg-2000", "rle"])
def test_a_whole_frame_reads_and_a_cut_one_is_refused(gray, kind):
    data = _frames(gray)[kind]
    shown = decode(data).pixels
    assert np.corrcoef(shown.ravel(), gray.ravel())[0, 1] > 0.99
    frame = fb.frame_of(data)
    for keep in (0.35, 0.9):
        with pytest.raises(CorruptImageError):
            decode(fb.with_frame(data, fb.cut(frame, keep)))


def test_a_progressive_frame_cut_at_a_scan_is_refused(gray):
    frame = fb.extended_jpeg(gray, progressive=True)
    data = fb.encapsulated(gray, frame, fb.SYNTAXES["jpeg-extended"])
    decode(data)
    with pytest.raises(DamagedImageError):
        decode(fb.with_frame(data, progressive_cut_at_scan(frame)))


def test_a_frame_header_over_the_pixel_limit_is_refused_before_decoding(gray):
    with pytest.raises(TooManyPixelsError) as raised:
        decode(fb.poisoning_jpeg_extended(gray), max_pixels=50_000_000)
    assert raised.value.pixels == 30000 * 30000


def test_a_frame_header_that_disagrees_with_rows_and_columns_is_refused(gray):
    with pytest.raises(DamagedImageError, match="Rows/Columns"):
        decode(fb.poisoning_jpeg_extended(gray, claimed=1024), max_pixels=50_000_000)


def test_an_rle_header_listing_the_wrong_segments_is_refused(gray):
    data = dicom_bytes(gray, syntax="rle")
    frame = bytearray(fb.frame_of(data))
    frame[0] = 3  # three segments for one 8-bit sample
    with pytest.raises(DamagedImageError, match="segments"):
        decode(fb.with_frame(data, bytes(frame)))



@pytest.mark.parametrize("kind", ["jpeg-baseline", "jpeg-extended", "jpeg-lossless"])
def test_a_frame_holding_a_second_image_is_refused_never_read_as_its_first(gray, kind):
    """One frame (Number of Frames absent: 1) whose fragments hold two whole JPEG images:
    the decoder reads the first and stops, and the second (another view, another patient)
    would go unseen. Refused as more frames than the header counts, in one fragment or
    two, after an empty first fragment too; zero padding after the end is fine."""
    make = {"jpeg-baseline": fb.jpeg_of, "jpeg-extended": fb.extended_jpeg,
            "jpeg-lossless": fb.lossless_jpeg}[kind]
    first, second = make(gray), make(np.ascontiguousarray(gray[::-1]))
    data = fb.encapsulated(gray, first, fb.SYNTAXES[kind])
    decode(data)
    decode(fb.with_frame(data, first + b"\x00\x00"))
    for fragments in ([first + second], [first, second], [b"", first, second]):
        ds = pydicom.dcmread(io.BytesIO(data))
        # An empty Basic Offset Table, the fragments, the sequence delimiter.
        ds.PixelData = b"".join([_ITEM + b"\x00" * 4, *map(itemize_fragment, fragments),
                                 b"\xfe\xff\xdd\xe0" + b"\x00" * 4])
        with pytest.raises(ImageError) as raised:
            decode(fb._save(ds))
        assert raised.value.code == "dicom_frame_count_mismatch", fragments
    # Bytes after the end that are no image are never decoded: a writer's trailer, fill
    # bytes, a second end marker, a stray segment.
    for trailer in (b"\x12\x34 trailing", b"\xff\xd9\xff\xd9", b"\xff\x00",
                    b"\xff\xe1\x00\x04ab"):
        decode(fb.with_frame(data, first + trailer))
    with pytest.raises(ImageError) as raised:  # a second image after fill bytes, too
        decode(fb.with_frame(data, first + b"\xff\xff" + second))
    assert raised.value.code == "dicom_frame_count_mismatch"


def test_a_basic_offset_table_listing_more_frames_than_the_header_is_refused(gray):
    frame = fb.jpeg_of(gray)
    data = fb.encapsulated(gray, frame, fb.SYNTAXES["jpeg-baseline"])
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = encapsulate([frame, frame], has_bot=True)
    with pytest.raises(ImageError) as raised:
        decode(fb._save(ds))
    assert raised.value.code == "dicom_frame_count_mismatch"
    assert "Basic Offset Table lists 2 frames" in raised.value.text


@pytest.mark.parametrize("bits", [8, 12])
def test_a_jpeg_ls_frame_holding_a_second_image_is_refused(gray, bits):
    pixels = gray if bits == 8 else gray.astype(np.uint16) * 16
    data = dicom_bytes(pixels, syntax="jpeg-ls", bits=bits)
    frame = fb.frame_of(data)
    second = fb.frame_of(dicom_bytes(np.ascontiguousarray(pixels[::-1]), syntax="jpeg-ls",
                                     bits=bits))
    decode(fb.with_frame(data, frame + b"\x00\x00"))
    with pytest.raises(ImageError) as raised:
        decode(fb.with_frame(data, frame + second))
    assert raised.value.code == "dicom_frame_count_mismatch"
    decode(fb.with_frame(data, frame + b"\x12\x34 trailing"))  # never decoded: accepted


def test_a_jpeg_ls_frame_with_restarts_still_ends_at_its_end():
    """Restart markers (FFD0-FFD7) sit in the scan data: read as segments with a length,
    they threw the walk past a second image."""
    from app.contract.dicom_frames import _jpeg_ls_end

    scan = b"\x01\x02\xff\xd0\x00\x40\x03\xff\x7f\x04"
    image = (b"\xff\xd8\xff\xf7\x00\x0b\x08\x00\x01\x00\x01\x01\x01\x11\x00"
             b"\xff\xda\x00\x08\x01\x01\x00\x00\x00\x00" + scan + b"\xff\xd9")
    assert _jpeg_ls_end(image + image) == len(image)


def test_an_rle_frame_is_one_fragment_and_a_second_is_a_second_frame(gray):
    """PS3.5 A.4.2: each RLE frame is one fragment. Its decoder stops at Rows x Columns, so
    a second fragment (a second frame) would go unread: refused. Bytes after the segments
    in the one fragment are never decoded."""
    data = dicom_bytes(gray, syntax="rle")
    frame = fb.frame_of(data)
    second = fb.frame_of(dicom_bytes(np.ascontiguousarray(gray[::-1]), syntax="rle"))
    decode(fb.with_frame(data, frame + b"\x00\x00"))
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = encapsulate([frame, second], has_bot=False)
    with pytest.raises(ImageError) as raised:
        decode(fb._save(ds))
    assert raised.value.code == "dicom_frame_count_mismatch"


def test_a_jpeg_2000_frame_with_a_second_codestream_after_it_is_refused(gray):
    data = dicom_bytes(gray, syntax="jpeg2000")
    frame = fb.frame_of(data)
    second = fb.frame_of(dicom_bytes(np.ascontiguousarray(gray[::-1]), syntax="jpeg2000"))
    decode(fb.with_frame(data, frame + b"\x00\x00"))
    with pytest.raises(CorruptImageError):
        decode(fb.with_frame(data, frame + second))
