"""ScoringIngest without the network: what it commits, what it keeps of the header, and the
instances it must not score."""

from __future__ import annotations

import dataclasses

import pytest

from app.contract.identifiers import InstanceFacts, InvalidInstanceError
from app.dicom.ingest import Received, UnreadableInstanceError
from app.dicom.results import ResultBuilder
from tests.builders.dicom import PATIENT_ID, PATIENT_NAME, file_bytes, study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import received, scoring_ingest


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
    assert facts.study_date.isoformat() == "2026-11-26"
    assert facts.study_time.isoformat() == "10:15:00"


@pytest.mark.parametrize("missing", ["SOPInstanceUID", "StudyInstanceUID", "SOPClassUID"])
def test_ingest_of_a_data_set_without_its_uids_is_invalid(missing):
    ingest, recorder = scoring_ingest()
    film = study_film(xray_like(64, 64))
    delattr(film, missing)
    with pytest.raises(InvalidInstanceError):
        ingest(received(film), "dicom:PACS")
    assert recorder.committed == []


def test_ingest_of_a_result_of_this_node_lists_it_unscored():
    """A PACS that routes everything to the node sends its secondary captures back."""
    film = study_film(xray_like(96, 80))
    ingest, recorder = scoring_ingest(results=ResultBuilder())
    _, sc = ingest(received(film), "dicom:PACS").results
    result = ingest(Received.read(file_bytes(sc)), "dicom:PACS")
    assert result.prediction is None and result.error.code == "dicom_own_result"
    assert result.results == ()


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


def test_ingest_of_a_film_whose_results_cannot_be_made_keeps_its_score(caplog):
    film = study_film(xray_like(96, 80))
    del film.SeriesInstanceUID  # highdicom cannot reference the source without it
    ingest, recorder = scoring_ingest(results=ResultBuilder())
    result = ingest(received(film), "dicom:PACS")
    assert result.prediction is not None and result.results == ()
    assert "results not made" in result.results_error
    assert recorder.committed == [result]
