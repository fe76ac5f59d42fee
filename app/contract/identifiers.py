"""What the worklist keeps of a DICOM instance's header: its UIDs and the non-identifying study
facts. Never the patient's name, ID or birth date.

Read from a received data set (the DICOM node) or from an uploaded file's header
(`instance_facts`), without its pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, time

import pydicom
from pydicom import Dataset
from pydicom.valuerep import DA, TM

from app.contract.dicom import looks_like_dicom


class InvalidInstanceError(ValueError):
    """The data set lacks an element every instance must have (one of its UIDs)."""

    code = "invalid_instance"

    def __init__(self, missing: str) -> None:
        super().__init__(missing)
        self.missing = missing

    @property
    def message(self) -> str:
        return f"The data set has no {self.missing}."


@dataclass(frozen=True)
class InstanceFacts:
    """What the worklist keeps of an instance's header (named as its FilmRecord fields):
    never the patient's name, ID or birth date."""

    study_instance_uid: str
    series_instance_uid: str | None
    sop_instance_uid: str
    sop_class_uid: str
    accession_number: str | None = None
    patient_age: str | None = None  # DICOM AS, e.g. "004Y"
    patient_sex: str | None = None
    modality: str | None = None
    view_position: str | None = None
    body_part: str | None = None
    study_date: date | None = None
    study_time: time | None = None

    @classmethod
    def of(cls, ds: Dataset) -> InstanceFacts:
        """The facts of `ds`; InvalidInstanceError without its SOP Class, SOP Instance or
        Study Instance UID."""
        uids = {}
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"):
            value = _text(ds, keyword)
            if value is None:
                raise InvalidInstanceError(keyword)
            uids[keyword] = value
        return cls(
            study_instance_uid=uids["StudyInstanceUID"],
            series_instance_uid=_text(ds, "SeriesInstanceUID"),
            sop_instance_uid=uids["SOPInstanceUID"], sop_class_uid=uids["SOPClassUID"],
            accession_number=_text(ds, "AccessionNumber"), patient_age=_text(ds, "PatientAge"),
            patient_sex=_text(ds, "PatientSex"), modality=_text(ds, "Modality"),
            view_position=_text(ds, "ViewPosition"), body_part=_text(ds, "BodyPartExamined"),
            study_date=_parsed(DA, _text(ds, "StudyDate")),
            study_time=_parsed(TM, _text(ds, "StudyTime")))


def instance_facts(data: bytes) -> InstanceFacts | None:
    """The facts of an uploaded DICOM file, read from its header only (the pixels are the
    decoder's); None for a file that is not DICOM or lacks its UIDs (an upload is then its
    own study under generated UIDs)."""
    if not looks_like_dicom(data):
        return None
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        return InstanceFacts.of(ds)
    except Exception:  # noqa: BLE001 - a header we cannot read: the decoder will say why
        return None


def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed element reads as absent
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def _parsed(kind: type[DA] | type[TM], value: str | None):
    """A DA or TM value as a plain date or time; None when absent or malformed."""
    if value is None:
        return None
    try:
        parsed = kind(value)
    except ValueError:
        return None
    if isinstance(parsed, date):
        return date(parsed.year, parsed.month, parsed.day)
    return None if parsed is None else time(parsed.hour, parsed.minute, parsed.second,
                                            parsed.microsecond)
