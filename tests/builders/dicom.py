"""DICOM files built with pydicom in the tests, from pixels the tests already hold."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
PATIENT_NAME = "Doe^Jane^Secret"
PATIENT_ID = "PID-7731-SECRET"


def dicom_bytes(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits: int = 8,
                slope: float | None = None, intercept: float | None = None,
                window: tuple[float, float] | None = None, modality: str = "DX",
                view: str | None = "PA", frames: int = 1, with_pixels: bool = True,
                syntax: str = "explicit", preamble: bool = True) -> bytes:
    """A single- or multi-frame DICOM of (H, W) stored values, with a patient's identity."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DX_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "20200229"
    ds.AccessionNumber = "ACC-99-SECRET"
    ds.StudyDate = "20241126"  # the patient 4 years old: within the card's intended ages
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    if view is not None:
        ds.ViewPosition = view
    if not with_pixels:
        return _write(ds, preamble)
    height, width = pixels.shape
    ds.Rows, ds.Columns = height, width
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    dtype = np.uint8 if ds.BitsAllocated == 8 else np.uint16
    stored = np.repeat(pixels[None].astype(dtype), frames, axis=0) if frames > 1 \
        else pixels.astype(dtype)
    if frames > 1:
        ds.NumberOfFrames = frames
    if syntax == "explicit":
        ds.PixelData = stored.tobytes()
    elif syntax == "jpeg-baseline":
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, "JPEG", quality=95)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = stored.tobytes()
        ds.compress({"jpeg2000": JPEG2000Lossless, "rle": RLELossless,
                     "jpeg-ls": JPEGLSLossless}[syntax], stored)
    return _write(ds, preamble)


def _write(ds: Dataset, preamble: bool) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=preamble, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def with_voi_lut(data: bytes, entries: np.ndarray) -> bytes:
    """The DICOM with a VOI LUT Sequence (first mapped value 0, 8-bit output) added."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    item = Dataset()
    item.add_new(0x00283002, "US", [len(entries), 0, 8])  # LUT Descriptor
    item.add_new(0x00283006, "US", [int(v) for v in entries])  # LUT Data
    ds.VOILUTSequence = [item]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def with_tags(data: bytes, **tags: str) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage


def study_film(pixels: np.ndarray, *, sop_class: str = CR_SOP_CLASS, modality: str = "CR",
               study_uid: str | None = None, **options) -> Dataset:
    """A film as a PACS sends it: dicom_bytes' film (`options` go to it) with its study and
    series, the patient's sex and age, as a Dataset with its file meta."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels, modality=modality, **options)))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.StudyTime = "101500"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientSex = "F"
    ds.PatientAge = "004Y"
    ds.ReferringPhysicianName = ""
    return ds


def file_bytes(ds: Dataset) -> bytes:
    """A Dataset with its file meta as a Part 10 file, in memory."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def with_raw_elements(film: Dataset, raw: dict[int, tuple[str, bytes]]) -> bytes:
    """`film` as a Part 10 file (explicit VR little endian) in which each tag of `raw` holds
    exactly the bytes given, under the VR given, as a modality that writes them would:
    pydicom would decode, check or re-encode a value set through it. An odd length is
    padded with a space (a NUL for UI), as the standard pads."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element, write_file_meta_info
    from pydicom.tag import Tag

    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write(b"\x00" * 128 + b"DICM")
    meta = FileMetaDataset(film.file_meta)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    write_file_meta_info(out, meta, enforce_standard=True)
    for tag in sorted({*film.keys(), *map(Tag, raw)}):
        if tag in raw:
            vr, value = raw[tag]
            if len(value) % 2:
                value += b"\x00" if vr == "UI" else b" "
            out.write_tag(tag)
            out.write(vr.encode())
            if vr in ("OB", "OW", "OF", "SQ", "UN", "UT", "UC", "UR", "OD", "OL", "OV"):
                out.write_US(0)
                out.write_UL(len(value))
            else:
                out.write_US(len(value))
            out.write(value)
        else:
            write_data_element(out, film[tag], ["iso8859"])
    return out.getvalue()


