"""A grayscale DICOM film's stored values -> what a radiologist's viewer shows, as 8 bits.

The standard's grayscale pipeline (PS3.4 N.2.1, PS3.3 C.11), in its order:

1. Modality LUT (PS3.3 C.11.1): the Modality LUT Sequence, or Rescale Slope/Intercept.
2. VOI (PS3.3 C.11.2): the VOI LUT Sequence, else Window Center/Width with its VOI LUT
   Function (LINEAR, LINEAR_EXACT, SIGMOID), else the data's own range.
3. Presentation (PS3.3 C.11.6, C.8.11.6.1.2, C.7.6.3.1.2): MONOCHROME1 or Presentation LUT
   Shape INVERSE -> inverted, so that bone is bright.
4. 8 bits, Pixel Padding Value (PS3.3 C.7.5.1.1.2) shown black.

Steps 1 and 2 run on pydicom's own functions (`apply_modality_lut`, `apply_voi`,
`apply_windowing`). Around them, the field's known corrections, each with its source where
it is applied: a LUT's real bit depth from its entries, its first mapped value read as signed
for signed data, pydicom's LUT index kept wide enough, the windowing output range fixed, the
data's range (not Bits Stored's) when nothing else is given, invalid windows and constant LUTs
ignored with a warning, and an unusable rescale refused (DicomRescaleError, 422).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.pixels.processing import apply_voi, apply_windowing

from app.contract.errors import DicomRescaleError

_WINDOW_TOP = 65535.0  # the output range handed to apply_windowing: 0..2^16 - 1
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class Display:
    pixels: np.ndarray  # (H, W) uint8, 0 = black
    window: str  # which VOI was used: "VOI LUT", "window 40/400", "data range 300 to 3000"
    warnings: tuple[str, ...]


def display(ds: Dataset, stored: np.ndarray, photometric: str) -> Display:
    """(H, W) stored values of a MONOCHROME1/2 film -> what a viewer shows."""
    padding = _padding(ds, stored)
    values = _modality(ds, stored)
    warnings: list[str] = []
    scaled, window = _voi(ds, values, padding, warnings)
    if "PresentationLUTSequence" in ds:
        warnings.append("The Presentation LUT Sequence (2050,0010) is not applied; the film is "
                        "shown with its VOI only.")
    if _inverted(ds, photometric):
        scaled = 1.0 - scaled
    pixels = np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)
    if padding is not None:
        pixels[padding] = 0
    return Display(pixels, window, tuple(warnings))


# --- 1. modality LUT ------------------------------------------------------------------------

def _modality(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """Stored values -> modality values: (H, W), float64 where rescaled, else as stored."""
    if ds.get("ModalityLUTSequence"):
        item = ds.ModalityLUTSequence[0]
        lut = _lut_entries(ds, item)
        if lut is None:
            raise DicomRescaleError("The Modality LUT Sequence (0028,3000)", "unreadable")
        proxy = Dataset()
        proxy.ModalityLUTSequence = [_lut_item(lut, _first_mapped(ds, item))]
        return apply_modality_lut(stored, proxy)
    slope = _number(ds, "RescaleSlope", 1.0)
    intercept = _number(ds, "RescaleIntercept", 0.0)
    if not math.isfinite(slope) or slope == 0:
        raise DicomRescaleError("Rescale Slope (0028,1053)", _shown(ds, "RescaleSlope"))
    if not math.isfinite(intercept):
        raise DicomRescaleError("Rescale Intercept (0028,1052)", _shown(ds, "RescaleIntercept"))
    if slope == 1 and intercept == 0:
        return stored
    proxy = Dataset()
    proxy.RescaleSlope, proxy.RescaleIntercept = slope, intercept
    with np.errstate(over="ignore", invalid="ignore"):
        values = apply_modality_lut(stored, proxy)
        ends = (float(values.min()), float(values.max()))
    if not all(math.isfinite(end) for end in ends):  # 1e308 x 4095 overflows to inf
        raise DicomRescaleError("Rescale Slope (0028,1053)", _shown(ds, "RescaleSlope"))
    return values


def _number(ds: Dataset, keyword: str, default: float) -> float:
    value = ds.get(keyword)
    if value is None or str(value).strip() == "":
        return default
    try:
        return float(value[0] if _multi(value) else value)
    except (TypeError, ValueError):
        return math.nan


def _shown(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword)).strip() or "empty"


def _multi(value) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


# --- LUTs (Modality and VOI share their format, PS3.3 C.11.1.1.1 and C.11.2.1.1) ------------

def _lut_entries(ds: Dataset, item: Dataset) -> np.ndarray | None:
    """The LUT's entries as uint16, or None when the item is incomplete."""
    if "LUTDescriptor" not in item or "LUTData" not in item:
        return None
    element = item["LUTData"]
    if isinstance(element.value, (bytes, bytearray)):  # OW: 16-bit words in the file's order
        big = getattr(ds, "original_encoding", (None, True))[1] is False
        lut = np.frombuffer(element.value, dtype=">u2" if big else "<u2")
    else:
        value = element.value
        lut = np.asarray(list(value) if _multi(value) else [value], dtype=np.int64)
        lut = lut.astype(np.uint16)
    count = int(item.LUTDescriptor[0]) or 65536  # 0 means 2^16 entries (PS3.3 C.11.1.1.1)
    return lut[:count] if len(lut) else None


