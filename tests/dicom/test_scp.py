"""The Storage SCP over real associations on loopback: dcmtk's storescu and echoscu, and
pynetdicom as the PACS where the test needs to read the response status."""

from __future__ import annotations

import io
import logging
import subprocess

import pydicom
import pytest
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom.sop_class import ComputedRadiographyImageStorage, CTImageStorage

from app.dicom.classes import SCORED_CLASSES, STORAGE_CLASSES, TRANSFER_SYNTAXES, offered_syntaxes
from app.dicom.ingest import NotStoredError, ScoringIngest
from app.dicom.results import ResultBuilder
from app.errors import ModelNotReadyError
from app.metrics import Metrics
from app.services.decode_pool import InlineDecoder
from tests.builders.dicom import (
    COMPREHENSIVE_SR,
    CT_SOP_CLASS,
    GSPS,
    JPEG_XL,
    PATIENT_ID,
    PATIENT_NAME,
    file_bytes,
    nested,
    study_film,
    study_object,
    unsupported_films,
)
from tests.builders.images import xray_like
from tests.dicom.nodes import (
    NODE_AE,
    PACS_AE,
    Recorder,
    built,
    can_associate,
    running_node,
    scoring_ingest,
    stand_in_scorer,
    store,
)

DCMTK_TIMEOUT = 60


def _dcmtk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=DCMTK_TIMEOUT)


def _storescu(port: int, path, *options: str,
              ae_title: str = PACS_AE) -> subprocess.CompletedProcess:
    return _dcmtk("storescu", *options, "-aet", ae_title, "-aec", NODE_AE, "127.0.0.1",
                  str(port), str(path))


def _counted(metrics: Metrics, family: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(family, labels) or 0.0


def test_storescu_of_a_cr_is_stored(tmp_path):
    ingest, recorder = scoring_ingest(probability=0.73)
    film = study_film(xray_like(128, 112))
    film.save_as(tmp_path / "cr.dcm", enforce_file_format=True)
    with running_node(ingest) as node:
        run = _storescu(node.port, tmp_path / "cr.dcm")
    assert run.returncode == 0, run.stderr
    [result] = recorder.committed
    assert result.facts.sop_instance_uid == film.SOPInstanceUID
    assert result.facts.study_instance_uid == film.StudyInstanceUID
    assert result.source == f"dicom:{PACS_AE}"
    assert result.prediction is not None
    assert result.prediction.probability == pytest.approx(0.73)


def test_storescu_of_a_ct_is_acknowledged_and_ignored(tmp_path):
    """A PACS routing a whole study sends its CT too: taken (Success), never listed,
    scored or sent back, counted by its kind."""
    metrics = Metrics()
    ingest, recorder = scoring_ingest(metrics=metrics)
    film = study_film(xray_like(64, 64), sop_class=CT_SOP_CLASS, modality="CT")
    film.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    with running_node(ingest) as node:
        run = _storescu(node.port, tmp_path / "ct.dcm")
        assert can_associate(node.port, sop_classes=(CTImageStorage,))
        assert can_associate(node.port, sop_classes=(ComputedRadiographyImageStorage,))
    assert run.returncode == 0, run.stderr
    assert recorder.committed == []
    assert _counted(metrics, "pneumonia_dicom_ignored_total", kind="image") == 1


def test_echoscu_is_answered():
    ingest, _ = scoring_ingest()
    with running_node(ingest) as node:
        run = _dcmtk("echoscu", "-aet", PACS_AE, "-aec", NODE_AE, "127.0.0.1", str(node.port))
    assert run.returncode == 0, run.stderr


def test_associate_with_a_caller_not_on_the_allow_list_is_rejected(tmp_path):
    ingest, recorder = scoring_ingest()
    film = study_film(xray_like(64, 64))
    film.save_as(tmp_path / "cr.dcm", enforce_file_format=True)
    with running_node(ingest, allowed_aes=(PACS_AE,)) as node:
        echo = _dcmtk("echoscu", "-aet", "INTRUDER", "-aec", NODE_AE, "127.0.0.1",
                      str(node.port))
        stored = _storescu(node.port, tmp_path / "cr.dcm", ae_title="INTRUDER")
        assert can_associate(node.port, ae_title=PACS_AE)
    assert echo.returncode != 0 and "Calling AE Title Not Recognized" in echo.stderr
    assert stored.returncode != 0
    assert recorder.committed == []


def test_deflated_data_sets_are_not_accepted():
    """The association would inflate one whole in the server: the node does not offer it."""
    assert DeflatedExplicitVRLittleEndian not in TRANSFER_SYNTAXES
    for sop_class in SCORED_CLASSES:
        assert DeflatedExplicitVRLittleEndian not in offered_syntaxes(sop_class)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian,
                                    ExplicitVRBigEndian, JPEGBaseline8Bit, JPEGLSLossless,
                                    JPEG2000Lossless, RLELossless])
