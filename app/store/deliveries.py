"""Results waiting to reach the PACS (the DICOM node's delivery queue), in the worklist's own
database: a result the app says it will deliver survives a crash or restart with its film.

Every function runs inside the caller's transaction and commits nothing itself.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.store.models import Delivery, Film

_LENGTH = struct.Struct(">I")  # each instance's byte count, before its bytes


@dataclass(frozen=True, kw_only=True)
class PendingDelivery:
    """One film's results not yet delivered: the parts its job was queued with (a recipe,
    app/dicom/recipe.py; DICOM Part 10 instances in jobs queued before it), attempts so
    far."""

    id: int
    study_id: int
    sop_instance_uid: str  # the film the results are about
    instances: tuple[bytes, ...]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    received_at: datetime  # the film's arrival


@dataclass(frozen=True)
class Undelivered:
    """What the worklist shows of an entry's results still on their way."""

    count: int
    last_error: str | None


def pack(instances: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(item)) + item for item in instances)


def unpack(payload: bytes) -> tuple[bytes, ...]:
    items, at = [], 0
    while at < len(payload):
        (length,) = _LENGTH.unpack_from(payload, at)
        at += _LENGTH.size
        items.append(payload[at:at + length])
        at += length
    return tuple(items)


def queue(session: Session, insert, results: Mapping[str, Sequence[bytes]],
          now: datetime) -> None:
    """A delivery job per film in `results` (SOP Instance UID -> its result instances), due
    now; a film that has a job already keeps it (the PACS sent the film twice)."""
    if not results:
        return
    holders = dict(session.execute(select(Film.sop_instance_uid, Film.study_id).where(
        Film.sop_instance_uid.in_(list(results)))).all())
    rows = [{"study_id": holders[sop], "sop_instance_uid": sop, "payload": pack(instances),
             "created_at": now, "next_attempt_at": now, "attempts": 0}
            for sop, instances in results.items() if instances and sop in holders]
    if rows:
        session.execute(insert(Delivery).on_conflict_do_nothing(
            index_elements=["sop_instance_uid"]), rows)


def lease_due(session: Session, now: datetime, lease: timedelta,
              limit: int) -> list[PendingDelivery]:
    """Jobs due at `now`, oldest first, each leased (its next attempt pushed `lease` ahead)
    so that another replica's worker does not send it at the same moment; SKIP LOCKED on
    PostgreSQL, the write lock on SQLite."""
    query = (select(Delivery.id, Delivery.study_id, Delivery.sop_instance_uid,
                    Delivery.payload, Delivery.attempts, Delivery.next_attempt_at,
                    Delivery.last_error, Film.received_at)
             .join(Film, Film.sop_instance_uid == Delivery.sop_instance_uid)
             .where(Delivery.next_attempt_at <= now).order_by(Delivery.next_attempt_at,
                                                              Delivery.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Delivery, skip_locked=True)
    rows = session.execute(query).all()
    if rows:
        session.execute(update(Delivery).where(Delivery.id.in_([r.id for r in rows]))
                        .values(next_attempt_at=now + lease))
    return [PendingDelivery(id=r.id, study_id=r.study_id, sop_instance_uid=r.sop_instance_uid,
                            instances=unpack(r.payload), attempts=r.attempts,
                            next_attempt_at=r.next_attempt_at, last_error=r.last_error,
                            received_at=r.received_at)
            for r in rows]


def done(session: Session, delivery_id: int) -> None:
    session.execute(delete(Delivery).where(Delivery.id == delivery_id))


def done_all(session: Session, delivery_ids: Sequence[int]) -> None:
    """Several delivered jobs removed in one statement."""
    session.execute(delete(Delivery).where(Delivery.id.in_(list(delivery_ids))))


def abandoned(session: Session, delivery_id: int, reason: str) -> None:
    """A job that can never be delivered (its results cannot be built): removed, and its
    film marked with `reason` (app/dicom/failures.py) for the worklist."""
    sop = session.scalar(delete(Delivery).where(Delivery.id == delivery_id)
                         .returning(Delivery.sop_instance_uid))
    if sop is not None:
        session.execute(update(Film).where(Film.sop_instance_uid == sop)
                        .values(results_error=reason[:64]))


def failed(session: Session, delivery_id: int, next_attempt: datetime, detail: str) -> None:
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(
        attempts=Delivery.attempts + 1, next_attempt_at=next_attempt, last_error=detail[:500]))


def pending_count(session: Session) -> int:
    """Films whose results have not reached the PACS yet."""
    return session.scalar(select(func.count()).select_from(Delivery)) or 0


def undelivered(session: Session, study_ids: Sequence[int] | None = None
                ) -> dict[int, Undelivered]:
    """study id -> its undelivered results (every study that has some, or those asked)."""
    query = select(Delivery.study_id, func.count(), func.max(Delivery.last_error)).group_by(
        Delivery.study_id)
    if study_ids is not None:
        query = query.where(Delivery.study_id.in_(list(study_ids)))
    return {study: Undelivered(count, error)
            for study, count, error in session.execute(query).all()}