def _first_mapped(ds: Dataset, item: Dataset) -> int:
    """The first stored value mapped. PS3.3 C.11.1.1.1: it is signed when Pixel
    Representation is 1, but files (and pydicom, the descriptor's VR being ambiguous: its
    issue 'LUT Descriptor values don't follow standard') often have it as US: 65535 is -1."""
    first = int(item.LUTDescriptor[1])
    if int(ds.get("PixelRepresentation", 0) or 0) == 1 and first >= 32768:
        first -= 65536
    return first


def _lut_item(lut: np.ndarray, first: int) -> Dataset:
    """A LUT item pydicom applies correctly: its descriptor says 16 bits. pydicom builds the
    LUT's and the index's dtype from that value: 'uint12' does not exist (apply_modality_lut
    fails), and apply_voi indexes an 8-bit LUT of more than 256 entries with a uint8 index,
    which wraps. The real output range is taken from the entries (_lut_top)."""
    item = Dataset()
    item.add_new(0x00283002, "SS" if first < 0 else "US", [len(lut), first, 16])
    item.add_new(0x00283006, "US", [int(v) for v in lut])
    return item


def _lut_top(lut: np.ndarray, descriptor_bits: int) -> int:
    """The LUT's white: 2^bits - 1 for the bits its entries really use, when fewer than its
    descriptor says. Some CR units write 16 in the descriptor and 12-bit entries (PS3.3
    C.11.2.1.1 allows 8 or 10-16); viewers follow the entries, as DCMTK's DiLookupTable::
    checkBits derives the depth from the largest entry."""
    used = max(int(lut.max()).bit_length(), 8)
    bits = min(used, descriptor_bits) if 8 <= descriptor_bits <= 16 else used
    return 2 ** bits - 1


# --- 2. VOI ---------------------------------------------------------------------------------