def test_store_in_each_transfer_syntax_is_scored(syntax):
    """The sender's encoding travels to the pipeline: each one the node accepts decodes."""
    assert syntax in offered_syntaxes(SCORED_CLASSES[0])
    film = study_film(xray_like(96, 80), **_encoded(syntax))
    if not film.file_meta.TransferSyntaxUID.is_compressed:  # written again in `syntax`
        film.file_meta.TransferSyntaxUID = syntax
        buffer = io.BytesIO()
        dcmwrite(buffer, film, force_encoding=True,
                 implicit_vr=syntax == ImplicitVRLittleEndian,
                 little_endian=syntax != ExplicitVRBigEndian)
        film = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    ingest, recorder = scoring_ingest()
    with running_node(ingest) as node:
        [status] = store(node.port, [film], transfer_syntax=syntax)
    assert status.Status == 0x0000, status
    [result] = recorder.committed
    assert result.prediction is not None, result.error
    assert result.prediction.image.dicom is not None


def _encoded(syntax: str) -> dict:
    """dicom_bytes' options for a film compressed in `syntax` (none for uncompressed)."""
    named = {JPEGBaseline8Bit: "jpeg-baseline", JPEG2000Lossless: "jpeg2000",
             RLELossless: "rle"}
    if syntax in named:
        return {"syntax": named[syntax]}
    if syntax == JPEGLSLossless:
        return {"syntax": "jpeg-ls"}
    return {}


def test_the_ingest_gets_the_data_set_as_the_sender_encoded_it():
    """No Dataset is written back to bytes on the way in: the ingest gets pynetdicom's
    encoded data set behind its file meta, and the header read from it without pixels."""
    from pynetdicom.dsutils import encode

    film = study_film(xray_like(96, 80))
    handed = []
    ingest, recorder = scoring_ingest()

    def spy(received, source):
        handed.append(received)
        return ingest(received, source)

    with running_node(spy) as node:
        [status] = store(node.port, [film])
    assert status.Status == 0x0000
    [received] = handed
    sent = encode(film, is_implicit_vr=False, is_little_endian=True)
    assert received.data[128:132] == b"DICM" and received.data.endswith(sent)
    assert received.header.SOPInstanceUID == film.SOPInstanceUID
    assert "PixelData" not in received.header
    assert recorder.committed[0].prediction is not None


