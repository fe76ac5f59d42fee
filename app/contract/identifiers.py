"""What the worklist keeps of a DICOM instance's header: its UIDs and the non-identifying study
facts. Never the patient's name, ID or birth date.

Read from a file's header (`read_header`: the DICOM node's instances, `instance_facts`: an
upload), without its pixels and without inflating a deflated data set whole, after its
sequences' depth is counted (nesting.py).

Two keys, never the values they are made from, let the store see that a study or an instance
is not what it was first seen as (`patient_key`: a salted hash of Patient ID and Issuer of
Patient ID; `pixel_hash`: a hash of the encoded pixels, where `read_header_at` finds them).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import zlib
from dataclasses import dataclass
from datetime import date, time

import pydicom
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pydicom.valuerep import DA, TM

from app.contract.dicom import looks_like_dicom
from app.contract.nesting import check_file_nesting, check_nesting

# PS3.5 9.1: a UID is at most 64 characters, digits in components separated by dots.
# (Components with a leading zero, which the standard forbids, are taken: archives hold
# them, and nothing here depends on it.)
UID_LENGTH = 64
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


class InvalidInstanceError(ValueError):
    """The data set lacks an element every instance must have (one of its UIDs)."""

    code = "invalid_instance"

    def __init__(self, missing: str) -> None:
        super().__init__(missing)
        self.missing = missing

    @property
    def message(self) -> str:
        return f"The data set has no {self.missing}."

    @property
    def comment(self) -> str:
        """For a DICOM Error Comment."""
        return f"no {self.missing}"


class InvalidUidError(InvalidInstanceError):
    """One of the instance's UIDs breaks PS3.5 9.1: no store can key on it, and sending it
    again will not change that."""

    def __init__(self, keyword: str, problem: str) -> None:
        ValueError.__init__(self, keyword, problem)
        self.missing = keyword
        self.problem = problem

    @property
    def message(self) -> str:
        return f"The data set's {self.missing} is not a valid UID: {self.problem}."

    @property
    def comment(self) -> str:
        return f"invalid {self.missing}: {self.problem}"


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
        Study Instance UID, InvalidUidError when one of them, or the Series Instance UID,
        is not a valid UID."""
        uids = {}
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"):
            value = _text(ds, keyword)
            if value is None:
                raise InvalidInstanceError(keyword)
            uids[keyword] = _valid_uid(keyword, value)
        series = _text(ds, "SeriesInstanceUID")
        return cls(
            study_instance_uid=uids["StudyInstanceUID"],
            series_instance_uid=series and _valid_uid("SeriesInstanceUID", series),
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
    found = instance_identity(data, None)
    return None if found is None else found[0]


def instance_identity(data: bytes, secret: bytes | None
                      ) -> tuple[InstanceFacts, str | None] | None:
    """`instance_facts`, and the file's patient key under `secret` (None without one), from
    one read of its header: what the node's C-STORE gives a film, for an upload."""
    if not looks_like_dicom(data):
        return None
    try:
        ds = read_header(data, force=True)
        if ds is None:
            return None
        key = None if secret is None else patient_key(ds, secret)  # before anything reads it
        return InstanceFacts.of(ds), key
    except Exception:  # noqa: BLE001 - a header we cannot read: the decoder will say why
        return None


def _valid_uid(keyword: str, value: str) -> str:
    if len(value) > UID_LENGTH:
        raise InvalidUidError(keyword, f"over {UID_LENGTH} characters")
    if not _UID.fullmatch(value):
        raise InvalidUidError(keyword, "not digits and dots")
    return value


def patient_key(ds: Dataset, secret: bytes) -> str:
    """A salted hash (HMAC-SHA256, hex) of the header's Patient ID and Issuer of Patient ID,
    as written (padding stripped): equal for the same patient, and without `secret` (a
    per-install secret that is never stored beside it) not a way back to either. A value
    that does not decode under the data set's character set is hashed as its bytes, so two
    IDs that decode to the same replacement characters stay two patients (call it on a
    header freshly read, before its identity is read as text); with no Patient ID, the
    patient's name is hashed beside the Issuer instead (as `_name_key` writes it), so two
    patients without IDs in one study stay two, and the same patient, written by another
    device (case, empty components), one."""
    parts = [_identity_text(ds, keyword) for keyword in ("PatientID", "IssuerOfPatientID")]
    if not parts[0]:
        parts += ["no Patient ID", _name_key(_identity_text(ds, "PatientName"))]
    return hmac.new(secret, "\x00".join(parts).encode("utf-8", "surrogateescape"),
                    hashlib.sha256).hexdigest()


def _name_key(name: str) -> str:
    """A Person Name as one patient's films write it alike: upper case, each component
    trimmed, empty trailing components and groups dropped ("Doe^John^^^" = "DOE^JOHN")."""
    groups = ["^".join(part.strip() for part in group.split("^")).rstrip("^")
              for group in name.upper().split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _identity_text(ds: Dataset, keyword: str) -> str:
    """The element's text (padding stripped), or, where it does not decode (pydicom puts
    U+FFFD for what it cannot), its stored bytes written as hex; "" when absent. The bytes
    are there while the element is still raw: call before anything reads it as text."""
    try:
        raw = getattr(ds.get_item(keyword), "value", None)  # the stored bytes, if still raw
    except Exception:  # noqa: BLE001 - a malformed element reads as absent, as in _text
        raw = None
    text = _text(ds, keyword) or ""
    if "\ufffd" in text and isinstance(raw, bytes | bytearray):
        return "bytes:" + bytes(raw).strip(b" \x00").hex()
    return text


def read_header(data: bytes, force: bool = False) -> Dataset | None:
    """The header of a DICOM Part 10 file without its pixels, read from its bytes (which are
    left as they are for the decoder). Of a deflated data set, only its elements up to group
    0020 within its first MiB inflated, and None when they do not end there. `force`: also
    a data set without the Part 10 preamble (an upload). Raises NestingTooDeepError before
    reading a data set whose sequences nest too deep, pydicom's errors for bytes whose
    header it cannot read."""
    return read_header_at(data, force)[0]


def read_header_at(data: bytes, force: bool = False) -> tuple[Dataset | None, int]:
    """`read_header`, and where the pixels begin in `data`: the offset of the top-level
    Pixel Data element (or of Float/Double Float Pixel Data), len(data) when there is none
    (and for a deflated data set, whose pixels are not where its bytes are)."""
    start = deflated_from(data)
    if start is not None:
        return _deflated_header(data[start:]), len(data)
    check_file_nesting(data)
    fp = io.BytesIO(data)
    header = pydicom.dcmread(fp, stop_before_pixels=True, force=force)
    return header, fp.tell()  # pydicom stops in front of the pixels' tag


def pixel_hash(data: bytes, pixels_at: int) -> str | None:
    """SHA-256 (hex) of the instance's encoded pixels, from their element to the end of the
    data set (`read_header_at`'s offset); None without pixels. The same film sent again
    has the same hash; other pixels under the same SOP Instance UID do not (nor the same
    pixels re-encoded in another transfer syntax: that, too, is not the instance stored)."""
    if pixels_at >= len(data):
        return None
    return hashlib.sha256(memoryview(data)[pixels_at:]).hexdigest()


def deflated_from(data: bytes) -> int | None:
    """Where the data set starts when the file meta names the deflated transfer syntax;
    None for any other file (or file meta that cannot be read)."""
    try:
        fp = DicomBytesIO(data)
        read_preamble(fp, True)
        meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                            stop_when=lambda tag, vr, length: tag.group != 2)
        deflated = meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
    except Exception:  # noqa: BLE001 - not for us to judge: the whole read will say
        return None
    return fp.tell() if deflated else None


# Of a deflated data set, the bytes inflated to find its facts: they are in groups 0008 to
# 0020, at its start. pydicom inflates the whole data set first (PS3.5 A.5), and a 600 KB
# deflated file can inflate to 600 MiB: in the server, which holds no such memory.
_DEFLATED_HEADER_BYTES = 1 << 20
_LAST_GROUP = 0x0020  # Study, Series and SOP Instance UIDs, view, body part, ...


def _deflated_header(deflated: bytes) -> Dataset | None:
    """The elements up to group 0020 of a deflated data set, inflating at most
    _DEFLATED_HEADER_BYTES; None when they do not end within them (the film is then its
    own study, like any file whose header cannot be read)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    head = inflater.decompress(deflated, _DEFLATED_HEADER_BYTES)
    check_nesting(head)
    fp = DicomBytesIO(head)
    ds = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                      stop_when=lambda tag, vr, length: tag.group > _LAST_GROUP)
    # Whole only if the reader stopped at a later group, or the data set ended in `head`.
    return ds if fp.tell() < len(head) or inflater.eof else None


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