def part10(ds: Dataset) -> bytes:
    """`ds` as a Part 10 file whose file meta names its own transfer syntax, the data set
    written explicit VR little endian (as every encapsulated syntax is), also for a syntax
    pydicom's writer does not know (JPEG XL)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    body = Dataset()
    body.update(ds)
    write_dataset(fp, body)
    return fp.getvalue()


JPEG_PROGRESSIVE = "1.2.840.10008.1.2.4.55"  # retired: JPEG Full Progression (10 and 12)
JPEG_XL = "1.2.840.10008.1.2.4.112"
HTJ2K = "1.2.840.10008.1.2.4.203"
MAX_NESTING = 32  # app/contract/nesting.py's limit, written out: the tests' own number


def unsupported_films(pixels: np.ndarray) -> dict[str, bytes]:
    """Intact CR films (study_film) whose pixels are in an encoding the decoder does not
    read, by name: each must be answered `unsupported_encoding`, never as damaged."""
    films = {}

    def encapsulated(syntax: str, frame: bytes) -> bytes:
        film = study_film(pixels)
        film.file_meta.TransferSyntaxUID = syntax
        film.PixelData = encapsulate([frame])
        film["PixelData"].VR = "OB"
        film["PixelData"].is_undefined_length = True
        return part10(film)

    progressive = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(progressive, "JPEG", progressive=True)
    films["jpeg-progressive"] = encapsulated(JPEG_PROGRESSIVE, progressive.getvalue())
    # A JPEG XL codestream's signature (FF0A) and a size header; the node never decodes it.
    films["jpeg-xl"] = encapsulated(JPEG_XL, b"\xff\x0a" + bytes(62))
    films["htj2k"] = encapsulated(HTJ2K, b"\xff\x4f\xff\x51" + bytes(60))
    floats = study_film(pixels)
    del floats.PixelData
    floats.BitsAllocated, floats.BitsStored, floats.HighBit = 32, 32, 31
    floats.FloatPixelData = pixels.astype(np.float32).tobytes()
    films["float-pixels"] = file_bytes(floats)
    wide = study_film(pixels, syntax="jpeg-baseline")  # 8-bit JPEG samples ...
    wide.BitsAllocated, wide.BitsStored, wide.HighBit = 16, 12, 11  # ... under 16 bits
    films["jpeg-under-16-bits"] = file_bytes(wide)
    icon_only = study_film(pixels)
    icon = Dataset()
    small = np.ascontiguousarray(pixels[::8, ::8]).astype(np.uint8)
    icon.Rows, icon.Columns = small.shape
    icon.SamplesPerPixel, icon.PhotometricInterpretation = 1, "MONOCHROME2"
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    icon.PixelData = small.tobytes()
    icon_only.IconImageSequence = [icon]
    del icon_only.PixelData
    films["icon-only"] = file_bytes(icon_only)
    films["deep-nesting"] = nested(study_film(pixels), MAX_NESTING + 1)
    return films


def nested(film: Dataset, depth: int, *, delimited: bool = True) -> bytes:
    """`film`'s Part 10 bytes with a private sequence nested `depth` levels deep, written
    by hand (pydicom's own reader and writer recurse): each level a creator (0009,0010),
    a sequence (0009,1001) and one item, of undefined length (`delimited`) or defined."""
    import struct

    def element(group: int, number: int, vr: bytes, value: bytes) -> bytes:
        tag = struct.pack("<HH", group, number)
        if vr == b"SQ":
            length = 0xFFFFFFFF if delimited else len(value)
            return tag + vr + b"\0\0" + struct.pack("<I", length) + value
        return tag + vr + struct.pack("<H", len(value)) + value

    def item(value: bytes) -> bytes:
        length = 0xFFFFFFFF if delimited else len(value)
        end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) if delimited else b""
        return struct.pack("<HHI", 0xFFFE, 0xE000, length) + value + end

    inner = b""
    for _ in range(depth):
        sequence_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0) if delimited else b""
        inner = (element(0x0009, 0x0010, b"LO", b"PRIV")
                 + element(0x0009, 0x1001, b"SQ", item(inner) + sequence_end))
    data = file_bytes(film)
    at = data.index(struct.pack("<HH", 0x0010, 0x0010))  # Patient's Name: group 0010
    return data[:at] + inner + data[at:]


COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy Presentation State Storage


def study_object(film: Dataset, sop_class: str, modality: str) -> Dataset:
    """Another object of `film`'s study, as a PACS holds beside it (an SR, a presentation
    state: `sop_class`, `modality`): its patient and study, a series of its own, no pixels."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                    "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, keyword, film.get(keyword, ""))
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 50, 1
    reference = Dataset()
    reference.ReferencedSOPClassUID = film.SOPClassUID
    reference.ReferencedSOPInstanceUID = film.SOPInstanceUID
    if modality == "SR":
        ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", \
            "UNVERIFIED"
        concept = Dataset()
        concept.CodeValue, concept.CodingSchemeDesignator = "18748-4", "LN"
        concept.CodeMeaning = "Diagnostic Imaging Report"
        ds.ConceptNameCodeSequence = [concept]
        ds.ContinuityOfContent = "SEPARATE"
    else:
        series = Dataset()
        series.SeriesInstanceUID = film.SeriesInstanceUID
        series.ReferencedImageSequence = [reference]
        ds.ReferencedSeriesSequence = [series]
        ds.ContentLabel, ds.PresentationCreationDate = "ROUTED", "20261126"
    return ds
