"""Writing the list: films in (idempotent, also across processes), statuses, audit, retention.

Every function here runs inside the caller's transaction and commits nothing itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.store.models import LONG, SHORT, AuditLog, Film, Study, StudyRead
from app.store.priority import Group, leading, summarise
from app.store.records import (
    AuditAction,
    Conflict,
    EntryNotFound,
    FilmRecord,
    Finding,
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


def add_films(session: Session, records: Sequence[FilmRecord]
              ) -> tuple[list[int], dict[str, Conflict]]:
    """Store `records`; the ids of the studies that hold their films, in order of first
    appearance (a film stored before under another study stays there), and the films that
    were not taken as what their UIDs say (SOP Instance UID -> Conflict):

    - a film whose patient key differs from the one its study was first seen with is stored
      in an entry of its own (status conflict, `conflict_study_uid`), never merged;
    - a film whose SOP Instance UID is stored already with other pixels (content hash) or in
      another study is not stored again: the stored film stands.

    Each study row is inserted if missing (with its first film's patient key), then locked
    (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE has already locked the database),
    so that its key and its priority are read and recomputed while no other transaction
    adds a film; the films' unique SOP Instance UID decides which of two concurrent films
    under one UID is stored, and each transaction reads back the one that was. Studies are
    taken in UID order (a conflict entry right after its study) so that two transactions
    never wait for each other in opposite orders.
    """
    by_study: dict[str, list[FilmRecord]] = {}
    for record in records:
        by_study.setdefault(record.study_instance_uid, []).append(_cut(record))
    conflicts: dict[str, Conflict] = {}
    for uid in sorted(by_study):
        _add_study(session, by_study[uid], conflicts)
    sops = [record.sop_instance_uid for record in records]
    holder = dict(session.execute(select(Film.sop_instance_uid, Film.study_id)
                                  .where(Film.sop_instance_uid.in_(sops))).all())
    return list(dict.fromkeys(holder[sop] for sop in sops)), conflicts


def conflict_study_uid(study_uid: str, patient_key: str) -> str:
    """The Study Instance UID of the entry that lists another patient's films under
    `study_uid`: under the UUID-derived root 2.25 (PS3.5 B.2), the same for every replica."""
    digest = hashlib.sha256(f"conflict\x00{study_uid}\x00{patient_key}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _add_study(session: Session, records: list[FilmRecord],
               conflicts: dict[str, Conflict]) -> None:
    uid = records[0].study_instance_uid
    study_id, key = _locked_study(session, uid, records, Status.NEW, None)
    if key is None:  # stored before patient keys were kept: the first key seen is its own
        key = next((record.patient_key for record in records if record.patient_key), None)
        if key is not None:
            session.execute(update(Study).where(Study.id == study_id).values(patient_key=key))
    targets: dict[int, list[FilmRecord]] = {study_id: []}
    apart: dict[str, list[FilmRecord]] = {}
    for record in records:
        if key is None or record.patient_key in (None, key):
            targets[study_id].append(record)
        else:
            apart.setdefault(record.patient_key, []).append(record)  # type: ignore[arg-type]
    moved: set[str] = set()
    for patient, theirs in apart.items():
        entry_id, _ = _locked_study(session, conflict_study_uid(uid, patient), theirs,
                                    Status.CONFLICT, uid)
        targets[entry_id] = theirs
        moved |= {record.sop_instance_uid for record in theirs}
    for target, theirs in targets.items():
        if theirs:
            session.execute(
                insert_for(session)(Film).on_conflict_do_nothing(
                    index_elements=["sop_instance_uid"]),
                [_film_row(target, record) for record in theirs])
            _read_back(session, target, theirs, conflicts)
        _recompute(session, target, theirs)
    for sop in moved:
        conflicts.setdefault(sop, Conflict.PATIENT)


def _locked_study(session: Session, uid: str, records: list[FilmRecord], status: Status,
                  conflict_of: str | None) -> tuple[int, str | None]:
    """(id, patient key) of the study row `uid`, inserted from `records` when missing, and
    locked for this transaction."""
    insert = insert_for(session)
    first = min(records, key=lambda record: record.received_at)
    found = None
    while found is None:  # a retention pass may delete the row between the two statements
        session.execute(insert(Study).values(
            study_instance_uid=uid, source=first.source, received_at=first.received_at,
            last_received_at=first.received_at, status=status.value, flagged=False,
            film_count=0, sort_group=int(Group.NEEDS_REVIEW), sort_rank=1.0,
            patient_key=first.patient_key, conflict_of=conflict_of,
            **{name: getattr(first, name) for name in _STUDY_FIELDS},
        ).on_conflict_do_nothing(index_elements=["study_instance_uid"]))
        found = session.execute(
            select(Study.id, Study.patient_key).where(Study.study_instance_uid == uid)
            .with_for_update()).first()
    return found.id, found.patient_key


def _read_back(session: Session, study_id: int, records: list[FilmRecord],
               conflicts: dict[str, Conflict]) -> None:
    """Which of `records` are stored as given: a SOP Instance UID whose stored film is in
    another study, or has other pixels, is an instance conflict (the stored one stands). A
    stored film without a hash (stored before hashes were kept) takes this one's."""
    stored = {row.sop_instance_uid: row for row in session.execute(
        select(Film.id, Film.sop_instance_uid, Film.study_id, Film.content_hash).where(
            Film.sop_instance_uid.in_([record.sop_instance_uid for record in records])))}
    for record in records:
        row = stored[record.sop_instance_uid]
        if row.study_id != study_id or None not in (row.content_hash, record.content_hash) \
                and row.content_hash != record.content_hash:
            conflicts[record.sop_instance_uid] = Conflict.INSTANCE
        elif row.content_hash is None and record.content_hash is not None:
            session.execute(update(Film).where(Film.id == row.id)
                            .values(content_hash=record.content_hash))


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
    for name in ("study_instance_uid", "patient_key", *_STUDY_FIELDS):
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


def set_read(session: Session, entry_id: int, finding: Finding, actor: str,
             now: datetime) -> bool:
    """Give the study's read (or change it), by `actor`, now, with the model's answer it
    judges: the study's group and the model, version and threshold of its leading film
    (app/store/priority.py), or of its first scored film when none leads; and append its
    audit record. The same finding again changes nothing (False). Raises EntryNotFound."""
    study = session.scalar(select(Study).where(Study.id == entry_id).with_for_update())
    if study is None:
        raise EntryNotFound(entry_id)
    read = session.scalar(select(StudyRead).where(StudyRead.study_id == entry_id))
    before = None if read is None else read.finding
    if before == finding.value:
        return False
    films = session.execute(select(
        Film.probability, Film.threshold, Film.flagged, Film.assessable, Film.error_code,
        Film.view_position, Film.model_name, Film.model_version).where(
            Film.study_id == entry_id).order_by(Film.id)).all()
    decided = leading(films) or next((f for f in films if f.model_name), None)
    answer = {"model_group": Group(study.sort_group).label,
              "model_name": decided.model_name if decided else None,
              "model_version": decided.model_version if decided else None,
              "threshold": decided.threshold if decided else None}
    if read is None:
        session.add(StudyRead(study_id=entry_id, finding=finding.value, read_by=actor,
                              read_at=now, **answer))
    else:
        read.finding, read.read_by, read.read_at = finding.value, actor, now
        for name, value in answer.items():
            setattr(read, name, value)
    session.add(AuditLog(at=now, actor=actor, action=AuditAction.READ.value,
                         entry_id=entry_id, study_instance_uid=study.study_instance_uid,
                         detail={"from": before, "to": finding.value}))
    session.flush()  # the caller reads the entry back with Core
    return True


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
