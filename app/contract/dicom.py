"""DICOM bytes -> an upright 8-bit grayscale array, the way a radiology viewer shows the film.

Reading: a Part 10 file, or a bare dataset without preamble and file meta (legal for older
systems), read as the transfer syntax pydicom finds its elements in (the standard's default,
implicit VR little endian, or explicit VR); when such a file's pixels are compressed, which
codec wrote them is unknown, and the answer says the file meta is missing.

Pixels: every compressed frame gets the checks of a plain file of its codec and its own
header's size checked before any decode (dicom_frames.py); grayscale films go through the
standard's display pipeline (dicom_display.py); RGB and YBR colour containers whose channels
are equal are grey films and are read as such, truly coloured ones are refused.

Only single-frame projection radiographs are scored. What drove each decision is returned
(`DicomInfo`) so a person can see why a file was taken, refused or marked not assessable:
View Position (only AP and PA are frontal; lateral is refused; oblique, decubitus and several
views are `not_frontal`). The facts the intended-use gate (intended_use.py) holds against the
model card's population are read here too: Body Part Examined, SOP Class UID, Presentation
Intent Type and the patient's age in years. Patient identity (name, ID, birth date,
accession number, ...) is never read into anything returned: the age from the Patient's
Birth Date is computed here, on the fly, and only the age in years is kept.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import generate_fragments, generate_frames, parse_basic_offsets
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from app.contract.dicom_age import patient_age
from app.contract.dicom_display import display
from app.contract.dicom_frames import check_frame
from app.contract.errors import (
    DamagedImageError,
    DicomNotScoredError,
    ImageError,
    MissingFileMetaError,
    TooManyPixelsError,
    UnsupportedEncodingError,
)
from app.contract.nesting import NestingTooDeepError, check_file_nesting

ACCEPTED_MODALITIES = ("CR", "DX", "DR")  # computed and digital radiography
SECONDARY_CAPTURE_MODALITIES = ("OT", "SC", "")  # scanned films: taken with a warning
_SECONDARY_CAPTURE_SOP = "1.2.840.10008.5.1.4.1.1.7"
# View Position (0018,5101), PS3.3 C.8.11.5 and C.8.1.1 (DX, CR): the defined terms AP, PA,
# LL, RL, RLD, LLD, RLO, LLO, and spellings archives write. Only AP and PA are frontal.
FRONTAL_VIEWS = ("AP", "PA")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LEFT LATERAL", "RIGHT LATERAL")  # refused
NOT_FRONTAL_VIEWS = ("RLD", "LLD", "RLO", "LLO", "LATERAL DECUBITUS", "DECUBITUS",
                     "LEFT LATERAL DECUBITUS", "RIGHT LATERAL DECUBITUS", "OBLIQUE", "LAO",
                     "RAO", "LPO", "RPO", "LEFT OBLIQUE", "RIGHT OBLIQUE")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
GREY_TOLERANCE = 2.0  # mean channel difference (0-255) under which a colour film is grey
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
# Elements of the Image Pixel module (PS3.3 C.7.6.3) that only an image's header holds.
_IMAGE_PIXEL_MODULE = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")
# The transfer syntaxes whose pixels this module reads (each one tested, with pydicom's
# pylibjpeg and pyjpegls plugins). Any other (JPEG progressive, hierarchical or other
# retired JPEG processes, JPEG XL, HTJ2K, JPEG 2000 Part 2, JPIP, video, ...) is an intact
# film in an encoding it does not read: UnsupportedEncodingError, never "damaged".
DECODED_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless,
    JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000,
    RLELossless)
# Names pydicom 3.0's dictionary lacks (PS3.6 Table A-1).
_SYNTAX_NAMES = {"1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
                 "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
                 "1.2.840.10008.1.2.4.112": "JPEG XL",
                 "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression"}
# Pixels the decoder does not read, held in elements other than Pixel Data (PS3.3 C.7.6.3):
# (what they are, in brief).
_OTHER_PIXEL_ELEMENTS = {
    "FloatPixelData": ("float pixel data (7FE0,0008)", "float pixel data"),
    "DoubleFloatPixelData": ("double float pixel data (7FE0,0009)", "double float pixels"),
    "PixelDataProviderURL": ("pixel data referenced by a URL (JPIP, 0028,7FE0)",
                             "pixel data by URL (JPIP)")}


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
    window: str  # "VOI LUT", "window 40/400", "data range 300 to 3000", "as stored (colour)"
    warnings: tuple[str, ...] = field(default_factory=tuple)
    reasons: tuple[str, ...] = field(default_factory=tuple)  # not assessable: why
    # What the intended-use gate reads (app/contract/intended_use.py). The age in years
    # (a fraction), and what it came from (the tag names, never the dates); None: unknown.
    age_years: float | None = None
    age_from: str | None = None
    # The age by the header's other source (years, what from) where it disagrees with
    # age_years's (dicom_age.py patient_age): the gate holds the film to both.
    age_other: tuple[float, str] | None = None
    sop_class: str | None = None  # SOP Class UID (0008,0016)
    presentation_intent: str | None = None  # Presentation Intent Type (0008,0068), upper


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
    try:
        check_file_nesting(data)
    except NestingTooDeepError as exc:
        raise UnsupportedEncodingError(exc.message, exc.message) from None
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    bare = _give_bare_dataset_a_syntax(ds)
    syntax = ds.file_meta.TransferSyntaxUID
    if "PixelData" not in ds:
        unread = _unread_pixels(ds, data, syntax)
        if unread is not None:
            raise unread
        if _PIXEL_DATA_TAG in data:  # the element starts but the file ends inside it
            raise DamagedImageError("the DICOM pixel data is cut short")
        if any(keyword in ds for keyword in _IMAGE_PIXEL_MODULE):
            # An image's header without its pixels: a file cut before them, not a report.
            raise DamagedImageError("the DICOM file ends before its Pixel Data")
        raise DicomNotScoredError("no_pixel_data", "The DICOM file holds no image (no Pixel "
                                "Data element): it may be a report or a structured document.")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomNotScoredError("multi_frame", f"The DICOM file holds {frames} frames "
                                "(Number of Frames, 0028,0008); upload a single radiograph.")
    modality = str(ds.get("Modality", "") or "").upper()
    warnings = _check_modality(ds, modality)
    view, reasons = _view(ds, warnings)
    body_part = _text(ds, "BodyPartExamined")  # held to the card by the intended-use gate
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if max_pixels is not None and rows * columns > max_pixels:
        raise TooManyPixelsError(rows * columns, max_pixels)
    if bare and ds["PixelData"].is_undefined_length:  # encapsulated: by which codec?
        raise MissingFileMetaError()
    if syntax not in DECODED_TRANSFER_SYNTAXES:
        raise UnsupportedEncodingError(syntax_text(syntax), syntax=str(syntax))
    if syntax.is_compressed:
        try:
            listed = len(parse_basic_offsets(ds.PixelData))
        except (ValueError, TypeError) as exc:  # no item tag where the table must be
            raise DamagedImageError(f"the encapsulated Pixel Data does not start with its "
                                    f"Basic Offset Table ({exc})") from None
        if listed > frames:
            raise DicomNotScoredError(
                "frame_count_mismatch", f"The DICOM Pixel Data's Basic Offset Table lists "
                f"{listed} frames where Number of Frames (0028,0008) says {frames}: upload a "
                "single radiograph.")
        # The first item is the Basic Offset Table; the fragments follow. One more than the
        # frames is enough to know.
        if syntax == RLELossless and next(islice(
                (f for f in islice(generate_fragments(ds.PixelData), 1, None) if f),
                frames, None), None) is not None:
            # PS3.5 A.4.2: an RLE frame is one fragment; its decoder stops at Rows x
            # Columns, so a second one would go unread.
            raise DicomNotScoredError(
                "frame_count_mismatch", "The DICOM Pixel Data holds more RLE fragments than "
                f"Number of Frames (0028,0008) says ({frames}), one a frame: upload a "
                "single radiograph.")
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        check_frame(frame, syntax, rows, columns, int(ds.get("SamplesPerPixel", 1) or 1),
                    int(ds.get("BitsAllocated", 8) or 8), max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if not syntax.is_compressed:
        _check_native_length(ds, rows, columns, frames)
    stored = _stored(ds, bare)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if stored.ndim != 2:
            raise DicomNotScoredError("not_grayscale", "The DICOM image is not a single "
                                    "grayscale plane.")
        shown = display(ds, stored, photometric)
        pixels, window = shown.pixels, shown.window
        warnings.extend(shown.warnings)
    elif photometric in _COLOUR:
        pixels, window = _grey_of_colour(ds, stored, photometric), "as stored (grey in colour)"
        warnings.append(f"Photometric Interpretation (0028,0004) is {photometric}: a grey "
                        "film in a colour container, read as grey.")
    else:
        raise DicomNotScoredError("not_grayscale", f"Photometric Interpretation (0028,0004) is "
                                f"{photometric}: only grayscale radiographs are scored.")
    age = patient_age(ds)
    if age.unread is not None:
        warnings.append(f"Patient's Age (0010,1010) '{age.unread[:16]}' is not an age string "
                        "(such as 004Y), so it was not read.")
    info = DicomInfo(
        modality=modality or "(absent)", view_position=view, body_part=body_part,
        study_date=_text(ds, "StudyDate"), photometric=photometric,
        transfer_syntax=str(syntax.name) + (" (no file meta)" if bare else ""),
        bits_stored=int(ds.get("BitsStored", ds.get("BitsAllocated", 8))), window=window,
        warnings=tuple(warnings), reasons=tuple(dict.fromkeys(reasons)),
        age_years=age.years, age_from=age.source, age_other=age.other,
        sop_class=_text(ds, "SOPClassUID"),
        presentation_intent=(_text(ds, "PresentationIntentType") or "").upper() or None)
    return pixels, info


def syntax_text(syntax: str) -> str:
    """A transfer syntax for a person: 'transfer syntax JPEG XL (1.2.840.10008.1.2.4.112)'."""
    name = _SYNTAX_NAMES.get(str(syntax)) or UID(str(syntax)).name
    named = f"{name} ({syntax})" if name and name != str(syntax) else str(syntax)
    return f"transfer syntax {named}"


def _unread_pixels(ds: pydicom.Dataset, data: bytes,
                   syntax: UID) -> UnsupportedEncodingError | None:
    """What an image without a Pixel Data element holds instead, when it is intact and in
    an encoding the decoder does not read; None for a file that has no image (a report) or
    whose pixels were cut off."""
    for keyword, (feature, brief) in _OTHER_PIXEL_ELEMENTS.items():
        if keyword in ds:
            return UnsupportedEncodingError(feature, brief)
    icons = [item for item in ds.get("IconImageSequence", []) if "PixelData" in item]
    if icons and data.count(_PIXEL_DATA_TAG) <= len(icons):  # no other Pixel Data began
        return UnsupportedEncodingError(
            "pixels only in an Icon Image Sequence (0088,0200), no Pixel Data",
            "pixels only in an icon image")
    if any(keyword in ds for keyword in _IMAGE_PIXEL_MODULE) and \
            syntax not in DECODED_TRANSFER_SYNTAXES:
        return UnsupportedEncodingError(syntax_text(syntax), syntax=str(syntax))
    return None


def _give_bare_dataset_a_syntax(ds: pydicom.Dataset) -> bool:
    """A dataset without file meta gets the transfer syntax pydicom read it in (PS3.5 A.1:
    implicit VR little endian is the default); True when it had none."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return False
    implicit, little = getattr(ds, "original_encoding", (True, True))
    syntax = ImplicitVRLittleEndian if implicit is not False else (
        ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    return True


def _stored(ds: pydicom.Dataset, bare: bool) -> np.ndarray:
    """The stored values; for a bare dataset, any failure means the syntax was a guess."""
    try:
        return ds.pixel_array
    except ImageError:
        raise
    except Exception:
        if bare:
            raise MissingFileMetaError() from None
        raise


def _view(ds: pydicom.Dataset, warnings: list[str]) -> tuple[str | None, list[str]]:
    """(View Position as written, reasons); raises for a lateral view."""
    value = ds.get("ViewPosition")
    views = [str(v).strip().upper() for v in (value if _multi(value) else [value])
             if v is not None and str(v).strip()]
    if not views:
        warnings.append("View Position (0018,5101) is absent: check that this is a frontal "
                        "(AP/PA) film.")
        return None, []
    shown = "\\".join(views)
    if len(views) == 1 and views[0] in LATERAL_VIEWS:
        raise DicomNotScoredError("lateral_view", f"View Position (0018,5101) is {shown}: the "
                                "model was trained on frontal (AP/PA) chest films only.")
    if all(v in FRONTAL_VIEWS for v in views):
        return shown, []
    known = FRONTAL_VIEWS + LATERAL_VIEWS + NOT_FRONTAL_VIEWS
    if len(views) == 1 and views[0] not in known:
        warnings.append(f"View Position (0018,5101) is {shown}, not a defined term: check "
                        "that this is a frontal (AP/PA) film.")
        return shown, []
    what = "several views" if len(views) > 1 else "not a frontal (AP/PA) view"
    warnings.append(f"View Position (0018,5101) is {shown}: {what}.")
    return shown, ["not_frontal"]


def _grey_of_colour(ds: pydicom.Dataset, rgb: np.ndarray, photometric: str) -> np.ndarray:
    """(H, W) uint8 of an RGB film whose channels are equal (pydicom has converted YBR to
    RGB); DicomNotScoredError when they are not."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DicomNotScoredError("not_grayscale", "The DICOM colour image is not three "
                                "channels.")
    bits = int(ds.get("BitsStored", 8) or 8)
    scale = 255.0 / (2 ** bits - 1)
    channels = rgb.astype(np.float32) * np.float32(scale)
    spread = float(np.mean(np.abs(channels[..., 0] - channels[..., 1]) +
                           np.abs(channels[..., 1] - channels[..., 2])) / 2)
    if spread > GREY_TOLERANCE:
        raise DicomNotScoredError("not_grayscale", f"Photometric Interpretation (0028,0004) is "
                                f"{photometric} and the image is coloured: only grayscale "
                                "radiographs are scored.")
    return np.round(channels.mean(axis=2)).astype(np.uint8)


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


def _multi(value) -> bool:
    return isinstance(value, pydicom.multival.MultiValue)


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def _check_native_length(ds: pydicom.Dataset, rows: int, columns: int, frames: int) -> None:
    """Uncompressed Pixel Data must hold what Rows, Columns, Samples per Pixel, Bits
    Allocated and Number of Frames declare (PS3.5 8.1.1, padded to an even length): more is
    frames the header does not count (which one is the film?), less is a cut file."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "YBR_FULL_422":
        samples = 2  # two luma samples share one Cb and one Cr (PS3.3 C.7.6.3.1.2)
    bits = int(ds.get("BitsAllocated", 8) or 8)
    expected = -(-rows * columns * samples * frames * bits // 8)
    held = len(ds.PixelData)
    if held < expected:
        raise DamagedImageError("the DICOM pixel data is cut short")
    if held > expected + (expected % 2) + 1:
        raise DicomNotScoredError(
            "frame_count_mismatch", f"The DICOM Pixel Data holds {held} bytes where Rows, "
            f"Columns and Number of Frames (0028,0008 = {frames}) declare {expected}: it "
            "holds more frames than the header counts. Export the film again.")
