"""The node's group commit (app/dicom/store_adapter.py StoreCommit): films whose
associations wait while another film commits are committed together, each caller answered
only once its own film is committed; never two films under one SOP Instance UID in a group;
a group that fails is tried film by film, so that one film's fault fails only that film,
and a database that is unavailable fails the group at once; every caller gets its own
outcome and none is left waiting.
On both of the store's databases (tests/store/conftest.py `store`)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from app.contract.identifiers import InstanceFacts
from app.dicom.ingest import IngestResult, NotStoredError
from app.dicom.store_adapter import GROUP_COMMIT_FILMS, StoreCommit
from app.store import WorklistStore

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CR = "1.2.840.10008.5.1.4.1.1.1"


def _result(study: str, sop: str, content_hash: str = "a" * 64) -> IngestResult:
    facts = InstanceFacts(study_instance_uid=study, series_instance_uid=f"{study}.9",
                          sop_instance_uid=sop, sop_class_uid=CR)
    return IngestResult(facts=facts, source="dicom:MODALITY", received_at=NOW,
                        scored_at=None, prediction=None, error=None,
                        results=(f"recipe of {sop}".encode(),), content_hash=content_hash)


class HeldStore:
    """The real store, its first `add_received` held until `release` is set; the SOP
    Instance UIDs of each call, in order. `poison`: a SOP Instance UID whose transaction
    breaks a constraint; `broken`: one whose transaction meets a bug; `unavailable`: the
    database fails every call after the first (a lock held past the busy timeout)."""

    def __init__(self, store: WorklistStore, poison: str | None = None,
                 broken: str | None = None, unavailable: bool = False) -> None:
        self._store = store
        self.calls: list[list[str]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self._poison, self._broken, self._unavailable = poison, broken, unavailable

    def __getattr__(self, name):
        return getattr(self._store, name)

    def add_received(self, records, results=None, **options):
        sops = [record.sop_instance_uid for record in records]
        self.calls.append(sops)
        if len(self.calls) == 1:
            self.entered.set()
            self.release.wait()
        if self._unavailable and len(self.calls) > 1:
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        if self._poison in sops:
            raise IntegrityError("INSERT", {}, Exception("CHECK constraint failed"))
        if self._broken in sops:
            raise ValueError("a bug")
        return self._store.add_received(records, results, **options)


def _commit_all(commit: StoreCommit, held: HeldStore, first: IngestResult,
                waiting: list[IngestResult]) -> dict[str, object]:
    """`first` committed while `waiting` arrive (each in a thread of its own, as the
    associations are) and wait behind it; each film's outcome: its conflict or its error."""
    outcomes: dict[str, object] = {}

    def call(result: IngestResult, key: str) -> None:
        try:
            outcomes[key] = commit(result)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[key] = exc

    threads = [threading.Thread(target=call, args=(first, "first"))]
    threads[0].start()
    held.entered.wait()
    for number, result in enumerate(waiting):
        thread = threading.Thread(target=call, args=(result, str(number)))
        thread.start()
        threads.append(thread)
    while len(commit._waiting) < len(waiting):  # each behind the first, in the line
        time.sleep(0.001)
    held.release.set()
    for thread in threads:
        thread.join()
    return outcomes


def test_films_that_wait_for_a_commit_are_committed_together(store):
    held = HeldStore(store)
    commit = StoreCommit(held)
    waiting = [_result(f"1.2.{n}", f"1.2.{n}.1") for n in range(2, 7)]
    outcomes = _commit_all(commit, held, _result("1.2.1", "1.2.1.1"), waiting)
    assert outcomes == {"first": None, **{str(n): None for n in range(5)}}
    assert held.calls[0] == ["1.2.1.1"]
    assert sorted(held.calls[1]) == [f"1.2.{n}.1" for n in range(2, 7)]
    assert len(held.calls) == 2
    # Each film committed, its results queued with it.
    assert store.pending_results() == 6
    assert sorted(entry.study_instance_uid for entry in store.entries().entries) == \
        [f"1.2.{n}" for n in range(1, 7)]


def test_a_group_holds_at_most_group_commit_films(store):
    held = HeldStore(store)
    commit = StoreCommit(held)
    waiting = [_result(f"1.3.{n}", f"1.3.{n}.1") for n in range(GROUP_COMMIT_FILMS + 3)]
    outcomes = _commit_all(commit, held, _result("1.3.99", "1.3.99.1"), waiting)
    assert set(outcomes.values()) == {None}
    assert [len(call) for call in held.calls] == [1, GROUP_COMMIT_FILMS, 3]
    assert store.pending_results() == GROUP_COMMIT_FILMS + 4


def test_two_films_under_one_sop_instance_uid_are_never_in_one_group(store):
    # Other pixels under a UID: the film first committed stands, with its results; the
    # other is an instance conflict, as when the two came one after the other.
    held = HeldStore(store)
    commit = StoreCommit(held)
    kept = _result("1.4.1", "1.4.1.1", content_hash="a" * 64)
    other = _result("1.4.1", "1.4.1.1", content_hash="b" * 64)
    outcomes = _commit_all(commit, held, _result("1.4.0", "1.4.0.1"), [kept, other])
    assert [len(call) for call in held.calls] == [1, 1, 1]
    assert sorted(map(str, outcomes.values())) == ["None", "None", "instance"]
    assert store.pending_results() == 2  # the first film's, and one under 1.4.1.1


