"""`archive import`: an archive run's rows on the worklist, one entry per study, as the DICOM
node and the upload door list films; importing again changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.store import WorklistStore, database_url
from app.store.models import Study
from tests.archive.harness import STUDY_UID, archive_cli, rows

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def _entries(store: WorklistStore) -> dict[str, object]:
    return {entry.study_instance_uid: entry
            for entry in store.entries(limit=100).entries}


def test_import_lists_one_entry_per_study_and_again_changes_nothing(scored_folder, tmp_path):
    state = tmp_path / "state"
    first = archive_cli("import", str(scored_folder.out), ray_dir=tmp_path,
                        state_dir=str(state))
    assert first.returncode == 0, first.stderr
    store = WorklistStore(database_url(None, state))
    try:
        listed = _entries(store)
        by_name = {Path(r["source"]).name: r for r in rows(scored_folder.out)}
        # The study's two films in one entry; its report acknowledged, never listed.
        study = listed[STUDY_UID]
        assert sorted(f.sop_instance_uid for f in study.films) == sorted(
            by_name[name]["sop_instance_uid"] for name in ("first.dcm", "second"))
        # A JPEG is its own study under the UIDs of its bytes: its copy is the same film.
        pneumonia = listed[by_name["pneumonia.jpeg"]["study_instance_uid"]]
        assert len(pneumonia.films) == 1 and pneumonia.flagged == (
            by_name["pneumonia.jpeg"]["decision"] == "flagged")
        assert pneumonia.triage_score == pytest.approx(
            by_name["pneumonia.jpeg"]["triage_score"])
        damaged = listed[by_name["damaged.jpeg"]["study_instance_uid"]]
        assert damaged.films[0].error_code == "corrupt_image"  # listed with why not scored
        assert by_name["notes.txt"]["study_instance_uid"] not in listed  # no film at all
        assert len(listed) == 6 and sum(len(e.films) for e in listed.values()) == 7
        with store.engine.connect() as connection:  # the node's patient check applies
            key = connection.scalar(select(Study.patient_key)
                                    .where(Study.study_instance_uid == STUDY_UID))
        assert key is not None and len(key) == 64
        assert "8 rows on the worklist, in 6 studies" in first.stdout
        again = archive_cli("import", str(scored_folder.out), ray_dir=tmp_path,
                            state_dir=str(state))
        assert again.returncode == 0, again.stderr
        after = _entries(store)
        assert {uid: [f.id for f in e.films] for uid, e in after.items()} == {
            uid: [f.id for f in e.films] for uid, e in listed.items()}
    finally:
        store.close()
