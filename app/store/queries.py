"""Reading the list: its order, filters, paging, and rows turned into read models.

Reads are Core queries on a Connection, rows straight into dataclasses: the ORM's identity
map and lazy-loading machinery cost more than the database does for a page of 50.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, literal, select, tuple_

from app.store.cursors import CursorKey, decode_cursor, encode_cursor
from app.store.models import Film, Study, StudyRead
from app.store.priority import Group
from app.store.records import (
    FilmResult,
    Finding,
    JudgedRead,
    Page,
    Read,
    Sort,
    Status,
    StudyEntry,
)

_STUDIES = Study.__table__
_FILMS = Film.__table__
_READS = StudyRead.__table__
# The list's order: group, then triage score descending (sort_rank is -triage_score,
# app/store/priority.py), then the study received first. It is exactly the columns of
# ix_studies_worklist_order.
ORDER = (_STUDIES.c.sort_group, _STUDIES.c.sort_rank, _STUDIES.c.received_at, _STUDIES.c.id)
# The orders by arrival (ix_studies_received_at; on SQLite the index holds the rowid, the
# id, too): a page after a cursor is the rows past its (arrival, id), in the order's
# direction.
ARRIVAL = (_STUDIES.c.received_at, _STUDIES.c.id)
# A film as listed: everything but its pictures, which are only said to exist.
_FILM_COLUMNS = (*(column for column in _FILMS.c if column.name not in ("thumbnail", "display")),
                 _FILMS.c.thumbnail.is_not(None).label("has_thumbnail"),
                 _FILMS.c.display.is_not(None).label("has_display"))


def page(connection: Connection, *, status: Status | None, received_from: datetime | None,
         received_to: datetime | None, limit: int, offset: int, cursor: str | None,
         sort: Sort = Sort.PRIORITY) -> Page:
    """One page in the order `sort`; see WorklistStore.entries."""
    filters = filters_of(status, received_from, received_to)
    # One row past the page says whether there is a next one.
    rows = connection.execute(page_query(filters, cursor, sort).offset(offset)
                              .limit(limit + 1)).all()
    total = connection.scalar(select(func.count()).select_from(_STUDIES).where(*filters))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(entries=_with_films(connection, rows), total=total or 0,
                next_cursor=encode_cursor(rows[-1]) if more and rows else None)


def page_query(filters: list[ColumnElement[bool]], cursor: str | None,
               sort: Sort = Sort.PRIORITY) -> Select[Any]:
    """The studies the filters match, after `cursor`, in the order `sort` (without films).
    Raises InvalidCursor (app/store/cursors.py)."""
    query = select(_STUDIES).where(*filters)
    if sort is Sort.PRIORITY:
        query = query.order_by(*ORDER)
        return query if cursor is None else query.where(_after(decode_cursor(cursor)))
    newest = sort is Sort.NEWEST
    query = query.order_by(*(column.desc() if newest else column for column in ARRIVAL))
    if cursor is None:
        return query
    key = decode_cursor(cursor)
    here = tuple_(*ARRIVAL)
    there = tuple_(*(literal(value, column.type)
                     for value, column in zip((key.received_at, key.entry_id), ARRIVAL)))
    return query.where(here < there if newest else here > there)


def status_counts(connection: Connection) -> dict[Status, int]:
    """Entries per status, every status named (0 when none): one grouped count."""
    counted = dict(connection.execute(
        select(Study.status, func.count()).group_by(Study.status)).all())
    return {status: int(counted.get(status.value, 0)) for status in Status}


def by_ids(connection: Connection, ids: Sequence[int]) -> list[StudyEntry]:
    """The entries with these ids, in the order given (missing ones left out)."""
    rows = {row.id: row for row in connection.execute(
        select(_STUDIES).where(_STUDIES.c.id.in_(ids)))}
    return _with_films(connection, [rows[entry_id] for entry_id in ids if entry_id in rows])


def _with_films(connection: Connection, studies: Sequence[Any]) -> list[StudyEntry]:
    films: dict[int, list[FilmResult]] = {study.id: [] for study in studies}
    reads: dict[int, Read] = {}
    if films:  # one IN query for all the studies' films, oldest first; one for their reads
        for row in connection.execute(select(*_FILM_COLUMNS).where(
                _FILMS.c.study_id.in_(list(films))).order_by(_FILMS.c.id)):
            films[row.study_id].append(_to_result(row))
        for row in connection.execute(select(_READS).where(
                _READS.c.study_id.in_(list(films)))):
            reads[row.study_id] = Read(finding=Finding(row.finding), read_by=row.read_by,
                                       read_at=row.read_at)
    return [to_entry(study, films[study.id], reads.get(study.id)) for study in studies]


def film_by_id(connection: Connection, film_id: int) -> FilmResult | None:
    """One stored film as listed, or None."""
    row = connection.execute(select(*_FILM_COLUMNS).where(_FILMS.c.id == film_id)).first()
    return None if row is None else _to_result(row)


def judged_reads(connection: Connection, *, since: datetime | None,
                 last: int) -> list[JudgedRead]:
    """The newest `last` reads given at or after `since` (aware; None: any), newest first,
    each with the model's answer it judged (ix_reads_read_at)."""
    query = select(_READS).order_by(_READS.c.read_at.desc(), _READS.c.id.desc()).limit(last)
    if since is not None:
        query = query.where(_READS.c.read_at >= since)
    return [JudgedRead(entry_id=row.study_id, finding=Finding(row.finding),
                       read_at=row.read_at, model_group=row.model_group,
                       model_name=row.model_name, model_version=row.model_version,
                       threshold=row.threshold)
            for row in connection.execute(query)]


