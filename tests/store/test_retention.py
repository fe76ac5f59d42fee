"""Retention on both engines: what purge deletes and keeps, and the thread that runs it."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.store import AuditAction, PurgeCounts, RetentionThread, WorklistStore, upgrade
from app.store.models import Film, Study
from tests.store.conftest import Clock
from tests.store.factories import T0, film

DAY = 24 * 60  # minutes


def _films_without_study(store: WorklistStore) -> int:
    with Session(store.engine) as session:
        return session.scalar(select(func.count()).select_from(Film).where(
            Film.study_id.not_in(select(Study.id)))) or 0


def test_purge_deletes_entries_past_retention(store: WorklistStore, clock: Clock) -> None:
    store.add_films([film("old", "old.1"), film("old", "old.2")])  # T0
    store.add_films([film("late", "late.1")])  # T0, and a film 20 days later
    store.add_films([film("late", "late.2", minutes=20 * DAY)])
    store.add_films([film("recent", minutes=5 * DAY)])
    counts = store.purge(T0 + timedelta(days=31), retention_days=30, audit_retention_days=365)
    assert counts == PurgeCounts(entries=1, films=2, audit_records=0)
    assert sorted(e.study_instance_uid for e in store.entries().entries) == ["late", "recent"]
    assert _films_without_study(store) == 0
    [record] = store.audit()
    assert (record.action, record.actor, record.detail["entries"]) == (
        AuditAction.PURGED, "retention", 1)


def test_purge_leaves_nothing_in_sqlite_files(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'worklist.db'}"
    upgrade(url)
    store = WorklistStore(url)
    store.add_films([film("2.25.777", accession_number="ZQXACC77", body_part="ZQXPART")])
    store.purge(T0 + timedelta(days=31), 30, 365)
    # read while the store is open: closing its last connection would checkpoint anyway
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("worklist.db*"))
    store.close()
    assert b"ZQXACC77" not in stored and b"ZQXPART" not in stored and b"2.25.777" not in stored


def test_purge_keeps_audit_records_for_their_own_period(store: WorklistStore,
                                                        clock: Clock) -> None:
    [entry] = store.add_films([film("A")])
    store.set_status(entry.id, "reported", "dr. a")  # at T0
    clock.advance(days=200)
    store.record("dr. b", "exported")
    # the entry goes after 30 days; its audit record stays, naming it
    assert store.purge(T0 + timedelta(days=31), 30, 365).entries == 1
    assert AuditAction.STATUS_CHANGED in {r.action for r in store.audit(entry_id=entry.id)}
    # a year on, the status change (T0) goes; the export (day 200) and the purge (day 31) stay
    counts = store.purge(T0 + timedelta(days=366), 30, 365)
    assert counts == PurgeCounts(entries=0, films=0, audit_records=1)
    assert [r.action for r in store.audit()] == [
        AuditAction.PURGED, AuditAction.PURGED, AuditAction.EXPORTED]


def test_purge_with_nothing_to_delete_writes_no_record(store: WorklistStore) -> None:
    store.add_films([film("A")])
    assert store.purge(T0 + timedelta(days=1), 30, 365) == PurgeCounts(0, 0, 0)
    assert store.audit() == []


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_retention_thread_purges_and_stops_at_once(store: WorklistStore) -> None:
    store.add_films([film("A")])
    thread = RetentionThread(store, retention_days=30, audit_retention_days=365,
                             every_minutes=60, clock=lambda: T0 + timedelta(days=40))
    thread.start()
    _wait_for(lambda: thread.passes >= 1)
    started = time.monotonic()
    thread.stop()
    assert time.monotonic() - started < 5  # not the hour's wait
    assert store.entries().total == 0


def test_retention_thread_survives_failure_and_logs_no_detail(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    broken = WorklistStore(f"sqlite:///{tmp_path / 'missing' / 'worklist.db'}")
    thread = RetentionThread(broken, retention_days=30, audit_retention_days=365,
                             every_minutes=1 / 600)  # every 0.1 s
    with caplog.at_level(logging.ERROR, logger="app.store.retention"):
        thread.start()
        _wait_for(lambda: thread.passes >= 2)
        thread.stop()
    assert "retention failed (OperationalError)" in caplog.text
    assert "missing" not in caplog.text
