"""The film's header as the results are built from it: a sanitised copy of the few elements
they carry, never the header itself.

Real modalities write values the standard does not allow (a birth date `2019-03-04`, sex
`FEMALE`, a study time `10:15:00`, a character set term nobody knows, a value too long, an
element under the wrong VR), and highdicom refuses to build from them. A PACS took the film
with them, so its result must still go back. `sanitise` keeps, of the source:

- its identity exactly as received, or no result at all (ResultsNotMade, reason `identity`):
  the SOP Class, SOP Instance, Study and Series Instance UIDs (valid UIDs of at most 64
  characters) and the Patient ID and its Issuer (valid LO). They are never changed, cut or
  invented: a result under a changed UID lands in another study, or in none;
- the Type 2 elements of the Patient and General Study modules (name, birth date, sex, study
  date and time, referring physician, study ID, accession number), each blanked (present,
  empty: "unknown", as Type 2 allows) when it is not a valid value of its VR;
- a few Type 3 elements (patient age, study description, modality, body part, laterality,
  orientation, pixel spacing, frame of reference, rows and columns), dropped when invalid;
- its Specific Character Set as PS3.5 6.1 defines it: a standard term kept (also the
  multi-valued ISO 2022 forms whose first value is empty, the default repertoire, e.g.
  `\\ISO 2022 IR 87` and `\\ISO 2022 IR 149`); a common misspelling (`ISO_IR_100`,
  `ISO-IR 192`, `UTF-8`, `GB2312`) read as the term it means; no term, or one nobody knows,
  leaves only values in the default repertoire (ASCII) readable (PS3.5 6.1.2.2), so a value
  with any other byte counts as invalid under the rules above (never guessed to be Latin-1
  or UTF-8), and the result carries no character set.

Nothing else of the header goes into a result, or into the delivery queue that keeps it until
the PACS takes it. Every value is checked as text decoded from its bytes, under the VR the
data dictionary gives its tag, so an element written under another VR is judged by what it
should be. What was blanked or dropped is listed (`Repair`: the tag and why, never the value)
for the log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from pydicom import Dataset
from pydicom.charset import convert_encodings, decode_bytes, python_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.valuerep import PersonName

from app.dicom.failures import ResultsFailure, ResultsNotMade

# Kept exactly as received, or no result.
IDENTITY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
            "PatientID", "IssuerOfPatientID")
# Type 2 of the Patient and General Study modules: blanked when invalid. highdicom needs
# them present (empty when the source has none).
TYPE2 = ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")
# Further elements the results use: dropped when invalid.
TYPE3 = ("PatientAge", "StudyDescription", "Modality", "BodyPartExamined", "Laterality",
         "PatientOrientation", "ImagerPixelSpacing", "FrameOfReferenceUID", "Rows", "Columns")
# Identity elements a result may lack (the rest are Type 1 of the source).
_OPTIONAL_IDENTITY = {"PatientID", "IssuerOfPatientID"}
# Present in every result, empty when the source has no value (Type 2).
_EMPTY_WHEN_ABSENT = {*TYPE2, "PatientID"}


@dataclass(frozen=True)
class Repair:
    """One element not carried as received: `tag` as '(0010,0030) PatientBirthDate', what
    was done (blanked, dropped) and why (e.g. 'not a valid DA'). Never the value."""

    tag: str
    action: str
    why: str

    def __str__(self) -> str:
        return f"{self.tag} {self.action} ({self.why})"


@dataclass(frozen=True)
class SanitisedHeader:
    """The elements the results are built from (text values as `str`, with the Specific
    Character Set they are to be written in), and what was repaired on the way."""

    dataset: Dataset
    repairs: tuple[Repair, ...]


def sanitise(source: Dataset) -> SanitisedHeader:
    """The sanitised copy of `source` (a header as pydicom read it, raw or not). Raises
    ResultsNotMade (reason identity) when an identifier cannot be carried as received."""
    charset = _character_set(source)
    clean, repairs = Dataset(), []
    for keyword in (*IDENTITY, *TYPE2, *TYPE3):
        tag = Tag(tag_for_keyword(keyword))
        try:
            value = _read(source, tag, charset)
        except _Invalid as invalid:
            named = _named(tag)
            if keyword in IDENTITY:
                raise ResultsNotMade(ResultsFailure.IDENTITY, named, invalid.why) from None
            if keyword in TYPE2:
                clean.add_new(tag, dictionary_VR(tag), None)
                repairs.append(Repair(named, "blanked", invalid.why))
            else:
                repairs.append(Repair(named, "dropped", invalid.why))
            continue
        if value is None:
            if keyword in IDENTITY and keyword not in _OPTIONAL_IDENTITY:
                raise ResultsNotMade(ResultsFailure.IDENTITY, _named(tag), "missing")
            if keyword in _EMPTY_WHEN_ABSENT:
                clean.add_new(tag, dictionary_VR(tag), None)
            continue
        clean.add_new(tag, dictionary_VR(tag), value)
    if charset.term is not None:
        clean.SpecificCharacterSet = charset.term
    if charset.repair is not None:
        repairs.append(charset.repair)
    return SanitisedHeader(clean, tuple(repairs))


class _Invalid(ValueError):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _named(tag: Tag) -> str:
    return f"({tag.group:04X},{tag.element:04X}) {keyword_for_tag(tag)}"


# --- the character set --------------------------------------------------------------------

@dataclass(frozen=True)
class _Charset:
    term: str | list[str] | None  # what the results declare (None: the default repertoire)
    encodings: list[str]  # Python codecs to read the source's bytes with
    ascii_only: bool  # no term, or an unknown one: only the default repertoire is read
    repair: Repair | None = None


# No term: the default repertoire, ASCII (PS3.5 6.1.2.2); a byte outside it is invalid, not
# guessed to be Latin-1 or UTF-8.
_DEFAULT = _Charset(None, ["iso8859"], ascii_only=True)
_CHARSET_TAG = "(0008,0005) SpecificCharacterSet"
# Spellings seen in the field for the terms they mean (PS3.5 Table 6.2-1's are the keys of
# pydicom's python_encoding).
_SPELLINGS = {"UTF8": "ISO_IR 192", "UTF-8": "ISO_IR 192", "GB2312": "GBK",
              "LATIN1": "ISO_IR 100", "ISO-8859-1": "ISO_IR 100", "ISO8859-1": "ISO_IR 100"}
_ISO_IR = re.compile(r"^ISO[ _-]?IR[ _-]?(\d+)$")
_ISO_2022 = re.compile(r"^ISO[ _-]?2022[ _-]?IR[ _-]?(\d+)$")


def _character_set(source: Dataset) -> _Charset:
    """The source's Specific Character Set as PS3.5 6.1 reads it."""
    try:
        values = _raw_strings(source, Tag(0x00080005), ["iso8859"])
    except _Invalid:
        values = None
    terms = [value.strip() for value in values or []]
    if not terms or terms == [""] or terms == ["ISO_IR 6"]:
        return _DEFAULT
    if len(terms) == 1:
        known = [terms[0] if terms[0] in python_encoding else _respelled(terms[0])]
    else:  # code extensions (PS3.5 6.1.2.5.3): ISO 2022 terms only, a first value that
        # is empty meaning ISO 2022 IR 6, the default repertoire
        known = ["" if index == 0 and term == "" else _iso_2022(term)
                 for index, term in enumerate(terms)]
    standard = [term for term in known if term is not None]
    if len(standard) == len(terms):
        declared: str | list[str] = standard[0] if len(standard) == 1 else standard
        respelled = standard != terms
        return _Charset(declared, convert_encodings(standard), ascii_only=False,
                        repair=Repair(_CHARSET_TAG, "respelled", "a misspelt standard term")
                        if respelled else None)
    return _Charset(None, ["iso8859"], ascii_only=True,
                    repair=Repair(_CHARSET_TAG, "dropped", "a term PS3.5 does not define: "
                                  "only default-repertoire values kept"))


