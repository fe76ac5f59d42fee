"""The DICOM node on the worklist store: its `commit` (the film's entry and its results'
delivery job, in one transaction) and its delivery JobSource (the store's deliveries table),
so that what the node answers as stored is committed, and an undelivered result survives a
crash or a restart."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app.dicom.delivery import Job
from app.dicom.failures import ResultsFailure
from app.dicom.ingest import IngestResult, NotStoredError
from app.services.intake import film_record
from app.services.observer import NO_METRICS, Observer
from app.store import FilmRecord, WorklistStore

log = logging.getLogger("app.dicom")


# The most films one transaction commits for the node (group commit, below): about 2 ms of
# CPU each in a group, so the last in line waits about a tenth of a second for the others.
GROUP_COMMIT_FILMS = 32


class StoreCommit:
    """`commit(result)` for the node's ingest: NotStoredError when the database did not take
    it (the door then answers Out of Resources, and the PACS retries). With `max_pending`
    results waiting for the PACS already, a film's results are not queued: it is listed
    with reason queue_full, and counted in `metrics` (the bound is checked before the
    transaction, so concurrent commits may pass it by a few). In `shadow_mode` (issue 31)
    no film's results are queued, so none can leave for the PACS: the film is listed with
    reason shadow_mode and counted as withheld.

    Group commit: the films whose associations wait for a commit while another commits are
    committed together, in one transaction, by the first of them to get its turn (up to
    GROUP_COMMIT_FILMS, in order of arrival, never two under one SOP Instance UID); each
    caller returns once its own film is committed, as before. Why: one transaction at a
    time may write a SQLite worklist, and each of a film's transactions took about 20 ms
    beside the associations' other work (7 ms of CPU): at 8 associations 5 of the 8
    C-STOREs were waiting for it and the node answered 31 films/s. When the database is
    unavailable, every film of the group fails at once (the PACS sends it again); when a
    group's transaction fails otherwise, each of its films is tried alone, so that one
    film's fault fails only that film (`_commit`).
    """

    def __init__(self, store: WorklistStore, thumbnails: bool = False,
                 max_pending: int | None = None, metrics: Observer = NO_METRICS,
                 shadow_mode: bool = False) -> None:
        self._store = store
        self._thumbnails = thumbnails
        self._max_pending = max_pending
        self._metrics = metrics
        self._shadow_mode = shadow_mode
        self._turn = threading.Condition()
        self._waiting: deque[_Pending] = deque()
        self._committing = False

    def __call__(self, result: IngestResult) -> str | None:
        """Commit `result`; the conflict the store found ("patient": listed in an entry of
        its own; "instance": the film stored before under its SOP Instance UID stands),
        whose results were not queued, or None."""
        sop = result.facts.sop_instance_uid
        try:
            results, refused = self._queueable(result)
            # Made here, in the caller's thread: a film's record (its thumbnail's PNG
            # encoding included) neither waits for the others nor fails them.
            record = replace(film_record(result.facts, result.source, result.received_at,
                                         result.scored_at, result.prediction, result.error,
                                         self._thumbnails),
                             patient_key=result.patient_key, content_hash=result.content_hash,
                             results_error=refused or result.results_error)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("%s not stored: %s", sop, type(exc).__name__)
            raise NotStoredError() from exc
        mine = _Pending(record, results)
        with self._turn:
            self._waiting.append(mine)
            while not mine.done:
                if self._committing:
                    self._turn.wait()
                    continue
                group = self._group()
                self._committing = True
                try:
                    self._turn.release()
                    try:
                        self._commit(group)
                    finally:
                        self._turn.acquire()
                finally:
                    self._committing = False
                    for pending in group:  # what _commit could not finish, if anything
                        if not pending.done:
                            pending.error, pending.done = NotStoredError(), True
                    self._turn.notify_all()
        if mine.error is not None:
            raise mine.error
        if refused == ResultsFailure.SHADOW_MODE:
            log.info("%s: results withheld: shadow mode", sop)
            self._metrics.results_withheld()
        elif refused is not None:
            log.warning("%s: results not queued: %d results wait for the PACS already",
                        sop, self._max_pending)
            self._metrics.results_failed(refused)
        return mine.conflict

    def _group(self) -> list[_Pending]:
        """The waiting films to commit together (the turn's lock held): in order of
        arrival, at most GROUP_COMMIT_FILMS, none under a SOP Instance UID taken already
        (that film waits for the next group, so the store decides between them as it does
        between two transactions)."""
        group: list[_Pending] = []
        uids: set[str] = set()
        for pending in list(self._waiting):
            if len(group) == GROUP_COMMIT_FILMS:
                break
            if pending.sop in uids:
                continue
            uids.add(pending.sop)
            group.append(pending)
            self._waiting.remove(pending)
        return group

    def _commit(self, group: list[_Pending]) -> None:
        """Commit `group` in one transaction. When the database is unavailable (locked
        past its busy timeout, its connection or disk failing: OperationalError, OSError)
        every film of it fails at once with NotStoredError, and the PACS sends it again;
        when the transaction fails otherwise (a constraint, or a bug that a film's data
        meets), each film is tried alone, so that the fault is that film's own. Never
        raises: every film of the group is done on return, with its conflict or an error
        of its own."""
        try:
            added = self._store.add_received(
                [pending.record for pending in group],
                results={sop: instances for pending in group
                         for sop, instances in (pending.results or {}).items()},
                entries=False)
        except Exception as exc:  # noqa: BLE001 - each film's caller gets its own error
            if len(group) > 1 and not isinstance(exc, _UNAVAILABLE):
                for pending in group:
                    self._commit([pending])
                return
            database = isinstance(exc, (SQLAlchemyError, OSError))
            if database:
                log.warning("%s not stored: %s", ", ".join(p.sop for p in group),
                            type(exc).__name__)
            with self._turn:
                for pending in group:
                    pending.error = _not_stored(exc) if database else exc
                    pending.done = True
        else:
            with self._turn:
                for pending in group:
                    conflict = added.conflicts.get(pending.sop)
                    pending.conflict = None if conflict is None else conflict.value
                    pending.done = True

    def _queueable(self, result: IngestResult) -> tuple[dict[str, list[bytes]] | None,
                                                        str | None]:
        """The delivery job to queue with the film (its results' recipe), or None and
        shadow_mode in shadow mode, or None and queue_full when `max_pending` results wait
        already."""
        if not result.results:
            return None, None
        if self._shadow_mode:
            return None, ResultsFailure.SHADOW_MODE.value
        if self._max_pending is not None \
                and self._store.pending_results() >= self._max_pending:
            return None, ResultsFailure.QUEUE_FULL.value
        return {result.facts.sop_instance_uid: list(result.results)}, None


# The database itself failing, not one film: no film of a group would fare better alone.
_UNAVAILABLE = (OperationalError, OSError)


def _not_stored(cause: BaseException) -> NotStoredError:
    error = NotStoredError()
    error.__cause__ = cause
    return error


class _Pending:
    """A film waiting for its group's commit, and, once `done`, its outcome."""

    def __init__(self, record: FilmRecord, results: dict[str, list[bytes]] | None) -> None:
        self.record, self.results = record, results
        self.sop = record.sop_instance_uid
        self.done = False
        self.conflict: str | None = None
        self.error: Exception | None = None


class StoreJobSource:
    """The DeliveryWorker's jobs from the store's deliveries table (leased, so that replicas
    share the work)."""

    def __init__(self, store: WorklistStore, lease_seconds: float = 120.0,
                 limit: int = 64) -> None:
        self._store = store
        self._lease = lease_seconds
        self._limit = limit  # jobs leased a pass

    def pending(self, now: datetime) -> Sequence[Job]:
        return [Job(d.id, d.instances, d.attempts, d.received_at)
                for d in self._store.due_deliveries(now, self._lease, self._limit)]

    def done(self, job: Job) -> None:
        self._store.delivery_done(int(job.id))

    def done_all(self, jobs: Sequence[Job]) -> None:
        self._store.deliveries_done([int(job.id) for job in jobs])

    def failed(self, job: Job, next_attempt: datetime, detail: str) -> None:
        self._store.delivery_failed(int(job.id), next_attempt, detail)

    def abandoned(self, job: Job, reason: str) -> None:
        self._store.delivery_abandoned(int(job.id), reason)
