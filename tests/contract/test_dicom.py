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
    UnsupportedFormatError,
)
from app.contract.preprocessing import decode
from tests.builders.corpus import jpeg_cut_with_end_marker
from tests.builders.dicom import dicom_bytes, with_voi_lut
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
