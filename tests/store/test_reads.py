"""Reads (issue 31) on SQLite and PostgreSQL: a study's read with who and when, the model's
answer it judged, changes in the audit trail, the window of reads performance measures, the
list's orders by arrival with their cursors, and retention."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.store import AuditAction, EntryNotFound, Finding, Sort, WorklistStore
from tests.store.conftest import Clock
from tests.store.factories import MODEL_5, T0, film, refused


def test_a_read_keeps_who_when_and_the_answer_it_judged(store: WorklistStore,
                                                         clock: Clock) -> None:
    # The leading film is the one of model 5 (triage score 0.99): its model and threshold.
    (entry,) = store.add_films([film("S", "S.1", 0.985, threshold=0.964, model_version="8"),
                                film("S", "S.2", 0.98, threshold=MODEL_5, model_version="5")])
    clock.advance(minutes=5)
    read = store.set_read(entry.id, "pneumonia", "dr.grey").read
    assert (read.finding, read.read_by, read.read_at) == (Finding.PNEUMONIA, "dr.grey",
                                                          clock.now)
    [judged] = store.judged_reads()
    assert (judged.entry_id, judged.model_group, judged.model_name, judged.model_version,
            judged.threshold) == (entry.id, "flagged", "pneumonia", "5", MODEL_5)
    assert store.entry(entry.id).read == read
    [record] = store.audit(entry_id=entry.id)
    assert (record.action, record.actor, record.detail) == (
        AuditAction.READ, "dr.grey", {"from": None, "to": "pneumonia"})


def test_a_read_is_changeable_and_each_change_audited(store: WorklistStore,
                                                      clock: Clock) -> None:
    (entry,) = store.add_films([film("S", probability=0.2)])
    store.set_read(entry.id, Finding.PNEUMONIA, "dr.grey")
    store.set_read(entry.id, Finding.PNEUMONIA, "dr.grey")  # the same again: nothing
    clock.advance(minutes=1)
    changed = store.set_read(entry.id, Finding.INDETERMINATE, "dr.house").read
    assert (changed.finding, changed.read_by) == (Finding.INDETERMINATE, "dr.house")
    details = [r.detail for r in store.audit(entry_id=entry.id)]
    assert details == [{"from": "pneumonia", "to": "indeterminate"},
                       {"from": None, "to": "pneumonia"}]
    [judged] = store.judged_reads()
    assert (judged.finding, judged.model_group) == (Finding.INDETERMINATE, "routine")


def test_a_study_no_model_judged_is_read_as_one(store: WorklistStore) -> None:
    (looked,) = store.add_films([film("L", probability=None, assessable=False,
                                      reasons=("rotated",), flagged=None)])
    (refusal,) = store.add_films([refused("R")])
    store.set_read(looked.id, "no_pneumonia", "dr.grey")
    store.set_read(refusal.id, "pneumonia", "dr.grey")
    judged = {r.entry_id: r for r in store.judged_reads()}
    assert (judged[looked.id].model_group, judged[looked.id].model_name) == (
        "needs_review", "pneumonia")
    assert (judged[refusal.id].model_group, judged[refusal.id].model_name) == (
        "needs_review", "pneumonia")  # the refused film still names the model that tried


def test_read_refuses_an_unknown_entry_or_finding(store: WorklistStore) -> None:
    (entry,) = store.add_films([film("S")])
    with pytest.raises(EntryNotFound):
        store.set_read(entry.id + 1, "pneumonia", "dr.grey")
    with pytest.raises(ValueError):
        store.set_read(entry.id, "probably", "dr.grey")
    with pytest.raises(ValueError):
        store.set_read(entry.id, "pneumonia", " ")
    assert store.audit() == []


def test_judged_reads_are_the_newest_since_a_moment(store: WorklistStore,
                                                    clock: Clock) -> None:
    ids = [store.add_films([film(f"W{n}")])[0].id for n in range(5)]
    for entry_id in ids:
        clock.advance(hours=1)
        store.set_read(entry_id, "no_pneumonia", "dr.grey")
    assert [r.entry_id for r in store.judged_reads(last=3)] == ids[:1:-1]
    since = T0 + timedelta(hours=4)
    assert [r.entry_id for r in store.judged_reads(since=since)] == ids[:2:-1]
    with pytest.raises(ValueError):
        store.judged_reads(last=0)


def test_the_list_pages_by_arrival_both_ways(store: WorklistStore) -> None:
    # Arrivals 0..6 minutes, two at minute 3 (ties go by id), priorities unrelated to them.
    uids = [f"A{n}" for n in range(7)]
    for n, uid in enumerate(uids):
        store.add_films([film(uid, probability=(n * 37 % 10) / 10, minutes=min(n, 3)
                              if n in (3, 4) else n)])
    for sort, expected in ((Sort.OLDEST, uids), (Sort.NEWEST, uids[::-1])):
        seen, cursor = [], None
        while True:
            page = store.entries(sort=sort, limit=3, cursor=cursor)
            seen += [e.study_instance_uid for e in page.entries]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected, sort
    assert [e.study_instance_uid for e in store.entries(sort=Sort.PRIORITY).entries] != uids


def test_retention_deletes_a_study_with_its_read(store: WorklistStore) -> None:
    (entry,) = store.add_films([film("old")])
    store.set_read(entry.id, "pneumonia", "dr.grey")
    store.purge(T0 + timedelta(days=31), retention_days=30, audit_retention_days=365)
    assert store.judged_reads() == []
