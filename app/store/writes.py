"""Writing the list: films in (idempotent, also across processes), statuses, audit, retention.

Every function here runs inside the caller's transaction and commits nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.store.models import LONG, SHORT, AuditLog, Film, Study
from app.store.priority import Group, summarise
from app.store.records import (
    AuditAction,
    EntryNotFound,
    FilmRecord,
    PurgeCounts,
    Status,
)

_STUDY_FIELDS = ("accession_number", "patient_age", "patient_sex", "study_date", "study_time")
# Column lengths (DICOM's own limits for its values): a longer value is cut rather than
# refusing the film's result. UIDs are never cut (FilmRecord refuses them): that would merge
# two studies.
_LIMITS = {**dict.fromkeys(("accession_number", "patient_age", "patient_sex", "modality",
                            "view_position", "body_part", "model_version"), SHORT),
           **dict.fromkeys(("source", "model_name", "error_code"), LONG)}


def add_films(session: Session, records: Sequence[FilmRecord]) -> list[int]:
    """Store `records`; the ids of the studies that hold their films, in order of first
    appearance (a film stored before under another study stays there).

    Each study row is inserted if missing, then locked (FOR UPDATE on PostgreSQL; SQLite's
    BEGIN IMMEDIATE has already locked the database), so that its priority is recomputed
    from every committed film while no other transaction adds one. Studies are taken in UID
    order so that two transactions never wait for each other in opposite orders.
    """
    by_study: dict[str, list[FilmRecord]] = {}
    for record in records:
        by_study.setdefault(record.study_instance_uid, []).append(_cut(record))
    for uid in sorted(by_study):
        _add_study(session, by_study[uid])
    sops = [record.sop_instance_uid for record in records]
    holder = dict(session.execute(select(Film.sop_instance_uid, Film.study_id)
                                  .where(Film.sop_instance_uid.in_(sops))).all())
    return list(dict.fromkeys(holder[sop] for sop in sops))


def _add_study(session: Session, records: list[FilmRecord]) -> None:
    uid = records[0].study_instance_uid
    insert = insert_for(session)
    first = min(records, key=lambda record: record.received_at)
    study_id = None
    while study_id is None:  # a retention pass may delete the row between the two statements
        session.execute(insert(Study).values(
            study_instance_uid=uid, source=first.source, received_at=first.received_at,
            last_received_at=first.received_at, status=Status.NEW.value, flagged=False,
            film_count=0, sort_group=int(Group.NEEDS_REVIEW), sort_rank=1.0,
            **{name: getattr(first, name) for name in _STUDY_FIELDS},
        ).on_conflict_do_nothing(index_elements=["study_instance_uid"]))
        study_id = session.scalar(
            select(Study.id).where(Study.study_instance_uid == uid).with_for_update())
    session.execute(insert(Film).on_conflict_do_nothing(index_elements=["sop_instance_uid"]),
                    [_film_row(study_id, record) for record in records])
    _recompute(session, study_id, records)


def _recompute(session: Session, study_id: int, records: list[FilmRecord]) -> None:
    films = session.execute(select(
        Film.probability, Film.threshold, Film.flagged, Film.assessable, Film.error_code,
        Film.view_position, Film.received_at).where(Film.study_id == study_id)).all()
    if not films:  # every film was stored before, under another study: no empty entry
        session.execute(delete(Study).where(Study.id == study_id))
        return
    summary = summarise(films)
    # Study-level attributes missing so far are taken from these films.
    known = {name: func.coalesce(getattr(Study, name), value) for name in _STUDY_FIELDS
             if (value := next((getattr(r, name) for r in records if getattr(r, name)), None))}
    session.execute(update(Study).where(Study.id == study_id).values(
        priority=summary.priority, triage_score=summary.triage_score, flagged=summary.flagged,
        film_count=summary.film_count, sort_group=int(summary.group), sort_rank=summary.rank,
        received_at=min(film.received_at for film in films),
        last_received_at=max(film.received_at for film in films), **known))


def _film_row(study_id: int, record: FilmRecord) -> dict[str, Any]:
    row = asdict(record)
    for name in ("study_instance_uid", *_STUDY_FIELDS):
        del row[name]
    row.update(study_id=study_id, reasons=list(record.reasons), warnings=list(record.warnings))
    return row


def _cut(record: FilmRecord) -> FilmRecord:
    values = {name: value[:limit] for name, limit in _LIMITS.items()
              if isinstance(value := getattr(record, name), str) and len(value) > limit}
    return replace(record, **values) if values else record


def insert_for(session: Session) -> Any:
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING."""
    name = session.get_bind().dialect.name
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[name]


def set_status(session: Session, entry_id: int, status: Status, actor: str,
               now: datetime) -> None:
    """Change the status, with who and when, and append its audit record.

    Raises EntryNotFound.
    """
    study = session.scalar(select(Study).where(Study.id == entry_id).with_for_update())
    if study is None:
        raise EntryNotFound(entry_id)
    before = study.status
    study.status, study.status_by, study.status_at = status.value, actor, now
    session.add(AuditLog(at=now, actor=actor, action=AuditAction.STATUS_CHANGED.value,
                         entry_id=entry_id, study_instance_uid=study.study_instance_uid,
                         detail={"from": before, "to": status.value}))
    session.flush()  # the caller reads the entry back with Core, past the ORM's pending state


def append_audit(session: Session, actor: str, action: AuditAction, entry_id: int | None,
                 detail: dict[str, Any] | None, now: datetime) -> AuditLog:
    """Append one audit record. Raises EntryNotFound when `entry_id` names no entry."""
    study_uid = None
    if entry_id is not None:
        study_uid = session.scalar(
            select(Study.study_instance_uid).where(Study.id == entry_id))
        if study_uid is None:
            raise EntryNotFound(entry_id)
    record = AuditLog(at=now, actor=actor, action=action.value, entry_id=entry_id,
                      study_instance_uid=study_uid, detail=detail)
    session.add(record)
    session.flush()  # its id
    return record


def purge(session: Session, now: datetime, retention_days: float,
          audit_retention_days: float) -> PurgeCounts:
    """Delete entries whose last film arrived before now - retention_days (their films go
    with them, by the foreign key's cascade, in the same statement), and audit records
    older than now - audit_retention_days. A pass that deletes anything is itself audited."""
    entries_before = now - timedelta(days=retention_days)
    audit_before = now - timedelta(days=audit_retention_days)
    deleted = session.execute(delete(Study).where(Study.last_received_at < entries_before)
                              .returning(Study.film_count)).scalars().all()
    audit = session.execute(delete(AuditLog).where(AuditLog.at < audit_before)).rowcount
    counts = PurgeCounts(entries=len(deleted), films=sum(deleted), audit_records=audit)
    if counts.entries or counts.audit_records:
        session.add(AuditLog(at=now, actor="retention", action=AuditAction.PURGED.value,
                             detail={**asdict(counts),
                                     "entries_before": entries_before.isoformat(),
                                     "audit_before": audit_before.isoformat()}))
    return counts
