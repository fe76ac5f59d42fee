"""Results from films whose headers real modalities wrote (app/dicom/header.py): every film
either gets an SR and a secondary capture that dciodvfy and dsrdump find nothing of ours to
fix in, carrying its identity exactly as received, or a reason on the worklist that is
counted: never silence. A table of the values seen in the field, and a hypothesis search
over invalid values of every VR the results carry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pydicom
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom.charset import python_encoding
from pydicom.data import get_charset_files

from app.contract.identifiers import InvalidInstanceError
from app.dicom.failures import ResultsFailure, ResultsNotMade
from app.dicom.header import sanitise
from app.dicom.ingest import Received, ScoringIngest
from app.dicom.results import ResultBuilder
from app.services.observer import Observer
from tests.builders.dicom import PATIENT_ID, file_bytes, study_film, with_raw_elements
from tests.builders.images import xray_like
from tests.dicom.nodes import Recorder, built, stand_in_scorer
from tests.dicom.validate import problems

T = {keyword: tag for keyword, tag in (
    ("SpecificCharacterSet", 0x00080005), ("AccessionNumber", 0x00080050),
    ("ReferringPhysicianName", 0x00080090), ("StudyDescription", 0x00081030),
    ("PatientName", 0x00100010), ("PatientID", 0x00100020),
    ("IssuerOfPatientID", 0x00100021), ("PatientBirthDate", 0x00100030),
    ("PatientSex", 0x00100040), ("PatientAge", 0x00101010),
    ("BodyPartExamined", 0x00180015), ("ImagerPixelSpacing", 0x00181164),
    ("StudyDate", 0x00080020), ("StudyTime", 0x00080030), ("StudyID", 0x00200010),
    ("SeriesInstanceUID", 0x0020000E), ("FrameOfReferenceUID", 0x00200052),
    ("PatientOrientation", 0x00200020), ("Laterality", 0x00200060))}


class _Counted(Observer):
    def __init__(self) -> None:
        self.failures: list[str] = []

    def results_failed(self, reason: str) -> None:
        self.failures.append(reason)


_SCORER = stand_in_scorer(0.9)


def _through_the_node(data: bytes):
    """`data` through the node's ingest (recipe) and delivery build: (ingest result,
    results built, failures counted)."""
    counted, recorder = _Counted(), Recorder()
    ingest = ScoringIngest(lambda: _SCORER, recorder, ResultBuilder(), metrics=counted)
    result = ingest(Received.read(data), "dicom:PACS")
    assert recorder.committed == [result]
    return result, built(result), counted.failures


def _charset_sample(name: str) -> dict[int, tuple[str, bytes]]:
    """pydicom's test file `name`: its Specific Character Set and Patient Name, as the
    bytes the modality wrote."""
    [path] = get_charset_files(name)
    ds = pydicom.dcmread(path)
    terms = ds.SpecificCharacterSet  # read already: pydicom needs it to read the rest
    terms = "\\".join(terms) if isinstance(terms, list | pydicom.multival.MultiValue) \
        else terms
    name_element = ds.get_item(0x00100010)  # still as the modality wrote it
    return {0x00080005: ("CS", terms.encode()),
            0x00100010: ("PN", bytes(name_element.value))}


def _raw(**values: str | bytes) -> dict[int, tuple[str, bytes]]:
    """Raw elements by keyword, under their dictionary VR."""
    return {T[keyword]: (pydicom.datadict.dictionary_VR(T[keyword]),
                         value if isinstance(value, bytes) else value.encode("latin-1"))
            for keyword, value in values.items()}


# (case, raw elements, (keyword, the value the results must carry: None when blanked, or
# absent for a Type 3 element))
_CASES = [
    ("birth date with dashes", _raw(PatientBirthDate="2019-03-04"), ("PatientBirthDate", None)),
    ("birth date that is no day", _raw(PatientBirthDate="20190230"),
     ("PatientBirthDate", None)),
    ("sex FEMALE", _raw(PatientSex="FEMALE"), ("PatientSex", None)),
    ("sex f", _raw(PatientSex="f"), ("PatientSex", None)),
    ("study time with colons", _raw(StudyTime="10:15:00"), ("StudyTime", None)),
    ("study date as a range", _raw(StudyDate="20190101-20190201"), ("StudyDate", None)),
    ("an unknown character set, ASCII values",
     _raw(SpecificCharacterSet="ISO_IR 999", PatientName="Doe^John"),
     ("PatientName", "Doe^John")),
    ("an unknown character set, other bytes",
     _raw(SpecificCharacterSet="ISO_IR 999", PatientName="Müller^Jürgen"),
     ("PatientName", None)),
    ("a misspelt Latin-1", _raw(SpecificCharacterSet="ISO_IR_100", PatientName="Müller^Jürgen"),
     ("PatientName", "Müller^Jürgen")),
    ("Japanese, ISO 2022 IR 87", _charset_sample("chrH31.dcm"),
     ("PatientName", "Yamada^Tarou=山田^太郎=やまだ^たろう")),
    ("Korean, ISO 2022 IR 149", _charset_sample("chrI2.dcm"),
     ("PatientName", "Hong^Gildong=洪^吉洞=홍^길동")),
    ("Chinese, GB18030", _charset_sample("chrX2.dcm"),
     ("PatientName", "Wang^XiaoDong=王^小东")),
    ("UTF-8 that is not", _raw(SpecificCharacterSet="ISO_IR 192", PatientName=b"M\xc3ller^J"),
     ("PatientName", None)),
    ("a name with a bell", _raw(PatientName="Doe\x07^John"), ("PatientName", None)),
    ("a name of six components", _raw(ReferringPhysicianName="A^B^C^D^E^F"),
     ("ReferringPhysicianName", None)),
    ("an accession number of 40", _raw(AccessionNumber="A" * 40), ("AccessionNumber", None)),
    ("a study ID of two values", _raw(StudyID="1\\2"), ("StudyID", None)),
    ("a description of 80", _raw(StudyDescription="x" * 80), ("StudyDescription", None)),
    ("an age in words", _raw(PatientAge="4 years"), ("PatientAge", None)),
    ("laterality B", _raw(Laterality="B"), ("Laterality", None)),
    ("a spacing that is no number", _raw(ImagerPixelSpacing="x\\0.2"),
     ("ImagerPixelSpacing", None)),
    ("a birth date under the wrong VR", {T["PatientBirthDate"]: ("LO", b"20190304")},
     ("PatientBirthDate", "20190304")),
    ("a name under UN", {T["PatientName"]: ("UN", b"Doe^John")}, ("PatientName", "Doe^John")),
    ("a birth date in words under LO", {T["PatientBirthDate"]: ("LO", b"March 4 2019")},
     ("PatientBirthDate", None)),
]


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in _CASES],
                         ids=[case[0] for case in _CASES])
def test_a_header_as_modalities_write_it_gets_results_that_validate(raw, expected):
    film = study_film(xray_like(96, 80))
    data = with_raw_elements(film, raw)
    result, results, failures = _through_the_node(data)
    assert result.results_error is None and failures == []
    assert len(results) == 2
    keyword, value = expected
    for ds in results:
        assert problems(ds, data) == []
        assert ds.StudyInstanceUID == film.StudyInstanceUID
        assert ds.PatientID == PATIENT_ID  # identity as received
    sr = results[0]
    if value is None:
        assert not sr.get(keyword), keyword  # blanked (Type 2) or left out (Type 3)
    else:
        assert str(sr[keyword].value) == value


@pytest.mark.parametrize(("raw", "tag"), [
    (_raw(PatientID="P" * 70), "(0010,0020) PatientID"),
    (_raw(IssuerOfPatientID="HOSP\x01"), "(0010,0021) IssuerOfPatientID"),
    (_raw(SeriesInstanceUID="1.2.840.0099.7"), "(0020,000E) SeriesInstanceUID"),
    (_raw(SpecificCharacterSet="WEIRD", PatientID="PID-Ü"), "(0010,0020) PatientID"),
], ids=["patient ID of 70", "issuer with a control character", "series UID, leading zero",
        "patient ID in an unknown character set"])
def test_an_identity_that_cannot_be_carried_as_received_is_a_counted_reason(raw, tag):
    """A result under a changed UID or patient ID would land in another study or
    patient, or none: not made, listed with the reason, counted."""
    film = study_film(xray_like(96, 80))
    data = with_raw_elements(film, raw)
    with pytest.raises(ResultsNotMade) as raised:
        sanitise(Received.read(data).header)
    assert raised.value.reason is ResultsFailure.IDENTITY and raised.value.tag == tag
    result, results, failures = _through_the_node(data)
    assert result.prediction is not None  # still scored and listed
    assert results == () and result.results_error == "identity" and failures == ["identity"]


# --- hypothesis: invalid values of every VR the results carry ------------------------------

_TEXT_VRS = ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
             "UI", "UN", "UC")


def _values_for(vr: str) -> st.SearchStrategy[bytes]:
    """Bytes a careless modality writes for an element of `vr`: valid ones, near misses
    (ISO dates and times, lower case, spaces), too long, and any bytes at all."""
    valid = {"DA": ["20190304", "19000101"], "TM": ["101500", "1015", "101500.123"],
             "AS": ["004Y", "010M"], "CS": ["M", "F", "CHEST", "L", "A"],
             "PN": ["Doe^John", "Doe^John^^Dr^III", "=山田^太郎"], "UI": ["1.2.3.4"],
             "DS": ["0.2", "1e-1"], "LO": ["PID-1", "Some text"], "SH": ["ACC1", "1"]}
    near = ["2019-03-04", "10:15:00", "04.03.2019", "FEMALE", "f", "m", " M", "Doe John",
            "4 years", "chest", "1.2.03.4", "1.2.3.", "", " ", "\\", "A\\B\\C", "0", "-1",
            "NaN", "1e400", "99999999"]
    texts = st.sampled_from(valid.get(vr, []) + near).map(lambda t: t.encode("utf-8"))
    return st.one_of(texts, st.text(max_size=80).map(lambda t: t.encode("utf-8")),
                     st.binary(max_size=80), st.just(b"x" * 70),
                     st.sampled_from([b"\x1b$B;3ED\x1b(B", b"M\xfcller", b"\xc3\x28",
                                      b"Doe\x00^J", b"\\ISO 2022 IR 87", b"ISO_IR 192",
                                      b"ISO_IR_100", b"GB18030", b"\\ISO 2022 IR 149"]))


@contextmanager
def _app_log() -> Iterator[list[logging.LogRecord]]:
    """The app's log records while the block runs (hypothesis runs many examples in one
    test, so pytest's caplog fixture does not fit)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("app")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@st.composite