def filters_of(status: Status | None, received_from: datetime | None,
               received_to: datetime | None) -> list[ColumnElement[bool]]:
    filters = []
    if status is not None:
        filters.append(_STUDIES.c.status == Status(status).value)
    if received_from is not None:
        filters.append(_STUDIES.c.received_at >= received_from)
    if received_to is not None:
        filters.append(_STUDIES.c.received_at < received_to)
    return filters


def _after(key: CursorKey) -> ColumnElement[bool]:
    """Rows after `key` in ORDER: a row-value comparison, which both engines turn into a
    range of the index (an OR of the columns' comparisons is a scan from the start)."""
    return tuple_(*ORDER) > tuple_(*(literal(value, column.type)
                                     for value, column in zip(key, ORDER)))


def to_entry(study: Any, films: Sequence[FilmResult], read: Read | None = None) -> StudyEntry:
    """A studies row, its films and its read as a read model."""
    return StudyEntry(
        id=study.id, study_instance_uid=study.study_instance_uid,
        accession_number=study.accession_number, patient_age=study.patient_age,
        patient_sex=study.patient_sex, study_date=study.study_date, study_time=study.study_time,
        source=study.source, received_at=study.received_at,
        last_received_at=study.last_received_at, status=Status(study.status),
        status_by=study.status_by, status_at=study.status_at, priority=study.priority,
        triage_score=study.triage_score, flagged=study.flagged,
        group=Group(study.sort_group).label, films=tuple(films),
        conflict_of=study.conflict_of, read=read)


def _to_result(film: Any) -> FilmResult:
    return FilmResult(
        id=film.id, sop_instance_uid=film.sop_instance_uid,
        series_instance_uid=film.series_instance_uid, modality=film.modality,
        view_position=film.view_position, body_part=film.body_part, source=film.source,
        received_at=film.received_at, scored_at=film.scored_at, model_name=film.model_name,
        model_version=film.model_version, probability=film.probability,
        threshold=film.threshold, flagged=film.flagged, assessable=film.assessable,
        reasons=tuple(film.reasons), warnings=tuple(film.warnings),
        error_code=film.error_code, error_detail=film.error_detail,
        results_error=film.results_error, has_thumbnail=film.has_thumbnail,
        has_display=film.has_display, window=film.window)
