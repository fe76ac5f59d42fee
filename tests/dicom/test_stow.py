"""STOW-RS without the web layer: the multipart/related split, and the Store Instances
Response for one and for several instances."""

from __future__ import annotations

import pytest
from pydicom import Dataset

from app.dicom.stow import (
    RelatedParts,
    StowSession,
    UnsupportedMediaTypeError,
    boundary_of,
    multipart_body,
)
from app.errors import (
    MalformedUploadError,
    ModelNotReadyError,
    TooManyFilesError,
    UploadTooLargeError,
)
from tests.dicom.nodes import scoring_ingest
from tests.dicom_helpers import CT_SOP_CLASS, file_bytes, study_film
from tests.helpers import xray_like

CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary=b0und'


def _body(*parts: bytes, boundary: str = "b0und", preamble: bytes = b"",
          epilogue: bytes = b"") -> bytes:
    pieces = [preamble]
    for data in parts:
        pieces += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
                   data, b"\r\n"]
    pieces.append(f"--{boundary}--\r\n".encode() + epilogue)
    return b"".join(pieces)


def _split(body: bytes, chunk: int, **limits) -> list[bytes]:
    reader = RelatedParts("b0und", limits.get("max_part_bytes", 1 << 20),
                          limits.get("max_parts", 10))
    parts = []
    for start in range(0, len(body), chunk):
        parts += [p.data for p in reader.feed(body[start:start + chunk])]
    reader.close()
    return parts


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_split_gives_each_part_whatever_the_chunks(chunk):
    parts = [b"first", b"", b"\r\n--b0un not a delimiter \r\n", bytes(range(256)) * 4]
    body = _body(*parts, preamble=b"ignored preamble\r\n", epilogue=b"ignored epilogue")
    assert _split(body, chunk) == parts


def test_split_of_a_body_without_its_closing_delimiter_is_malformed():
    with pytest.raises(MalformedUploadError):
        _split(_body(b"x")[:-12], 64)


def test_split_of_a_part_over_the_limit_stops_at_the_limit():
    with pytest.raises(UploadTooLargeError):
        _split(_body(b"x" * 5000), 100, max_part_bytes=1000)


def test_split_of_too_many_parts_is_refused():
    with pytest.raises(TooManyFilesError):
        _split(_body(*[b"x"] * 4), 64, max_parts=3)


@pytest.mark.parametrize(("content_type", "error"), [
    ("multipart/related; type=\"application/dicom+json\"; boundary=x",
     UnsupportedMediaTypeError),
    ("multipart/form-data; boundary=x", UnsupportedMediaTypeError),
    ("application/dicom", UnsupportedMediaTypeError),
    ('multipart/related; type="application/dicom"', MalformedUploadError),
    ('multipart/related; type="application/dicom"; boundary=' + "x" * 71,
     MalformedUploadError)])
def test_boundary_of_a_request_that_is_not_stow_is_refused(content_type, error):
    with pytest.raises(error):
        boundary_of(content_type)


def test_boundary_of_a_stow_request():
    assert boundary_of(CONTENT_TYPE) == "b0und"
    assert boundary_of("multipart/related; boundary=abc") == "abc"  # type defaults


def _session(films, probability=0.9, **options):
    ingest, recorder = scoring_ingest(probability)
    session = StowSession(ingest, **options)
    body, content_type = multipart_body([file_bytes(f) if isinstance(f, Dataset) else f
                                         for f in films])
    reader = RelatedParts(boundary_of(content_type), 1 << 24, 100)
    for part in reader.feed(body):
        session.add(part)
    reader.close()
    status, answer = session.response()
    return status, Dataset.from_json(answer), recorder


def test_stow_of_one_instance_is_stored():
    film = study_film(xray_like(96, 80))
    status, answer, recorder = _session([film])
    assert status == 200
    [item] = answer.ReferencedSOPSequence
    assert item.ReferencedSOPInstanceUID == film.SOPInstanceUID
    assert item.ReferencedSOPClassUID == film.SOPClassUID
    assert "WarningReason" not in item and "FailedSOPSequence" not in answer
    assert [r.source for r in recorder.committed] == ["dicomweb"]


def test_stow_of_several_instances_answers_each():
    study = "1.2.826.0.1.3680043.8.498.1"
    good = [study_film(xray_like(96, 80, seed=i), study_uid=study) for i in range(3)]
    damaged = study_film(xray_like(96, 80), study_uid=study)
    damaged.PixelData = damaged.PixelData[:50]
    lateral = study_film(xray_like(96, 80), study_uid=study, view="LL")
    ct = study_film(xray_like(64, 64), sop_class=CT_SOP_CLASS, modality="CT", study_uid=study)
    other_study = study_film(xray_like(64, 64))
    status, answer, recorder = _session(
        [*good, damaged, lateral, ct, other_study, b"not dicom at all"], study_uid=study)
    assert status == 202
    referenced = {i.ReferencedSOPInstanceUID: i for i in answer.ReferencedSOPSequence}
    assert set(referenced) == {f.SOPInstanceUID for f in (*good, lateral)}
    assert referenced[lateral.SOPInstanceUID].WarningReason == 0xB000
    failed = {i.ReferencedSOPInstanceUID: i.FailureReason for i in answer.FailedSOPSequence}
    assert failed == {damaged.SOPInstanceUID: 0xC000, ct.SOPInstanceUID: 0x0122,
                      other_study.SOPInstanceUID: 0xA900}
    [other] = answer.OtherFailuresSequence
    assert other.FailureReason == 0xC000
    # The damaged and the lateral film are listed with their reasons; the CT never arrives.
    assert len(recorder.committed) == 5


def test_stow_while_the_model_loads_asks_to_send_again():
    from app.dicom.ingest import ScoringIngest
    from tests.dicom.nodes import Recorder

    def loading():
        raise ModelNotReadyError(failed=False)

    session = StowSession(ScoringIngest(loading, Recorder()))
    body, content_type = multipart_body([file_bytes(study_film(xray_like(64, 64)))])
    for part in RelatedParts(boundary_of(content_type), 1 << 20, 10).feed(body):
        session.add(part)
    status, answer = session.response()
    assert status == 503
    assert Dataset.from_json(answer).FailedSOPSequence[0].FailureReason == 0xA700


def test_stow_of_nothing_stored_is_a_conflict():
    status, answer, _ = _session([study_film(xray_like(64, 64), sop_class=CT_SOP_CLASS)])
    assert status == 409


def test_a_deflated_instance_is_refused_without_inflating_it():
    """pydicom would inflate it whole in the server: refused with 0xC122 (transfer syntax
    not supported), named by the UIDs of its first MiB, and never ingested."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    film = study_film(xray_like(64, 64))
    film.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    status, answer, recorder = _session([film])
    assert status == 409
    [failed] = answer.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == film.SOPInstanceUID
    assert failed.FailureReason == 0xC122
    assert recorder.committed == []