def test_store_of_a_damaged_film_gets_a_failure_status_and_is_listed_without_a_score():
    film = study_film(xray_like(96, 80))
    film.PixelData = film.PixelData[: len(film.PixelData) // 2]  # a transfer cut short
    ingest, recorder = scoring_ingest()
    with running_node(ingest) as node:
        [status] = store(node.port, [film])
    assert status.Status == 0xC000
    assert "corrupt_image" in status.ErrorComment
    [result] = recorder.committed
    assert result.prediction is None and result.error.code == "corrupt_image"


def test_store_of_a_lateral_film_gets_a_warning_and_is_listed_without_a_score():
    film = study_film(xray_like(96, 80), view="LL")
    ingest, recorder = scoring_ingest()
    with running_node(ingest) as node:
        [status] = store(node.port, [film])
    assert status.Status == 0xB000
    assert "dicom_lateral_view" in status.ErrorComment
    assert recorder.committed[0].error.code == "dicom_lateral_view"


@pytest.mark.parametrize("cause", ["loading", "failed", "busy", "store down", "a bug"])
def test_store_while_the_node_cannot_take_it_gets_out_of_resources(cause):
    """Out of Resources (A700) makes the PACS send again later: nothing is lost."""
    recorder = Recorder()
    scorer = stand_in_scorer(decoder=InlineDecoder(admitted=1))

    def current():
        if cause in ("loading", "failed"):
            raise ModelNotReadyError(failed=cause == "failed")
        return scorer

    def commit(result):
        if cause == "store down":
            raise NotStoredError()
        if cause == "a bug":
            raise KeyError("unexpected")
        recorder(result)

    ingest = ScoringIngest(current, commit)
    with running_node(ingest) as node:
        if cause == "busy":
            with scorer.decoder.admit():  # every decode slot taken
                [status] = store(node.port, [study_film(xray_like(64, 64))])
        else:
            [status] = store(node.port, [study_film(xray_like(64, 64))])
    assert status.Status == 0xA700
    assert recorder.committed == []


def test_store_of_a_data_set_without_its_study_uid_does_not_match_the_sop_class():
    film = study_film(xray_like(64, 64))
    del film.StudyInstanceUID
    ingest, recorder = scoring_ingest()
    with running_node(ingest) as node:
        [status] = store(node.port, [film])
    assert status.Status == 0xA900
    assert recorder.committed == []


def test_node_scores_radiograph_classes_only_and_takes_every_storage_class():
    assert {str(uid) for uid in SCORED_CLASSES} == {
        "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",
        "1.2.840.10008.5.1.4.1.1.1.1.1", "1.2.840.10008.5.1.4.1.1.7",
        # other parts' projection X-rays: listed as needing a human look, not ignored
        "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.2.1",
        "1.2.840.10008.5.1.4.1.1.1.3", "1.2.840.10008.5.1.4.1.1.1.3.1",
        "1.2.840.10008.5.1.4.1.1.13.1.4", "1.2.840.10008.5.1.4.1.1.13.1.5"}
    assert set(SCORED_CLASSES) < set(STORAGE_CLASSES)
    assert {COMPREHENSIVE_SR, GSPS, CT_SOP_CLASS} < set(STORAGE_CLASSES)


def test_store_logs_no_patient_name_or_id(tmp_path, caplog):
    """Every path a film takes through the node, with pynetdicom's and our loggers at
    DEBUG: the patient's name and ID appear in no line."""
    good = study_film(xray_like(96, 80))
    damaged = study_film(xray_like(96, 80))
    damaged.PixelData = damaged.PixelData[:100]
    lateral = study_film(xray_like(96, 80), view="LL")
    good.save_as(tmp_path / "cr.dcm", enforce_file_format=True)
    ingest, recorder = scoring_ingest()
    # pynetdicom's own level too: the app quiets it to WARNING (app/logs.py).
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="pynetdicom"), \
            running_node(ingest) as node:
        statuses = store(node.port, [good, damaged, lateral])
        run = _storescu(node.port, tmp_path / "cr.dcm")
        _storescu(node.port, tmp_path / "cr.dcm", ae_title="ELSEWHERE")
    assert [s.Status for s in statuses] == [0x0000, 0xC000, 0xB000]
    assert run.returncode == 0 and len(recorder.committed) == 5
    assert "Received Store Request" in caplog.text  # pynetdicom's DEBUG lines were on
    assert PATIENT_ID in file_bytes(good).decode("latin-1")  # the films did carry them
    for secret in (PATIENT_ID, *PATIENT_NAME.split("^")):
        assert secret not in caplog.text


# --- a whole study routed to the node; true statuses (issue 27) ---------------------------