def _iso_2022(term: str) -> str | None:
    spelled = term if term in python_encoding else _respelled(term)
    return spelled if spelled is not None and spelled.startswith("ISO 2022") else None


def _respelled(term: str) -> str | None:
    upper = term.upper()
    if upper in _SPELLINGS:
        return _SPELLINGS[upper]
    for pattern, form in ((_ISO_IR, "ISO_IR {}"), (_ISO_2022, "ISO 2022 IR {}")):
        match = pattern.match(upper)
        if match and form.format(int(match.group(1))) in python_encoding:
            return form.format(int(match.group(1)))
    return None


# --- reading one element as text ----------------------------------------------------------

def _read(source: Dataset, tag: Tag, charset: _Charset) -> str | list[str] | int | None:
    """The element's value as the results will write it, checked under its dictionary VR;
    None when absent or empty. Raises _Invalid."""
    vr = dictionary_VR(tag)
    if vr == "US":
        return _unsigned_short(source, tag)
    values = _raw_strings(source, tag, charset.encodings, person=vr == "PN")
    if values is None:
        return None
    values = [value.rstrip(" \x00") if vr != "PN" else value.rstrip(" ") for value in values]
    if all(value == "" for value in values):
        return None
    for value in values:
        if charset.ascii_only and not value.isascii():
            raise _Invalid("characters outside the default repertoire")
        if "\ufffd" in value:
            raise _Invalid(f"bytes that are not {charset.term or 'the default repertoire'}")
        _CHECKS[vr](value)
    multiplicity = _MULTIPLICITY.get(keyword_for_tag(tag), 1)
    if len(values) != multiplicity:
        raise _Invalid(f"{len(values)} values where {multiplicity} belong")
    if keyword_for_tag(tag) == "PatientSex" and values[0] not in ("M", "F", "O"):
        raise _Invalid("not M, F or O")
    if keyword_for_tag(tag) == "Laterality" and values[0] not in ("R", "L"):
        raise _Invalid("not R or L")
    if keyword_for_tag(tag) == "PatientOrientation" \
            and not all(_ORIENTATION.match(value) for value in values):
        raise _Invalid("not two directions of L, R, A, P, H, F")
    return values[0] if multiplicity == 1 else values


