"""ScoringIngest without the network: what it commits, what it keeps of the header, and the
instances it must not score."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from app.contract.identifiers import InstanceFacts, InvalidInstanceError
from app.dicom.ingest import Received, ScoringIngest, UnreadableInstanceError
from app.dicom.results import ResultBuilder
from app.services.observer import Observer
from tests.builders.dicom import (
    PATIENT_ID,
    PATIENT_NAME,
    file_bytes,
    study_film,
    with_raw_elements,
)
from tests.builders.images import xray_like
from tests.dicom.nodes import Recorder, built, received, scoring_ingest, stand_in_scorer


def test_ingest_commits_before_it_returns():
    ingest, recorder = scoring_ingest(0.3)
    film = study_film(xray_like(96, 80))
    result = ingest(received(film), "dicom:PACS")
    assert recorder.committed == [result]
    assert result.scored_at >= result.received_at
    assert result.received_at.tzinfo is not None


def test_facts_keep_no_patient_identity():
    film = study_film(xray_like(96, 80))
    facts = InstanceFacts.of(film)
    values = [str(v) for v in dataclasses.asdict(facts).values()]
    assert not any(secret in v for v in values
                   for secret in (PATIENT_ID, *PATIENT_NAME.split("^"), "20200229"))
    assert (facts.patient_sex, facts.patient_age, facts.modality) == ("F", "004Y", "CR")
    assert facts.study_date.isoformat() == "2024-11-26"
    assert facts.study_time.isoformat() == "10:15:00"


@pytest.mark.parametrize("missing", ["SOPInstanceUID", "StudyInstanceUID", "SOPClassUID"])
def test_ingest_of_a_data_set_without_its_uids_is_invalid(missing):
    ingest, recorder = scoring_ingest()
    film = study_film(xray_like(64, 64))
    delattr(film, missing)
    with pytest.raises(InvalidInstanceError):
        ingest(received(film), "dicom:PACS")
    assert recorder.committed == []


def test_ingest_of_a_result_of_this_node_acknowledges_and_ignores_it():
    """A PACS that routes everything to the node sends its SR and secondary capture back:
    taken, never listed, scored or sent back again."""
    film = study_film(xray_like(96, 80))
    ingest, recorder = scoring_ingest(results=ResultBuilder())
    for own in built(ingest(received(film), "dicom:PACS")):
        result = ingest(Received.read(file_bytes(own)), "dicom:PACS")
        assert result.ignored == "own_result" and result.prediction is None
        assert result.error is None and result.results == ()
    assert len(recorder.committed) == 1  # the film alone


def test_ingest_gives_each_film_its_patient_key_and_pixel_hash():
    film = study_film(xray_like(96, 80))
    ingest, recorder = scoring_ingest(secret=b"install-secret")
    result = ingest(received(film), "dicom:PACS")
    assert result.patient_key is not None and PATIENT_ID not in result.patient_key
    assert result.content_hash is not None
    keyless, _ = scoring_ingest()  # no secret: no key, so no study is ever compared
    assert keyless(received(film), "dicom:PACS").patient_key is None


def test_ingest_scores_the_bytes_as_they_arrived(monkeypatch):
    """No Dataset written back to bytes on the way in: the pipeline gets the received
    bytes themselves."""
    import app.dicom.ingest as module

    scored = []
    score_film = module.score_film

    def spy(scorer, data, **options):
        scored.append(data)
        return score_film(scorer, data, **options)

    monkeypatch.setattr(module, "score_film", spy)
    ingest, _ = scoring_ingest(results=ResultBuilder())
    instance = received(study_film(xray_like(96, 80)))
    assert ingest(instance, "dicom:PACS").prediction is not None
    assert len(scored) == 1 and scored[0] is instance.data


def test_received_header_is_read_without_the_pixels():
    film = study_film(xray_like(96, 80))
    instance = received(film)
    assert instance.header.SOPInstanceUID == film.SOPInstanceUID
    assert "PixelData" not in instance.header
    assert instance.data == file_bytes(film)


@pytest.mark.parametrize("data", [b"", b"not dicom at all", b"\0" * 128 + b"DICM" + b"\xff" * 9])
def test_received_of_bytes_that_are_not_part_10_is_unreadable(data):
    with pytest.raises(UnreadableInstanceError):
        Received.read(data)


def test_ingest_never_writes_the_film_to_disk(monkeypatch):
    """Films stay in memory: any temporary file during an ingest fails the test."""
    import tempfile

    def refuse(*args, **kwargs):
        raise AssertionError("a film went to disk")

    for name in ("NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    ingest, _ = scoring_ingest(results=ResultBuilder())
    assert ingest(received(study_film(xray_like(96, 80))), "dicom:PACS").prediction is not None


class _Counted(Observer):
    def __init__(self) -> None:
        self.failures: list[str] = []

    def results_failed(self, reason: str) -> None:
        self.failures.append(reason)


def _ingest_counted(**options):
    counted, recorder = _Counted(), Recorder()
    scorer = stand_in_scorer(options.pop("probability", 0.9))
    return ScoringIngest(lambda: scorer, recorder, ResultBuilder(), metrics=counted,
                         **options), recorder, counted


def _logged(caplog) -> str:
    """What the app logged (the serving process silences pydicom's and highdicom's own
    chatter: app/logs.py silence_decoder_chatter)."""
    return "\n".join(record.getMessage() + (record.exc_text or "")
                     for record in caplog.records if record.name.startswith("app"))


def test_a_film_whose_results_cannot_be_made_keeps_its_score_listed_and_counted(caplog):
    """Its Series Instance UID is not one (a UID is never changed or invented): no
    results, the reason committed with the film, counted, and logged by tag only."""
    film = study_film(xray_like(96, 80))
    raw = with_raw_elements(film, {0x0020000E: ("UI", b"1.2.840.0099.7")})
    ingest, recorder, counted = _ingest_counted()
    with caplog.at_level(logging.INFO, logger="app.dicom"):
        result = ingest(Received.read(raw), "dicom:PACS")
    assert result.prediction is not None and result.results == ()
    assert result.results_error == "identity" and counted.failures == ["identity"]
    assert recorder.committed == [result]
    logged = _logged(caplog)
    assert "(0020,000E) SeriesInstanceUID" in logged and "Traceback" not in logged
    assert "1.2.840.0099.7" not in logged


def test_a_header_repaired_for_the_results_is_logged_by_tag_never_by_value(caplog):
    """A birth date written 2019-03-04 made highdicom refuse the SR, and its traceback
    quoted the date: now the date is blanked, the results made, the tag logged."""
    film = study_film(xray_like(96, 80))
    film.PatientBirthDate = "2019-03-04"
    film.PatientSex = "FEMALE"
    ingest, _, counted = _ingest_counted()
    with caplog.at_level(logging.DEBUG):
        result = ingest(received(film), "dicom:PACS")
    assert result.results and result.results_error is None and counted.failures == []
    logged = _logged(caplog)
    assert "(0010,0030) PatientBirthDate blanked" in logged
    assert "(0010,0040) PatientSex blanked" in logged
    for secret in ("2019-03-04", "FEMALE", PATIENT_ID, *PATIENT_NAME.split("^")):
        assert secret not in logged, secret


def test_the_log_line_of_a_film_the_model_did_not_judge_says_not_assessed(caplog):
    """Not 'scored 1.0000 (not flagged)': its raw output is no score."""
    ingest, _, _ = _ingest_counted(probability=1.0)
    with caplog.at_level(logging.INFO, logger="app.dicom"):
        result = ingest(received(study_film(np.full((96, 80), 128, np.uint8))), "dicom:PACS")
    assert not result.prediction.assessable
    logged = _logged(caplog)
    assert "not assessed (no_contrast)" in logged and "scored 1.0000" not in logged