def _store_files(port: int, paths: list) -> list:
    """C-STORE each Part 10 file as its bytes are (pynetdicom sends a path's data set
    without decoding it), in one association: the response status data sets."""
    from pynetdicom import AE

    ae = AE(ae_title=PACS_AE)
    for path in paths:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    assert assoc.is_established, "the node refused the association"
    try:
        return [assoc.send_c_store(str(path)) for path in paths]
    finally:
        assoc.release()


def test_store_of_a_study_s_sr_presentation_state_and_own_result_is_acknowledged():
    """Every object of a routed study is taken (Success); only the radiograph is listed
    and scored; the rest is counted by kind, never listed, scored or sent back."""
    metrics = Metrics()
    ingest, recorder = scoring_ingest(metrics=metrics, results=ResultBuilder())
    film = study_film(xray_like(96, 80))
    others = [study_object(film, COMPREHENSIVE_SR, "SR"), study_object(film, GSPS, "PR")]
    with running_node(ingest) as node:
        statuses = store(node.port, [film, *others])
        own = built(recorder.committed[0])  # the node's own SR and secondary capture
        statuses += store(node.port, list(own))
    assert [s.Status for s in statuses] == [0x0000] * 5
    assert [r.facts.sop_instance_uid for r in recorder.committed] == [film.SOPInstanceUID]
    for kind, count in (("structured_report", 1), ("presentation_state", 1),
                        ("own_result", 2)):
        assert _counted(metrics, "pneumonia_dicom_ignored_total", kind=kind) == count


_UNREAD_SYNTAXES = ("jpeg-progressive", "jpeg-xl", "htj2k")


@pytest.mark.parametrize("name", sorted(_UNREAD_SYNTAXES))
def test_a_radiograph_in_a_syntax_not_read_is_refused_at_negotiation(name, tmp_path):
    """For the classes it scores, the node offers only the syntaxes the decoder reads: the
    sender's context for another one is rejected (transfer syntaxes not supported), a final
    answer that lets a PACS which can transcode send the film in one the node reads."""
    from pynetdicom import AE

    path = tmp_path / "film.dcm"
    path.write_bytes(unsupported_films(xray_like(96, 80))[name])
    meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    ae = AE(ae_title=PACS_AE)
    ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
    ae.add_requested_context(meta.MediaStorageSOPClassUID, [ExplicitVRLittleEndian])
    ingest, recorder = scoring_ingest()
    with running_node(ingest) as node:
        assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE)
        try:
            assert assoc.is_established
            syntaxes = {str(c.transfer_syntax[0]) for c in assoc.accepted_contexts}
        finally:
            assoc.release()
    assert syntaxes == {ExplicitVRLittleEndian}
    assert [c.result for c in assoc.rejected_contexts] == [0x04]  # syntax not supported
    assert recorder.committed == []


@pytest.mark.parametrize("name", sorted(set(unsupported_films(xray_like(8, 8)))
                                        - set(_UNREAD_SYNTAXES)))
def test_store_in_an_encoding_not_read_is_a_final_failure_naming_it(name, tmp_path):
    """Not "damaged", not "try again later": Cannot Understand (C000) with a comment that
    names what is not read (a syntax the node does not read never gets this far, above)."""
    path = tmp_path / "film.dcm"
    path.write_bytes(unsupported_films(xray_like(96, 80))[name])
    ingest, recorder = scoring_ingest()
    with running_node(ingest) as node:
        [status] = _store_files(node.port, [path])
    assert status.Status == 0xC000, status
    if name == "deep-nesting":  # refused before anything is read: never listed
        assert status.ErrorComment == "sequences nested deeper than 32 levels"
        assert recorder.committed == []
        return
    assert status.ErrorComment.startswith("unsupported_encoding: ")
    [result] = recorder.committed  # listed, with its reason, for a human
    assert result.prediction is None and result.error.code == "unsupported_encoding"


