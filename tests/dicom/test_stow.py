"""STOW-RS without the web layer: the request's media type, each part's bytes through the
ingest, and the Store Instances Response for one and for several instances. (The body's
split into parts is the web layer's: tests/dicom/test_dicomweb.py.)"""

from __future__ import annotations

import pytest
from pydicom import Dataset

from app.dicom.stow import DICOM, StowSession, UnsupportedMediaTypeError, boundary_of
from app.errors import MalformedUploadError, ModelNotReadyError
from tests.builders.dicom import (
    COMPREHENSIVE_SR,
    CT_SOP_CLASS,
    GSPS,
    file_bytes,
    study_film,
    study_object,
    unsupported_films,
)
from tests.builders.images import xray_like
from tests.dicom.nodes import scoring_ingest

CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary=b0und'


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


def _session(films, probability=0.9, content_type=DICOM, **options):
    ingest, recorder = scoring_ingest(probability)
    session = StowSession(ingest, **options)
    for film in films:
        session.add(file_bytes(film) if isinstance(film, Dataset) else film, content_type)
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
    assert set(referenced) == {f.SOPInstanceUID for f in (*good, lateral, ct)}
    assert referenced[lateral.SOPInstanceUID].WarningReason == 0xB000
    assert "WarningReason" not in referenced[ct.SOPInstanceUID]  # taken, ignored
    failed = {i.ReferencedSOPInstanceUID: i.FailureReason for i in answer.FailedSOPSequence}
    assert failed == {damaged.SOPInstanceUID: 0xC000, other_study.SOPInstanceUID: 0xA900}
    [other] = answer.OtherFailuresSequence
    assert other.FailureReason == 0xC000
    # The damaged and the lateral film are listed with their reasons; the CT is not.
    assert len(recorder.committed) == 5


def test_stow_while_the_model_loads_asks_to_send_again():
    from app.dicom.ingest import ScoringIngest
    from tests.dicom.nodes import Recorder

    def loading():
        raise ModelNotReadyError(failed=False)

    session = StowSession(ScoringIngest(loading, Recorder()))
    session.add(file_bytes(study_film(xray_like(64, 64))), DICOM)
    status, answer = session.response()
    assert status == 503
    assert Dataset.from_json(answer).FailedSOPSequence[0].FailureReason == 0xA700


def test_stow_of_nothing_stored_is_a_conflict():
    damaged = study_film(xray_like(64, 64))
    damaged.PixelData = damaged.PixelData[:50]
    status, answer, _ = _session([damaged])
    assert status == 409
    [failed] = answer.FailedSOPSequence
    assert failed.FailureReason == 0xC000 and "corrupt_image" in failed.ErrorComment


def test_stow_of_a_study_s_sr_and_presentation_state_is_taken_and_ignored():
    film = study_film(xray_like(64, 64))
    others = [study_object(film, COMPREHENSIVE_SR, "SR"), study_object(film, GSPS, "PR")]
    status, answer, recorder = _session([film, *others])
    assert status == 200
    assert {i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence} == {
        ds.SOPInstanceUID for ds in (film, *others)}
    assert [r.facts.sop_instance_uid for r in recorder.committed] == [film.SOPInstanceUID]


def test_stow_of_an_instance_that_is_no_storage_class_is_refused():
    film = study_film(xray_like(64, 64), sop_class="1.2.826.0.1.3680043.8.498.999")
    status, answer, recorder = _session([film])
    assert status == 409 and answer.FailedSOPSequence[0].FailureReason == 0x0122
    assert recorder.committed == []


@pytest.mark.parametrize("name", sorted(unsupported_films(xray_like(8, 8))))
def test_stow_of_an_encoding_not_read_is_a_failure_naming_it_never_503(name):
    status, answer, recorder = _session([unsupported_films(xray_like(96, 80))[name]])
    assert status == 409
    if name == "deep-nesting":  # refused before it is read: no UIDs to name it by
        [other] = answer.OtherFailuresSequence
        assert other.FailureReason == 0xC000
        assert other.ErrorComment == "sequences nested deeper than 32 levels"
        return
    [failed] = answer.FailedSOPSequence
    syntax = name in ("jpeg-progressive", "jpeg-xl", "htj2k")
    assert failed.FailureReason == (0xC122 if syntax else 0xC000)
    assert failed.ErrorComment.startswith("unsupported_encoding: ")
    assert recorder.committed[0].error.code == "unsupported_encoding"


@pytest.mark.parametrize(("keyword", "where"), [("StudyInstanceUID", "FailedSOPSequence"),
                                                ("SOPInstanceUID", "OtherFailuresSequence")])
def test_stow_of_an_over_long_uid_is_a_final_failure_not_503(keyword, where):
    film = study_film(xray_like(64, 64))
    setattr(film, keyword, "1.2.826.0.1.3680043.8.498." + "7" * 60)
    status, answer, recorder = _session([film])
    assert status == 409  # none stored, and not "busy": a client must not send it again
    [item] = answer.get(where)
    assert item.FailureReason == 0xA900
    assert item.ErrorComment == f"invalid {keyword}: over 64 characters"
    assert recorder.committed == []


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


def test_stow_ingests_each_part_as_it_arrived():
    """The part's bytes go to the ingest as a C-STORE's encoded data set does: no Dataset
    written back to bytes."""
    handed = []
    ingest, _ = scoring_ingest()

    def spy(received, source):
        handed.append(received)
        return ingest(received, source)

    session = StowSession(spy)
    data = file_bytes(study_film(xray_like(64, 64)))
    session.add(data, f"{DICOM}; transfer-syntax=1.2.840.10008.1.2.1")
    assert session.response()[0] == 200
    [received] = handed
    assert received.data is data


@pytest.mark.parametrize("content_type", ["text/plain", "application/dicom+json"])
def test_stow_of_a_part_that_is_not_dicom_is_another_failure(content_type):
    status, answer, recorder = _session([study_film(xray_like(64, 64))],
                                        content_type=content_type)
    assert status == 409
    [other] = answer.OtherFailuresSequence
    assert other.FailureReason == 0xC000 and "not application/dicom" in other.ErrorComment
    assert recorder.committed == []


def test_stow_of_a_part_without_a_content_type_is_taken_as_dicom():
    status, _, recorder = _session([study_film(xray_like(64, 64))], content_type=None)
    assert status == 200 and len(recorder.committed) == 1