def test_a_group_one_film_breaks_is_committed_film_by_film(store):
    held = HeldStore(store, poison="1.5.2.1")
    commit = StoreCommit(held)
    waiting = [_result(f"1.5.{n}", f"1.5.{n}.1") for n in (2, 3, 4)]
    outcomes = _commit_all(commit, held, _result("1.5.1", "1.5.1.1"), waiting)
    assert outcomes["first"] is None
    assert outcomes["1"] is None and outcomes["2"] is None
    assert isinstance(outcomes["0"], NotStoredError)  # the PACS will send it again
    assert isinstance(outcomes["0"].__cause__, IntegrityError)
    assert sorted(entry.study_instance_uid for entry in store.entries().entries) == \
        ["1.5.1", "1.5.3", "1.5.4"]
    assert store.pending_results() == 3


def test_a_bug_one_film_meets_fails_only_that_film(store):
    held = HeldStore(store, broken="1.6.2.1")
    commit = StoreCommit(held)
    waiting = [_result(f"1.6.{n}", f"1.6.{n}.1") for n in (2, 3)]
    outcomes = _commit_all(commit, held, _result("1.6.1", "1.6.1.1"), waiting)
    assert outcomes["first"] is None and outcomes["1"] is None
    assert isinstance(outcomes["0"], ValueError)
    assert commit(_result("1.6.5", "1.6.5.1")) is None  # the next film commits as ever
    assert sorted(entry.study_instance_uid for entry in store.entries().entries) == \
        ["1.6.1", "1.6.3", "1.6.5"]


def test_each_film_s_fault_stays_its_own_when_a_group_has_two(store):
    # The group fails on the first film's constraint; tried alone, the next meets a bug:
    # each caller gets its own outcome, the films after them are committed, none waits.
    held = HeldStore(store, poison="1.8.2.1", broken="1.8.3.1")
    commit = StoreCommit(held)
    waiting = [_result(f"1.8.{n}", f"1.8.{n}.1") for n in (2, 3, 4)]
    outcomes = _commit_all(commit, held, _result("1.8.1", "1.8.1.1"), waiting)
    assert isinstance(outcomes["0"], NotStoredError)
    assert isinstance(outcomes["1"], ValueError)
    assert outcomes["first"] is None and outcomes["2"] is None
    assert not commit._waiting
    assert sorted(entry.study_instance_uid for entry in store.entries().entries) == \
        ["1.8.1", "1.8.4"]


def test_a_caller_whose_film_is_left_out_of_its_group_gets_its_own_outcome(store,
                                                                          monkeypatch):
    # Groups of two: whichever caller leads next commits the first two waiting; when
    # that is the third film's caller, it must not take the group's outcome for its own.
    import app.dicom.store_adapter as adapter

    monkeypatch.setattr(adapter, "GROUP_COMMIT_FILMS", 2)
    held = HeldStore(store, broken="1.9.2.1")
    commit = StoreCommit(held)
    waiting = [_result(f"1.9.{n}", f"1.9.{n}.1") for n in (2, 3, 4)]
    outcomes = _commit_all(commit, held, _result("1.9.1", "1.9.1.1"), waiting)
    assert isinstance(outcomes["0"], ValueError)
    assert outcomes["first"] is None and outcomes["1"] is None and outcomes["2"] is None
    assert not commit._waiting
    assert sorted(entry.study_instance_uid for entry in store.entries().entries) == \
        ["1.9.1", "1.9.3", "1.9.4"]


def test_a_database_unavailable_fails_the_group_at_once(store):
    # No film would fare better alone: each caller gets a NotStoredError of its own at
    # once (the PACS sends it again), not one busy timeout after another.
    held = HeldStore(store, unavailable=True)
    commit = StoreCommit(held)
    waiting = [_result(f"1.10.{n}", f"1.10.{n}.1") for n in (2, 3, 4)]
    outcomes = _commit_all(commit, held, _result("1.10.1", "1.10.1.1"), waiting)
    assert outcomes["first"] is None
    errors = [outcomes[key] for key in ("0", "1", "2")]
    assert all(isinstance(error, NotStoredError) for error in errors)
    assert all(isinstance(error.__cause__, OperationalError) for error in errors)
    assert len({id(error) for error in errors}) == 3
    assert [len(call) for call in held.calls] == [1, 3]


@pytest.mark.parametrize("shadow_mode", [False, True])
def test_a_film_alone_commits_at_once(store, shadow_mode):
    commit = StoreCommit(store, shadow_mode=shadow_mode)
    assert commit(_result("1.7.1", "1.7.1.1")) is None
    assert store.pending_results() == (0 if shadow_mode else 1)
