"""The standard's grayscale display pipeline (app/contract/dicom_display.py), pixel by pixel:
each case shows a dataset film as its plain JPEG shows it, or is refused."""

import numpy as np
import pytest

from app.contract.errors import DicomRescaleError
from app.contract.preprocessing import decode
from tests.builders import films as fb
from tests.builders.dicom import dicom_bytes

pytestmark = pytest.mark.realdata

SOURCE = "test/NORMAL/IM-0001-0001.jpeg"


@pytest.fixture(scope="module")
def gray(data_dir) -> np.ndarray:
    return fb.gray_of(data_dir / SOURCE)


def _stretched(gray: np.ndarray) -> np.ndarray:
    """The film over its own range, as a viewer shows data without a window."""
    low, high = float(gray.min()), float(gray.max())
    return np.round((gray - low) / (high - low) * 255).astype(np.uint8)


def _close(a: np.ndarray, b: np.ndarray, tolerance: float = 1.0) -> bool:
    return float(np.abs(a.astype(int) - b.astype(int)).max()) <= tolerance


def test_no_window_shows_the_data_range_of_12_bit_data(gray):
    decoded = decode(fb.twelve_bit_no_window(gray))
    assert _close(decoded.pixels, _stretched(gray))
    assert decoded.dicom.window.startswith("data range")


def test_12_bit_values_in_a_16_bit_container_are_not_black(gray):
    assert _close(decode(fb.twelve_bits_in_16(gray)).pixels, _stretched(gray))


def test_a_voi_lut_whose_entries_use_fewer_bits_than_its_descriptor_says(gray):
    decoded = decode(fb.voi_lut_16_bit_descriptor_12_bit_entries(gray))
    assert decoded.dicom.window == "VOI LUT"
    assert _close(decoded.pixels, gray)  # 16 * p of 4095, not of 65535


def test_an_8_bit_voi_lut_of_more_than_256_entries_is_indexed_whole(gray):
    # pydicom indexes an 8-bit LUT with a uint8 index: value 256 would read entry 0.
    entries = np.minimum(np.arange(1024) // 4, 255)
    wide = dicom_bytes(gray.astype(np.uint16) * 4, bits=10)
    import io

    import pydicom
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(io.BytesIO(wide))
    item = Dataset()
    item.add_new(0x00283002, "US", [1024, 0, 8])
    item.add_new(0x00283006, "US", [int(v) for v in entries])
    ds.VOILUTSequence = [item]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert _close(decode(buffer.getvalue()).pixels, gray)


def test_presentation_lut_shape_inverse_inverts_a_monochrome2_film(gray):
    assert _close(decode(fb.presentation_inverse_on_monochrome2(gray)).pixels, _stretched(gray))


def test_monochrome1_with_its_inverse_shape_is_inverted_once(gray):
    assert _close(decode(fb.monochrome1_with_inverse(gray)).pixels, _stretched(gray))


def test_pixel_padding_is_left_out_of_the_data_range(gray):
    stored = gray.astype(np.uint16) * 10 + 300
    stored[:20, :] = 4000  # padding above the film's values
    data = fb.with_element(dicom_bytes(stored, bits=12), 0x00280120, "US", 4000)
    shown = decode(data).pixels
    assert (shown[:20] == 0).all()
    assert _close(shown[20:], _stretched(gray[20:]))


@pytest.mark.parametrize("window", [(128, 0), (128, -5), (128, 0.5)],
                         ids=["width-0", "width-negative", "width-under-1"])
def test_an_invalid_window_is_ignored_with_a_warning(gray, window):
    decoded = decode(dicom_bytes(gray, window=window))
    assert decoded.dicom.window.startswith("data range")
    assert any("ignored" in w for w in decoded.dicom.warnings)
    assert _close(decoded.pixels, _stretched(gray))


def test_a_nan_window_is_ignored_with_a_warning(gray):
    data = fb.with_raw_tag(dicom_bytes(gray, window=(128, 256)), 0x00281050, "DS", b"NaN ")
    decoded = decode(data)
    assert decoded.dicom.window.startswith("data range")
    assert any("ignored" in w for w in decoded.dicom.warnings)


def test_a_constant_voi_lut_is_ignored_with_a_warning(gray):
    decoded = decode(fb.voi_lut(gray, np.full(256, 200), 8))
    assert decoded.dicom.window.startswith("data range")
    assert any("constant" in w for w in decoded.dicom.warnings)


@pytest.mark.parametrize("windowing", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_functions_follow_the_standard(gray, windowing):
    data = fb.edited(dicom_bytes(gray, window=(128, 256)), VOILUTFunction=windowing)
    decoded = decode(data)
    assert windowing.lower() in decoded.dicom.window or windowing == "LINEAR"
    if windowing != "SIGMOID":
        assert _close(decoded.pixels, gray, tolerance=1.5)
    else:  # monotonic, centred on 128
        assert np.corrcoef(decoded.pixels.ravel(), gray.ravel())[0, 1] > 0.95


@pytest.mark.parametrize(("slope", "shown"), [("0", "0"), ("NaN", "NaN"), ("1e308", "1e308")])
def test_an_unusable_rescale_is_refused_naming_the_tag(gray, slope, shown):
    data = fb.with_raw_tag(dicom_bytes(gray.astype(np.uint16) * 16, bits=12, slope=1.0,
                                       intercept=0.0), 0x00281053, "DS", slope.encode())
    with pytest.raises(DicomRescaleError) as raised:
        decode(data)
    assert raised.value.code == "dicom_unusable_rescale"
    assert "Rescale Slope (0028,1053)" in raised.value.message and shown in raised.value.message
