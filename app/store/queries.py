"""Reading the list: its order, filters, paging, and rows turned into read models."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, literal, select, tuple_
from sqlalchemy.orm import Session, selectinload

from app.store.models import Film, Study
from app.store.priority import Group
from app.store.records import FilmResult, InvalidCursor, Page, Status, StudyEntry

# The list's order: group, then priority descending (sort_rank is -priority), then the
# study received first. It is exactly the columns of ix_studies_worklist_order.
ORDER = (Study.sort_group, Study.sort_rank, Study.received_at, Study.id)


def page(session: Session, *, status: Status | None, received_from: datetime | None,
         received_to: datetime | None, limit: int, offset: int, cursor: str | None) -> Page:
    """One page in list order; see WorklistStore.entries."""
    filters = filters_of(status, received_from, received_to)
    # One row past the page says whether there is a next one.
    query = page_query(filters, cursor).offset(offset).limit(limit + 1)
    rows = session.scalars(_with_films(query)).all()
    total = session.scalar(select(func.count()).select_from(Study).where(*filters)) or 0
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(entries=[to_entry(row) for row in rows], total=total,
                next_cursor=encode_cursor(rows[-1]) if more and rows else None)


def page_query(filters: list[ColumnElement[bool]], cursor: str | None) -> Select[tuple[Study]]:
    """The studies the filters match, after `cursor`, in list order (films not loaded)."""
    query = select(Study).where(*filters).order_by(*ORDER)
    return query if cursor is None else query.where(_after(decode_cursor(cursor)))


def by_ids(session: Session, ids: Sequence[int]) -> list[StudyEntry]:
    """The entries with these ids, in the order given (missing ones left out)."""
    rows = {row.id: row for row in session.scalars(_with_films(
        select(Study).where(Study.id.in_(ids)))).all()}
    return [to_entry(rows[entry_id]) for entry_id in ids if entry_id in rows]


def _with_films(query: Select[tuple[Study]]) -> Select[tuple[Study]]:
    # One IN query for the page's films; their thumbnails stay deferred.
    return query.options(selectinload(Study.films))


def filters_of(status: Status | None, received_from: datetime | None,
             received_to: datetime | None) -> list[ColumnElement[bool]]:
    filters = []
    if status is not None:
        filters.append(Study.status == Status(status).value)
    if received_from is not None:
        filters.append(Study.received_at >= received_from)
    if received_to is not None:
        filters.append(Study.received_at < received_to)
    return filters


def _after(key: tuple[int, float, datetime, int]) -> ColumnElement[bool]:
    """Rows after `key` in ORDER: a row-value comparison, which both engines turn into a
    range of the index (an OR of the columns' comparisons is a scan from the start)."""
    return tuple_(*ORDER) > tuple_(*(literal(value, column.type)
                                     for value, column in zip(key, ORDER)))


def encode_cursor(study: Study) -> str:
    key = [study.sort_group, study.sort_rank, study.received_at.isoformat(), study.id]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, float, datetime, int]:
    """Raises InvalidCursor for anything encode_cursor did not write."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        group, rank, received, entry_id = json.loads(base64.urlsafe_b64decode(padded))
        key = (int(group), float(rank), datetime.fromisoformat(received), int(entry_id))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor("not a worklist paging cursor") from exc
    if key[2].tzinfo is None:
        raise InvalidCursor("not a worklist paging cursor")
    return key


def to_entry(study: Study) -> StudyEntry:
    return StudyEntry(
        id=study.id, study_instance_uid=study.study_instance_uid,
        accession_number=study.accession_number, patient_age=study.patient_age,
        patient_sex=study.patient_sex, study_date=study.study_date, study_time=study.study_time,
        source=study.source, received_at=study.received_at,
        last_received_at=study.last_received_at, status=Status(study.status),
        status_by=study.status_by, status_at=study.status_at, priority=study.priority,
        flagged=study.flagged, group=Group(study.sort_group).label,
        films=tuple(_to_result(film) for film in study.films))


def _to_result(film: Film) -> FilmResult:
    return FilmResult(
        id=film.id, sop_instance_uid=film.sop_instance_uid,
        series_instance_uid=film.series_instance_uid, modality=film.modality,
        view_position=film.view_position, body_part=film.body_part, source=film.source,
        received_at=film.received_at, scored_at=film.scored_at, model_name=film.model_name,
        model_version=film.model_version, probability=film.probability,
        threshold=film.threshold, flagged=film.flagged, assessable=film.assessable,
        reasons=tuple(film.reasons), warnings=tuple(film.warnings),
        error_code=film.error_code, error_detail=film.error_detail,
        has_thumbnail=film.has_thumbnail)
