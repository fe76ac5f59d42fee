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
    ds.StudyDate = "20261126"
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
