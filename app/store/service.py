"""WorklistStore: the store's one entry point for the web layer, the DICOM node and tools.

Synchronous (the routes call it from worker threads). Every method is one transaction,
committed before it returns: what it says it stored is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.store import deliveries, queries, writes
from app.store.engine import for_writing, make_engine
from app.store.models import ACTOR_LENGTH, AuditLog, Film
from app.store.records import (
    AuditAction,
    AuditRecord,
    Conflict,
    EntryNotFound,
    FilmRecord,
    FilmResult,
    Finding,
    JudgedRead,
    Page,
    PurgeCounts,
    Sort,
    Status,
    StudyEntry,
)
from app.store.schema import schema_problem

MAX_PAGE = 500
# PostgreSQL's deadlock_detected and serialization_failure: the transaction is retried.
_RETRY_SQLSTATES = {"40P01", "40001"}
_ATTEMPTS = 3


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Added:
    """What `WorklistStore.add_received` stored: the entries, and the films that were
    conflicts (SOP Instance UID -> why)."""

    entries: list[StudyEntry]
    conflicts: dict[str, Conflict]


class WorklistStore:
    """The worklist in the database at `url` (see app.store.engine.database_url).

    The schema must be at head (app.store.upgrade); `schema_problem()` says when it is not.
    `clock` gives the time of status changes and audit records (aware datetimes).
    """

    def __init__(self, url: str, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.engine: Engine = make_engine(url)
        self._writer = for_writing(self.engine)
        self._clock = clock

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def schema_problem(self) -> str | None:
        """None when the database is reachable and at the code's head, else a short reason."""
        return schema_problem(self.engine)

    def add_films(self, records: Sequence[FilmRecord],
                  results: Mapping[str, Sequence[bytes]] | None = None) -> list[StudyEntry]:
        """Store films' results; their studies' entries (each with all its films so far), one
        per study, in order of first appearance. A film whose SOP Instance UID is stored
        already is left as it was (idempotent, also across processes). `results` (SOP
        Instance UID -> DICOM Part 10 instances for the PACS) are queued for delivery in the
        same transaction. Committed on return. `add_received` also says which films were
        conflicts.
        """
        return self.add_received(records, results).entries

    def add_received(self, records: Sequence[FilmRecord],
                     results: Mapping[str, Sequence[bytes]] | None = None, *,
                     entries: bool = True) -> Added:
        """`add_films`, and the films that were not taken as what their UIDs say
        (app/store/writes.py `add_films`): a film of another patient than its study's is
        listed in an entry of its own (status conflict), one whose SOP Instance UID is
        stored with other pixels or in another study is not stored; neither has its
        `results` queued, so nothing reaches the PACS under another film's identity.
        With `entries=False` the entries are not read back (`Added.entries` is empty): the
        DICOM node needs only the conflicts, and reading a study's films back was a sixth
        of its commit's time.
        """
        if not records:
            return Added([], {})
        for attempt in range(_ATTEMPTS):
            try:
                with self._write() as session:
                    ids, conflicts = writes.add_films(session, records)
                    kept = {sop: instances for sop, instances in (results or {}).items()
                            if sop not in conflicts}
                    deliveries.queue(session, writes.insert_for(session), kept,
                                     self._clock())
                    return Added(queries.by_ids(session.connection(), ids) if entries
                                 else [], conflicts)
            except OperationalError as exc:
                sqlstate = getattr(exc.orig, "sqlstate", None)
                if sqlstate not in _RETRY_SQLSTATES or attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def entries(self, *, status: Status | str | None = None,
                received_from: datetime | None = None, received_to: datetime | None = None,
                limit: int = 50, offset: int = 0, cursor: str | None = None,
                sort: Sort | str = Sort.PRIORITY) -> Page:
        """A page of the list in priority order (app/store/priority.py), or by arrival
        (`sort`), with the total the filters match. `received_from` <= first film's arrival
        < `received_to` (aware). Page on with `offset` or with the previous page's
        `next_cursor` (stable while entries arrive; a cursor continues the order it was
        written in). Raises ValueError for a bad status, sort, limit (1..MAX_PAGE) or
        offset, InvalidCursor (a ValueError) for a cursor this store did not write.
        """
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise ValueError(f"limit must lie in 1..{MAX_PAGE} and offset be >= 0")
        if any(moment is not None and moment.tzinfo is None
               for moment in (received_from, received_to)):
            raise ValueError("received_from and received_to must be aware datetimes")
        status = None if status is None else Status(status)
        with self.engine.connect() as connection:
            return queries.page(connection, status=status, received_from=received_from,
                                received_to=received_to, limit=limit, offset=offset,
                                cursor=cursor, sort=Sort(sort))

    def entry(self, entry_id: int) -> StudyEntry:
        """One entry with its films. Raises EntryNotFound."""
        with self.engine.connect() as connection:
            found = queries.by_ids(connection, [entry_id])
        if not found:
            raise EntryNotFound(entry_id)
        return found[0]

    def thumbnail(self, film_id: int) -> bytes | None:
        """A film's thumbnail PNG, or None (none stored, or no such film)."""
        with Session(self.engine) as session:
            return session.scalar(select(Film.thumbnail).where(Film.id == film_id))

    def film(self, film_id: int) -> FilmResult | None:
        """One stored film as the list shows it, or None."""
        with self.engine.connect() as connection:
            return queries.film_by_id(connection, film_id)

    def display(self, film_id: int) -> bytes | None:
        """A film at display size, as the model saw it (a PNG), or None (none kept, or no
        such film)."""
        with Session(self.engine) as session:
            return session.scalar(select(Film.display).where(Film.id == film_id))

    def set_read(self, entry_id: int, finding: Finding | str, actor: str) -> StudyEntry:
        """Give or change a study's read, by `actor`, now (app/store/writes.py set_read):
        an audit record in the same transaction, none when the finding is the one it has.
        Raises EntryNotFound, ValueError for an unknown finding or an empty actor."""
        finding, actor = Finding(finding), _actor(actor)
        with self._write() as session:
            writes.set_read(session, entry_id, finding, actor, self._clock())
            return queries.by_ids(session.connection(), [entry_id])[0]

    def judged_reads(self, *, since: datetime | None = None,
                     last: int = 500) -> list[JudgedRead]:
        """The newest `last` reads (at least 1) given at or after `since` (aware, or None),
        newest first, each with the model's answer it judged. Raises ValueError."""
        if last < 1 or (since is not None and since.tzinfo is None):
            raise ValueError("last must be at least 1 and since an aware datetime")
        with self.engine.connect() as connection:
            return queries.judged_reads(connection, since=since, last=last)

    def set_status(self, entry_id: int, status: Status | str, actor: str) -> StudyEntry:
        """Set an entry's status, by `actor`, now; an audit record in the same transaction.
        Raises EntryNotFound, ValueError for an unknown status or an empty actor."""
        status, actor = Status(status), _actor(actor)
        with self._write() as session:
            writes.set_status(session, entry_id, status, actor, self._clock())
            return queries.by_ids(session.connection(), [entry_id])[0]

    def record(self, actor: str, action: AuditAction | str, entry_id: int | None = None,
               detail: dict[str, Any] | None = None) -> AuditRecord:
        """Append an audit record of an `opened` or `exported` action (entry_id None: the
        list, `detail` e.g. its filters). Status changes are recorded by set_status only.
        Raises EntryNotFound, ValueError for another action or an empty actor."""
        action = AuditAction(action)
        if action not in (AuditAction.OPENED, AuditAction.EXPORTED):
            raise ValueError(f"record() appends opened or exported, not {action.value}")
        with self._write() as session:
            row = writes.append_audit(session, _actor(actor), action, entry_id, detail,
                                      self._clock())
            return _to_audit(row)

    def record_settings(self, action: AuditAction | str, detail: dict[str, Any],
                        actor: str = "settings") -> AuditRecord:
        """Append an audit record of a setting that changes what the server does with films
        (`intended_use`: the site's intended ages; `shadow_mode`: results kept from
        clinicians and the PACS, or no longer; `site_profile`: the site's operating point
        adopted or reverted), by `actor` ("settings": the server at start). Raises
        ValueError for another action or an empty actor."""
        action = AuditAction(action)
        if action not in (AuditAction.INTENDED_USE, AuditAction.SHADOW_MODE,
                          AuditAction.SITE_PROFILE):
            raise ValueError("record_settings() appends intended_use, shadow_mode or "
                             f"site_profile, not {action.value}")
        with self._write() as session:
            return _to_audit(writes.append_audit(session, _actor(actor), action, None, detail,
                                                 self._clock()))

    def last_record(self, action: AuditAction | str) -> AuditRecord | None:
        """The newest audit record of `action`, or None."""
        query = (select(AuditLog).where(AuditLog.action == AuditAction(action).value)
                 .order_by(AuditLog.id.desc()).limit(1))
        with Session(self.engine) as session:
            row = session.scalar(query)
            return None if row is None else _to_audit(row)

    def audit(self, *, entry_id: int | None = None, limit: int = 100,
              before_id: int | None = None,
              action: AuditAction | str | None = None) -> list[AuditRecord]:
        """Audit records, newest first: all, or one entry's, or one action's; `before_id`
        pages on."""
        query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
        if entry_id is not None:
            query = query.where(AuditLog.entry_id == entry_id)
        if action is not None:
            query = query.where(AuditLog.action == AuditAction(action).value)
        if before_id is not None:
            query = query.where(AuditLog.id < before_id)
        with Session(self.engine) as session:
            return [_to_audit(row) for row in session.scalars(query)]

    def purge(self, now: datetime, retention_days: float,
              audit_retention_days: float) -> PurgeCounts:
        """Delete entries (with their films) whose last film arrived more than
        `retention_days` before `now`, and audit records older than `audit_retention_days`.
        What was deleted; a pass that deletes anything appends a `purged` audit record."""
        with self._write() as session:
            counts = writes.purge(session, now, retention_days, audit_retention_days)
        if counts.entries:
            self._checkpoint()
        return counts

    def _checkpoint(self) -> None:
        """SQLite: deleted rows are overwritten in the file (secure_delete), but their old
        pages stay in the WAL file until a checkpoint copies the new ones back and the log
        is truncated; best effort (a reader in the middle of a transaction keeps some for
        now, until the next one). PostgreSQL frees them at its next (auto)vacuum."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def due_deliveries(self, now: datetime, lease_seconds: float = 120.0,
                       limit: int = 20) -> list[deliveries.PendingDelivery]:
        """Results due for delivery at `now` (aware), leased for `lease_seconds`."""
        with self._write() as session:
            return deliveries.lease_due(session, now, timedelta(seconds=lease_seconds), limit)

    def delivery_done(self, delivery_id: int) -> None:
        """Delivered: the results leave the database, and (SQLite) its write-ahead log."""
        with self._write() as session:
            deliveries.done(session, delivery_id)
        self._checkpoint()

    def deliveries_done(self, delivery_ids: Sequence[int]) -> None:
        """`delivery_done` for several at once: one transaction and one checkpoint (a
        checkpoint a job cost the node's commits the write lock at every delivery)."""
        if not delivery_ids:
            return
        with self._write() as session:
            deliveries.done_all(session, delivery_ids)
        self._checkpoint()

    def delivery_abandoned(self, delivery_id: int, reason: str) -> None:
        """Never deliverable (its results cannot be built): the job leaves the database as
        a delivered one does, its film keeps `reason` (app/dicom/failures.py)."""
        with self._write() as session:
            deliveries.abandoned(session, delivery_id, reason)
        self._checkpoint()

    def delivery_failed(self, delivery_id: int, next_attempt: datetime, detail: str) -> None:
        """One more failed attempt; due again at `next_attempt`, `detail` saying why."""
        with self._write() as session:
            deliveries.failed(session, delivery_id, next_attempt, detail)

    def status_counts(self) -> dict[Status, int]:
        """Entries per status (every status, 0 when none): for GET /metrics."""
        with self.engine.connect() as connection:
            return queries.status_counts(connection)

    def pending_results(self) -> int:
        """Films whose results have not reached the PACS yet: for GET /metrics."""
        with Session(self.engine) as session:
            return deliveries.pending_count(session)

    def undelivered(self, study_ids: Sequence[int] | None = None
                    ) -> dict[int, deliveries.Undelivered]:
        """Entry id -> its results not yet delivered (for the page, metrics, alerts)."""
        with Session(self.engine) as session:
            return deliveries.undelivered(session, study_ids)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        # expire_on_commit=False: read models are built before the commit and stay usable
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session


def _actor(actor: str) -> str:
    actor = actor.strip()
    if not actor:
        raise ValueError("an audited action needs an actor")
    return actor[:ACTOR_LENGTH]


def _to_audit(row: AuditLog) -> AuditRecord:
    return AuditRecord(id=row.id, at=row.at, actor=row.actor, action=AuditAction(row.action),
                       entry_id=row.entry_id, study_instance_uid=row.study_instance_uid,
                       detail=row.detail)