def _headers(draw) -> dict[int, tuple[str, bytes]]:
    """A few of the elements the results carry, each under its own VR or another one,
    with a value from `_values_for`."""
    keywords = draw(st.lists(st.sampled_from(sorted(T)), min_size=1, max_size=6,
                             unique=True))
    raw = {}
    for keyword in keywords:
        tag = T[keyword]
        vr = draw(st.one_of(st.just(pydicom.datadict.dictionary_VR(tag)),
                            st.sampled_from(_TEXT_VRS)))
        raw[tag] = (vr, draw(_values_for(pydicom.datadict.dictionary_VR(tag))))
    return raw


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(raw=_headers())
def test_every_film_gets_valid_results_or_a_counted_reason_never_silence(raw):
    """The sender is told (a final status at the door), or the film gets results that
    validate under its identity as received, or it is listed with a counted reason."""
    film = study_film(xray_like(64, 64))
    data = with_raw_elements(film, raw)
    try:
        header = Received.read(data).header
    except Exception:  # noqa: BLE001 - a header the door refuses: answered, never scored
        event("refused at the door: unreadable")
        return
    with _app_log() as records:
        try:
            result, results, failures = _through_the_node(data)
        except InvalidInstanceError:  # a UID the door refuses as final: the sender is told
            event("refused at the door: invalid UID")
            return
    if result.prediction is None:  # not scored: listed with its error, nothing to send
        assert result.error is not None and results == ()
        event(f"not scored: {result.error.code}")
        return
    if result.results_error is not None:
        assert results == () and failures == [result.results_error]
        assert result.results_error in {failure.value for failure in ResultsFailure}
        event(f"no results, counted: {result.results_error}")
        return
    assert failures == [] and len(results) == 2
    event("results made and valid")
    try:
        sanitised = sanitise(header)
    except ResultsNotMade:  # pragma: no cover - then results_error above is set
        raise AssertionError("results made from an identity that cannot be carried") \
            from None
    clean = sanitised.dataset
    blanked = [repair.tag.split(") ")[1] for repair in sanitised.repairs
               if repair.action == "blanked"]
    for ds in results:
        assert problems(ds, data, blanked) == [], raw
        for keyword in ("StudyInstanceUID", "PatientID"):
            assert str(ds.get(keyword) or "") == str(clean.get(keyword) or ""), keyword
    [evidence] = results[0].CurrentRequestedProcedureEvidenceSequence
    series = raw[T["SeriesInstanceUID"]][1].rstrip(b"\x00 ").decode("ascii") \
        if T["SeriesInstanceUID"] in raw else film.SeriesInstanceUID
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == series  # as received
    logged = "\n".join(record.getMessage() for record in records)
    for term in python_encoding:  # a character set's term is the log's to name
        logged = logged.replace(term, "") if term else logged
    for tag, (_, value) in raw.items():  # nothing of the header in the app's log
        if tag == T["SpecificCharacterSet"]:
            continue  # a character set's term is the log's to name
        text = value.decode("latin-1").strip(" \x00")
        if len(text) >= 6 and not text.replace(".", "").isdigit():
            assert text not in logged


def test_the_node_never_holds_more_of_the_header_than_the_results_carry():
    """The recipe (what the delivery queue keeps) holds the identity and the Type 2 study
    and patient elements, never the rest of the header (operators, institution, ...)."""
    film = study_film(xray_like(64, 64))
    film.InstitutionName = "St Elsewhere"
    film.OperatorsName = "Tech^Ann"
    film.OtherPatientIDs = "OTHER-ID"
    film.PatientAddress = "1 Secret Lane"
    result, results, _ = _through_the_node(with_raw_elements(film, {}))
    for needle in (b"St Elsewhere", b"Tech^Ann", b"OTHER-ID", b"Secret Lane"):
        assert needle not in result.results[0]
        assert all(needle not in file_bytes(ds) for ds in results)
    assert PATIENT_ID.encode() in result.results[0]