def _voi(ds: Dataset, values: np.ndarray, padding: np.ndarray | None,
         warnings: list[str]) -> tuple[np.ndarray, str]:
    """Modality values -> 0-1 (float), and which VOI was used."""
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        lut = _lut_entries(ds, item)
        if lut is None or int(lut.max()) == int(lut.min()):
            warnings.append("The VOI LUT Sequence (0028,3010) is incomplete or constant: "
                            "ignored.")
        else:
            proxy = Dataset()
            proxy.VOILUTSequence = [_lut_item(lut, _first_mapped(ds, item))]
            # The VOI LUT's input is the modality LUT's output, as integers (PS3.3 C.11.2);
            # values outside the LUT take its first or last entry (C.11.2.1.1). Clamped here,
            # because apply_voi stores `value - first` in a uint16 index, where 70000 wraps.
            first = _first_mapped(ds, item)
            inputs = np.clip(np.round(values), first, first + len(lut) - 1).astype(np.int64)
            shown = apply_voi(inputs, proxy, index=0)
            top = _lut_top(lut, int(item.LUTDescriptor[2]))
            return shown.astype(np.float32) / top, "VOI LUT"
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _number(ds, "WindowCenter", math.nan), _number(ds, "WindowWidth", math.nan)
        function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
        if function not in _VOI_FUNCTIONS:
            warnings.append(f"VOI LUT Function (0028,1056) {function} is not a defined term: "
                            "LINEAR used.")
            function = "LINEAR"
        problem = _window_problem(center, width, function)
        if problem is None:
            proxy = Dataset()
            # PS3.3 C.11.2.1.2: the window's output range is the display's; pydicom takes it
            # from Bits Stored and the rescale of the dataset it is given, so it is given a
            # fixed 0..65535 range here and the film's own tags play no part in it.
            proxy.PhotometricInterpretation = "MONOCHROME2"
            proxy.BitsStored, proxy.PixelRepresentation = 16, 0
            proxy.WindowCenter, proxy.WindowWidth = center, width
            proxy.VOILUTFunction = function
            shown = apply_windowing(values, proxy)
            suffix = "" if function == "LINEAR" else f" ({function.lower()})"
            return (shown / _WINDOW_TOP).astype(np.float32), \
                f"window {center:g}/{width:g}{suffix}"
        warnings.append(f"Window Center/Width (0028,1050/1051) {_shown(ds, 'WindowCenter')}/"
                        f"{_shown(ds, 'WindowWidth')} ignored ({problem}): the data's own "
                        "range is shown.")
    return _data_range(values, padding)


def _window_problem(center: float, width: float, function: str) -> str | None:
    """Why a window cannot be used (PS3.3 C.11.2.1.2: width >= 1 for LINEAR, > 0 else)."""
    if not (math.isfinite(center) and math.isfinite(width)):
        return "not a finite number"
    if function == "LINEAR" and width < 1:
        return "LINEAR needs a width of at least 1"
    if width <= 0:
        return f"{function} needs a width above 0"
    return None


def _data_range(values: np.ndarray, padding: np.ndarray | None) -> tuple[np.ndarray, str]:
    """No window and no LUT: the data's own range, Pixel Padding excluded, as Cornerstone,
    OHIF and dcm4che show such a film (a 12-bit film in a 16-bit container would be black
    over Bits Stored's range)."""
    real = values if padding is None else values[~padding]
    if real.size == 0:
        real = values
    low, high = float(real.min()), float(real.max())
    span = high - low if high > low else 1.0
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(1.0 / span)
    return scaled, f"data range {low:g} to {high:g}"


# --- 3. presentation and padding ------------------------------------------------------------

def _inverted(ds: Dataset, photometric: str) -> bool:
    """Whether the VOI output is inverted before display. MONOCHROME1 means low values are
    white (PS3.3 C.7.6.3.1.2). Presentation LUT Shape INVERSE inverts the VOI output (PS3.3
    C.11.6.1); the DX and CR modules require INVERSE exactly on MONOCHROME1 films (C.8.11.6.1.2),
    where it states the same inversion, never a second one. On a MONOCHROME2 film it inverts.
    pydicom's apply_presentation_lut inverts against the image's own maximum, not the VOI
    output's range, so it is not used."""
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"


def _padding(ds: Dataset, stored: np.ndarray) -> np.ndarray | None:
    """(H, W) bool of Pixel Padding Value (up to Pixel Padding Range Limit) in stored values
    (PS3.3 C.7.5.1.1.2), or None."""
    value = ds.get("PixelPaddingValue")
    if value is None or _multi(value):
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    low, high = sorted((int(value), int(limit))) if limit is not None and not _multi(limit) \
        else (int(value), int(value))
    mask = (stored >= low) & (stored <= high)
    return mask if mask.any() else None
