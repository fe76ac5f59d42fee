"""Study and instance integrity on the real node (pynetdicom as the PACS) and the worklist
store (app/dicom/store_adapter.py): a film of another patient under a study's UID is listed
apart as a conflict, never merged and never given results in that study; a SOP Instance UID
sent again with other pixels is refused and the first result stands; the same film again
changes nothing."""

from __future__ import annotations

import pytest

from app.dicom.ingest import ScoringIngest
from app.dicom.results import ResultBuilder
from app.dicom.store_adapter import StoreCommit
from app.store import WorklistStore
from tests.builders.dicom import study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import running_node, stand_in_scorer, store

pytestmark = pytest.mark.slow

SECRET = b"install-secret-of-the-tests"


def _ingest(worklist: WorklistStore, probability: float = 0.9) -> ScoringIngest:
    scorer = stand_in_scorer(probability)
    return ScoringIngest(lambda: scorer, StoreCommit(worklist), ResultBuilder(), secret=SECRET)


def _entries(worklist: WorklistStore) -> list:
    return worklist.entries(limit=500).entries


def test_a_film_of_another_patient_under_a_study_s_uid_is_not_merged(worklist):
    victim = study_film(xray_like(96, 80, seed=1))
    victim.PatientID = "VICTIM-1"
    intruder = study_film(xray_like(96, 80, seed=2), study_uid=victim.StudyInstanceUID)
    intruder.PatientID = "OTHER-2"
    with running_node(_ingest(worklist)) as node:
        statuses = store(node.port, [victim, intruder])
    assert statuses[0].Status == 0x0000
    assert statuses[1].Status == 0xB000 and "conflict" in statuses[1].ErrorComment
    entries = {entry.status.value: entry for entry in _entries(worklist)}
    assert set(entries) == {"new", "conflict"}, entries
    own = entries["new"]
    assert own.study_instance_uid == victim.StudyInstanceUID
    assert [f.sop_instance_uid for f in own.films] == [victim.SOPInstanceUID]
    assert [f.sop_instance_uid for f in entries["conflict"].films] == [intruder.SOPInstanceUID]
    # Only the victim's own film has results waiting for the PACS.
    assert worklist.pending_results() == 1


def test_the_same_uid_with_other_pixels_is_refused_and_the_first_result_stands(worklist):
    first = study_film(xray_like(96, 80, seed=3))
    again = study_film(xray_like(96, 80, seed=4), study_uid=first.StudyInstanceUID)
    again.SeriesInstanceUID = first.SeriesInstanceUID
    again.SOPInstanceUID = again.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID
    with running_node(_ingest(worklist)) as node:
        statuses = store(node.port, [first, again])
    assert statuses[0].Status == 0x0000
    assert statuses[1].Status == 0x0111, statuses[1]  # Duplicate SOP Instance
    [entry] = _entries(worklist)
    assert [f.sop_instance_uid for f in entry.films] == [first.SOPInstanceUID]
    assert worklist.pending_results() == 1  # nothing new queued under that UID


def test_the_same_film_sent_again_is_a_success_that_changes_nothing(worklist):
    film = study_film(xray_like(96, 80, seed=5))
    with running_node(_ingest(worklist)) as node:
        statuses = store(node.port, [film, film])
    assert [s.Status for s in statuses] == [0x0000, 0x0000]
    [entry] = _entries(worklist)
    assert len(entry.films) == 1 and worklist.pending_results() == 1
