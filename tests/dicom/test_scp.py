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
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom.sop_class import ComputedRadiographyImageStorage, CTImageStorage

from app.dicom.ingest import NotStoredError, ScoringIngest
from app.dicom.scp import STORAGE_CLASSES, TRANSFER_SYNTAXES
from app.errors import ModelNotReadyError
from app.services.decode_pool import InlineDecoder
from tests.builders.dicom import CT_SOP_CLASS, PATIENT_ID, PATIENT_NAME, file_bytes, study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import (
    NODE_AE,
    PACS_AE,
    Recorder,
    can_associate,
    running_node,
    scoring_ingest,
    stand_in_scorer,
    store,
)

DCMTK_TIMEOUT = 60


def _dcmtk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=DCMTK_TIMEOUT)


def _storescu(port: int, path, ae_title: str = PACS_AE) -> subprocess.CompletedProcess:
    return _dcmtk("storescu", "-aet", ae_title, "-aec", NODE_AE, "127.0.0.1", str(port),
                  str(path))


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


def test_storescu_of_a_ct_is_refused_at_negotiation(tmp_path):
    ingest, recorder = scoring_ingest()
    film = study_film(xray_like(64, 64), sop_class=CT_SOP_CLASS, modality="CT")
    film.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    with running_node(ingest) as node:
        run = _storescu(node.port, tmp_path / "ct.dcm")
        assert not can_associate(node.port, sop_classes=(CTImageStorage,))
        assert can_associate(node.port, sop_classes=(ComputedRadiographyImageStorage,))
    assert run.returncode != 0
    assert "No presentation context" in run.stderr
    assert recorder.committed == []


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


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian,
                                    ExplicitVRBigEndian, JPEGBaseline8Bit, JPEGLSLossless,
                                    JPEG2000Lossless, RLELossless])
def test_store_in_each_transfer_syntax_is_scored(syntax):
    """The sender's encoding travels to the pipeline: each one the node accepts decodes."""
    assert syntax in TRANSFER_SYNTAXES
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


def test_node_offers_radiograph_classes_only():
    assert {str(uid) for uid in STORAGE_CLASSES} == {
        "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",
        "1.2.840.10008.5.1.4.1.1.1.1.1", "1.2.840.10008.5.1.4.1.1.7"}


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
