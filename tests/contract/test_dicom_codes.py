"""app/contract/dicom.py: each refusal names its true cause (hardening round 2)."""

from __future__ import annotations

import io

import pydicom
import pytest

from app.contract.errors import DamagedImageError, DicomNotScoredError
from app.contract.preprocessing import decode
from tests.builders.dicom import dicom_bytes
from tests.builders.images import xray_like

_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


def test_pixel_data_with_more_frames_than_declared_says_so():
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(xray_like(64, 64))))
    ds.PixelData = ds.PixelData * 2  # two frames' bytes, Number of Frames 1
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(DicomNotScoredError) as refused:
        decode(buffer.getvalue(), max_pixels=50_000_000)
    assert refused.value.code == "dicom_frame_count_mismatch"
    assert "Number of Frames" in refused.value.message


@pytest.mark.parametrize("cut", [-10, -1, 2, 6], ids=["before-tag", "just-before", "in-tag",
                                                         "in-header"])
def test_a_file_cut_before_or_at_its_pixels_is_damaged_not_a_report(cut):
    data = dicom_bytes(xray_like(64, 64))
    with pytest.raises(DamagedImageError):
        decode(data[:data.find(_PIXEL_DATA_TAG) + cut], max_pixels=50_000_000)


def test_a_real_document_without_pixels_is_still_no_pixel_data():
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(xray_like(64, 64))))
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored",
                    "HighBit", "PixelRepresentation", "SamplesPerPixel",
                    "PhotometricInterpretation"):
        if keyword in ds:
            delattr(ds, keyword)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(DicomNotScoredError) as refused:
        decode(buffer.getvalue(), max_pixels=50_000_000)
    assert refused.value.code == "dicom_no_pixel_data"