_MULTIPLICITY = {"PatientOrientation": 2, "ImagerPixelSpacing": 2}
_ORIENTATION = re.compile(r"^[LRAPHF]{1,3}$")  # PS3.3 C.7.6.1.1.1, a biped's directions


def _raw_strings(source: Dataset, tag: Tag, encodings: list[str],
                 person: bool = False) -> list[str] | None:
    """The element's values as text: decoded from its bytes when pydicom has not read it
    yet (whatever VR the file gave it), or as pydicom read them. Raises _Invalid."""
    element = source.get_item(tag)
    if element is None:
        return None
    value = element.value
    if value is None:
        return None
    if isinstance(element, RawDataElement) or isinstance(value, bytes | bytearray):
        delimiters = {0x5E, 0x3D} if person else {0x5C}
        try:
            text = decode_bytes(bytes(value), encodings, delimiters)
        except (LookupError, ValueError) as exc:
            raise _Invalid(type(exc).__name__) from None
        return text.split("\\")
    if isinstance(value, str | PersonName):
        return [str(value)]
    if isinstance(value, list | tuple) or hasattr(value, "__iter__"):
        items = list(value)
        if all(isinstance(item, str | PersonName) for item in items):
            return [str(item) for item in items]
        if all(isinstance(item, int | float) for item in items):
            return [_number_text(item) for item in items]
        raise _Invalid("not text")
    if isinstance(value, int | float):
        return [_number_text(value)]
    raise _Invalid("not text")


def _number_text(value: int | float) -> str:
    # A DS that pydicom already read (its original text when it kept it)
    original = getattr(value, "original_string", None)
    return str(original) if original is not None else repr(value)


def _unsigned_short(source: Dataset, tag: Tag) -> int | None:
    element = source.get_item(tag)
    if element is None or element.value in (None, b""):
        return None
    value = element.value
    if isinstance(element, RawDataElement) or isinstance(value, bytes | bytearray):
        raw = bytes(value)
        if len(raw) != 2:
            raise _Invalid("not one US value")
        little = getattr(element, "is_little_endian", True)
        number = int.from_bytes(raw, "little" if little is not False else "big")
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _Invalid("not one US value")
    if not 1 <= number <= 0xFFFF:
        raise _Invalid("out of range")
    return number


# --- what each VR allows (PS3.5 Table 6.2-1), as the text is written back -----------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 and C1 controls, DEL
_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$")
_AS = re.compile(r"^\d{3}[DWMY]$")
_CS = re.compile(r"^[A-Z0-9 _]*$")
_UI = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_DS = re.compile(r"^ *[+\-]?(\d+|\d+\.\d*|\.\d+)([eE][+\-]?\d+)? *$")


def _text(limit: int) -> Callable[[str], None]:
    def check(value: str) -> None:
        if len(value) > limit:
            raise _Invalid(f"longer than {limit} characters")
        if _CONTROL.search(value):
            raise _Invalid("control characters")
        if "\\" in value:
            raise _Invalid("a backslash")
    return check


def _date(value: str) -> None:
    if not _DA.match(value):
        raise _Invalid("not a valid DA")
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise _Invalid("not a valid DA") from None


def _pattern(vr: str, pattern: re.Pattern[str], limit: int) -> Callable[[str], None]:
    def check(value: str) -> None:
        if len(value) > limit or not pattern.match(value):
            raise _Invalid(f"not a valid {vr}")
    return check


def _uid(value: str) -> None:
    # PS3.5 9.1, and a root of at least two components that are not all zero (what
    # dciodvfy checks): a UID of "0" names nothing.
    components = value.split(".")
    if len(value) > 64 or not _UI.match(value) or len(components) < 2 \
            or all(component == "0" for component in components):
        raise _Invalid("not a valid UI")


def _decimal(value: str) -> None:
    if len(value) > 16 or not _DS.match(value):
        raise _Invalid("not a valid DS")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise _Invalid("not a positive spacing")


def _person(value: str) -> None:
    groups = value.split("=")
    if len(groups) > 3:
        raise _Invalid("more than 3 PN component groups")
    for group in groups:
        if len(group) > 64:
            raise _Invalid("a PN component group longer than 64 characters")
        if len(group.split("^")) > 5:
            raise _Invalid("more than 5 PN components")
        _text(64)(group)


_CHECKS: dict[str, Callable[[str], None]] = {
    "UI": _uid,
    "DA": _date,
    "TM": _pattern("TM", _TM, 16),
    "AS": _pattern("AS", _AS, 4),
    "CS": _pattern("CS", _CS, 16),
    "DS": _decimal,
    "PN": _person,
    "LO": _text(64),
    "SH": _text(16),
}