def test_storescu_of_float_pixels_and_deep_nesting_gets_final_failures(tmp_path):
    """dcmtk's storescu as the sender: float pixel data (listed, unsupported_encoding) and
    a private sequence nested 300 deep (refused unread, which pydicom could not even read)
    are both Error: Cannot Understand, never a refusal to retry."""
    films = unsupported_films(xray_like(96, 80))
    (tmp_path / "float.dcm").write_bytes(films["float-pixels"])
    (tmp_path / "deep.dcm").write_bytes(nested(study_film(xray_like(96, 80)), 300))
    ingest, recorder = scoring_ingest()
    with running_node(ingest) as node:
        runs = [_storescu(node.port, tmp_path / name, "-v") for name in ("float.dcm",
                                                                          "deep.dcm")]
    for run in runs:
        assert "Received Store Response (Error: CannotUnderstand)" in run.stderr, run.stderr
    [listed] = recorder.committed  # the float film, with its reason; the deep one never
    assert listed.error.code == "unsupported_encoding"


@pytest.mark.parametrize(("keyword", "value", "comment"), [
    ("StudyInstanceUID", "1.2.826.0.1.3680043.8.498." + "7" * 60,
     "invalid StudyInstanceUID: over 64 characters"),
    ("SeriesInstanceUID", "1.2.3.4-5", "invalid SeriesInstanceUID: not digits and dots"),
])
def test_store_with_an_invalid_uid_is_a_final_failure_never_try_again(keyword, value,
                                                                      comment, caplog):
    """Over 64 characters, or not a UID: refused as final (A900), never scored, never
    "out of resources" (which a PACS retries for ever)."""
    film = study_film(xray_like(96, 80))
    setattr(film, keyword, value)
    ingest, recorder = scoring_ingest()
    with caplog.at_level(logging.INFO), running_node(ingest) as node:
        [status] = store(node.port, [film])
    assert status.Status == 0xA900 and status.ErrorComment == comment
    assert recorder.committed == []
    assert "Traceback" not in caplog.text


def test_storescu_of_a_film_with_an_over_long_uid_fails_once(tmp_path):
    film = study_film(xray_like(96, 80))
    film.StudyInstanceUID = "1.2.826.0.1.3680043.8.498." + "7" * 60
    path = tmp_path / "long.dcm"
    path.write_bytes(file_bytes(film))
    ingest, recorder = scoring_ingest()
    with running_node(ingest) as node:
        run = _storescu(node.port, path, "-v")
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in run.stderr
    assert recorder.committed == []


def test_store_of_a_deeply_nested_data_set_is_refused_in_one_log_line(tmp_path, caplog):
    path = tmp_path / "deep.dcm"  # deep enough for the node, not for pynetdicom's reader
    path.write_bytes(nested(study_film(xray_like(96, 80)), 40))
    ingest, recorder = scoring_ingest()
    with caplog.at_level(logging.INFO), running_node(ingest) as node:
        [status] = _store_files(node.port, [path])
    assert status.Status == 0xC000
    assert status.ErrorComment == "sequences nested deeper than 32 levels"
    ours = [r for r in caplog.records if r.name.startswith("app.")]
    assert len([r for r in ours if "not readable" in r.getMessage()]) == 1
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    assert recorder.committed == []


def test_a_sender_offering_a_syntax_the_decoder_reads_beside_one_it_does_not_gets_it():
    """pynetdicom accepts, of a context's syntaxes, the first in the node's own list: those
    the decoder reads, uncompressed first, come before the ones it takes only to refuse."""
    from pynetdicom import AE

    ae = AE(ae_title=PACS_AE)
    ae.add_requested_context(ComputedRadiographyImageStorage,
                             [JPEG_XL, JPEGBaseline8Bit, ImplicitVRLittleEndian])
    ingest, _ = scoring_ingest()
    with running_node(ingest) as node:
        assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE)
        [context] = assoc.accepted_contexts
        assoc.release()
    assert context.transfer_syntax[0] == ImplicitVRLittleEndian
