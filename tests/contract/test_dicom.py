"""DICOM decoding details: damage inside DICOM, the VOI LUT's input, errors that pickle."""

import pickle

import numpy as np
import pytest

from app.contract.errors import (
    CorruptImageError,
    DamagedImageError,
    DicomNotScoredError,
    EmptyImageError,
    MultiFrameError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedEncodingError,
    UnsupportedFormatError,
)
from app.contract.preprocessing import decode
from tests.builders.corpus import jpeg_cut_with_end_marker
from tests.builders.dicom import (
    dicom_bytes,
    file_bytes,
    nested,
    study_film,
    unsupported_films,
    with_voi_lut,
)
from tests.builders.images import xray_like


def test_a_damaged_jpeg_inside_a_dicom_is_refused():
    import io

    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(xray_like(300, 260), syntax="jpeg-baseline")))
    whole = next(generate_frames(ds.PixelData, number_of_frames=1))
    decode(dicom_bytes(xray_like(300, 260), syntax="jpeg-baseline"))  # clean: scored
    ds.PixelData = encapsulate([jpeg_cut_with_end_marker(whole)])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(DamagedImageError):
        decode(buffer.getvalue())


def test_a_dicom_cut_inside_its_pixel_data_is_damaged_not_a_report():
    data = dicom_bytes(xray_like(300, 260))
    with pytest.raises(CorruptImageError):
        decode(data[: len(data) - 20_000])


def test_voi_lut_takes_the_rescaled_values():
    pixels = (np.arange(200 * 200) % 256).reshape(200, 200).astype(np.uint8)
    # Stored = pixel / 2 with slope 2: the rescaled values are the pixels again, and an
    # identity VOI LUT over 0-255 must show them unchanged.
    data = dicom_bytes(pixels // 2, slope=2.0, intercept=0.0)
    shown = decode(with_voi_lut(data, np.arange(256))).pixels
    assert np.abs(shown.astype(int) - (pixels // 2 * 2)).max() <= 1
    assert decode(with_voi_lut(data, np.arange(256))).dicom.window == "VOI LUT"


@pytest.mark.parametrize("error", [
    EmptyImageError(), NotAnImageError(), UnsupportedFormatError("GIF"), MultiFrameError(3),
    TooManyPixelsError(10, 5), TooManyPixelsError(None, None), CorruptImageError("x"),
    DicomNotScoredError("lateral_view", "View Position is LL"),
], ids=lambda e: type(e).__name__)
def test_image_errors_survive_a_trip_through_a_worker_process(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and vars(copy) == vars(error)


# --- intact, in an encoding the decoder does not read (issue 27) -----------------------------

_UNSUPPORTED = unsupported_films(xray_like(96, 80))


@pytest.mark.parametrize("name", sorted(_UNSUPPORTED))
def test_an_intact_film_in_an_encoding_not_read_is_unsupported_not_damaged(name):
    with pytest.raises(UnsupportedEncodingError) as raised:
        decode(_UNSUPPORTED[name], 50_000_000)
    error = raised.value
    assert not isinstance(error, CorruptImageError)  # never "damaged or truncated"
    assert error.code == "unsupported_encoding"
    assert "damaged" not in error.message and error.feature in error.message
    assert len(f"{error.code}: {error.brief}") <= 64  # fits a DICOM Error Comment
    assert pickle.loads(pickle.dumps(error)).brief == error.brief  # from a decode worker


@pytest.mark.parametrize(("name", "named"), [
    ("jpeg-progressive", "1.2.840.10008.1.2.4.55"), ("jpeg-xl", "JPEG XL"),
    ("htj2k", "High-Throughput JPEG 2000"), ("float-pixels", "float pixel data"),
    ("jpeg-under-16-bits", "Bits Allocated"), ("icon-only", "Icon Image Sequence"),
    ("deep-nesting", "nested deeper than 32")])
def test_the_unsupported_encoding_is_named(name, named):
    with pytest.raises(UnsupportedEncodingError) as raised:
        decode(_UNSUPPORTED[name], 50_000_000)
    assert named in raised.value.feature


def test_a_transfer_syntax_not_read_says_which_by_uid():
    with pytest.raises(UnsupportedEncodingError) as raised:
        decode(_UNSUPPORTED["jpeg-xl"], 50_000_000)
    assert raised.value.syntax == "1.2.840.10008.1.2.4.112"
    assert raised.value.brief == "transfer syntax 1.2.840.10008.1.2.4.112"


def test_a_film_cut_before_its_pixel_data_is_still_damaged_beside_an_icon():
    """The icon rule does not hide a cut film: an icon, and a Pixel Data element that
    begins but never ends."""
    import io

    import pydicom

    film = pydicom.dcmread(io.BytesIO(_UNSUPPORTED["icon-only"]))
    film.PixelData = xray_like(96, 80).tobytes()
    film["PixelData"].VR = "OB"
    data = file_bytes(film)
    with pytest.raises(DamagedImageError):
        decode(data[:-3000], 50_000_000)


def test_a_film_nested_as_deep_as_the_limit_is_scored():
    film = nested(study_film(xray_like(96, 80)), 32)
    assert decode(film, 50_000_000).pixels.shape == (96, 80)
