"""DICOM bytes -> an upright 8-bit grayscale array, the way a radiology viewer shows the film.

Steps, in the standard's order: stored values -> modality LUT (rescale slope/intercept) ->
VOI LUT or window (centre/width) when the file has one, else the full stored range ->
MONOCHROME1 inverted so that bone is bright -> 8 bits. Compressed transfer syntaxes (JPEG
baseline/lossless, JPEG-LS, JPEG 2000, RLE) are decoded by pydicom's pylibjpeg plugins.

Only single-frame projection radiographs are scored. What drove each decision is returned
(`DicomInfo.tags`) so a person can see why a file was taken or refused. Patient identity
(name, ID, birth date, accession number, ...) is never read into anything returned.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import JPEGBaseline8Bit

from app.contract.errors import DamagedImageError, DicomNotScoredError, TooManyPixelsError
from app.contract.integrity import check_jpeg

ACCEPTED_MODALITIES = ("CR", "DX", "DR")  # computed and digital radiography
SECONDARY_CAPTURE_MODALITIES = ("OT", "SC", "")  # scanned films: taken with a warning
_SECONDARY_CAPTURE_SOP = "1.2.840.10008.5.1.4.1.1.7"
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LLD", "RLD")
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian


@dataclass(frozen=True)
class DicomInfo:
    """What the file's tags said, for the response and the page. No patient identity."""

    modality: str
    view_position: str | None
    body_part: str | None
    study_date: str | None
    photometric: str
    transfer_syntax: str
    bits_stored: int
    window: str  # "VOI LUT", "window 40/400", or "full stored range"
    warnings: tuple[str, ...] = field(default_factory=tuple)


def looks_like_dicom(data: bytes) -> bool:
    """By content, never by name: the 'DICM' preamble, or a bare dataset that starts with a
    group 0002/0008 element in explicit or implicit little-endian form."""
    if data[128:132] == b"DICM":
        return True
    if len(data) < 8:
        return False
    group = int.from_bytes(data[0:2], "little")
    explicit_vr = data[4:6].isalpha() and data[4:6].isupper()
    implicit_length = int.from_bytes(data[4:8], "little") < len(data)
    return group in (0x0002, 0x0008) and (explicit_vr or implicit_length)


def read_dicom(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, DicomInfo]:
    """(H, W) uint8 and what the tags said; raises DicomNotScoredError for films not to score,
    and lets pydicom's own errors through for the caller's boundary to map."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds:
        if _PIXEL_DATA_TAG in data:  # the element starts but the file ends inside it
            raise DamagedImageError("the DICOM pixel data is cut short")
        raise DicomNotScoredError("no_pixel_data", "The DICOM file holds no image (no Pixel "
                                "Data element): it may be a report or a structured document.")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomNotScoredError("multi_frame", f"The DICOM file holds {frames} frames "
                                "(Number of Frames, 0028,0008); upload a single radiograph.")
    modality = str(ds.get("Modality", "") or "").upper()
    warnings = _check_modality(ds, modality)
    view = _text(ds, "ViewPosition")
    if view is not None and view.upper() in LATERAL_VIEWS:
        raise DicomNotScoredError("lateral_view", f"View Position (0018,5101) is {view}: the "
                                "model was trained on frontal (AP/PA) chest films only.")
    if view is None:
        warnings.append("View Position (0018,5101) is absent: check that this is a frontal "
                        "(AP/PA) film.")
    body_part = _text(ds, "BodyPartExamined")
    if body_part is not None and body_part.upper() not in ("CHEST", "THORAX"):
        warnings.append(f"Body Part Examined (0018,0015) is {body_part}, not CHEST.")
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if max_pixels is not None and rows * columns > max_pixels:
        raise TooManyPixelsError(rows * columns, max_pixels)
    _check_encapsulated_jpeg(ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomNotScoredError("not_grayscale", f"Photometric Interpretation (0028,0004) is "
                                f"{photometric}: only grayscale radiographs are scored.")
    pixels, window = _display(ds, photometric)
    info = DicomInfo(
        modality=modality or "(absent)", view_position=view, body_part=body_part,
        study_date=_text(ds, "StudyDate"), photometric=photometric,
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID.name)
        if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else "implicit little endian",
        bits_stored=int(ds.get("BitsStored", ds.get("BitsAllocated", 8))), window=window,
        warnings=tuple(warnings))
    return pixels, info


def _check_encapsulated_jpeg(ds: pydicom.Dataset) -> None:
    """A JPEG inside a DICOM gets the damage checks of a JPEG file (8-bit baseline: what
    libjpeg-turbo decodes; other codecs rely on their decoders' own errors)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax != JPEGBaseline8Bit:
        return
    for frame in generate_frames(ds.PixelData, number_of_frames=1):
        check_jpeg(frame)


def _check_modality(ds: pydicom.Dataset, modality: str) -> list[str]:
    if modality in ACCEPTED_MODALITIES:
        return []
    secondary = str(ds.get("SOPClassUID", "")) == _SECONDARY_CAPTURE_SOP
    if modality in SECONDARY_CAPTURE_MODALITIES and (secondary or modality == ""):
        return [f"Modality (0008,0060) is {modality or 'absent'}: a secondary capture, "
                "taken as a digitised radiograph; check that it is a chest film."]
    raise DicomNotScoredError("modality", f"Modality (0008,0060) is {modality or 'absent'}: only "
                            f"projection radiographs ({', '.join(ACCEPTED_MODALITIES)}) are "
                            "scored.")


def _display(ds: pydicom.Dataset, photometric: str) -> tuple[np.ndarray, str]:
    """Stored values -> what a viewer shows, as (H, W) uint8 (0 = black)."""
    stored = ds.pixel_array
    if stored.ndim != 2:
        raise DicomNotScoredError("not_grayscale", "The DICOM image is not a single grayscale "
                                "plane.")
    values = apply_modality_lut(stored, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        bits = int(lut.LUTDescriptor[2])
        # The VOI LUT's input is the modality LUT's output (PS3.3 C.11.2), as integers.
        rescaled = np.round(values).astype(np.int64)
        shown = np.asarray(apply_voi_lut(rescaled, ds, index=0), dtype=np.float64)
        scaled, window = shown / float(2 ** bits - 1), "VOI LUT"
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        scaled = _window(values, center, width, function)
        window = f"window {center:g}/{width:g}" + ("" if function == "LINEAR" else
                                                   f" ({function.lower()})")
    else:
        low, high = _stored_range(ds)
        scaled, window = (values - low) / max(high - low, 1e-6), "full stored range"
    scaled = np.clip(scaled, 0.0, 1.0)
    if photometric == "MONOCHROME1":  # low values are white on this kind of film
        scaled = 1.0 - scaled
    return np.round(scaled * 255.0).astype(np.uint8), window


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """The DICOM VOI window (PS3.3 C.11.2.1.2) onto 0-1."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / max(width, 1e-6)))
    if function == "LINEAR_EXACT":
        return (values - center) / max(width, 1e-6) + 0.5
    width = max(width, 1.0)
    return (values - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5


def _stored_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """The range the stored bits can hold, through the modality LUT (rescale slope/intercept)."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    ends = sorted((lo * slope + intercept, hi * slope + intercept))
    return ends[0], ends[1]


def _first(value) -> float:
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None
