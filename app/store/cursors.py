"""The list's paging cursors: where a page ended, as an opaque string for the next request.

A cursor is the last study's key in the list's order (app/store/queries.py ORDER: group,
rank, arrival, id) as base64url JSON, e.g. `[1, -0.25, "2025-03-01T08:00:00+00:00", 7]`.
It comes back from the client, so it is read as untrusted input: accepted only when it is
exactly what `encode_cursor` writes for a key whose every value the columns can hold (a
group of priority.Group, a finite rank, an arrival in UTC, a 64-bit id of at least 1).
Anything else (not base64, not JSON, wrong types or length, a bool for a number, NaN, an
id past BIGINT, a year-1 arrival with an offset that no UTC datetime can hold, the same
key spelt another way) is InvalidCursor before it reaches the database, which would
otherwise answer with an out-of-range or overflow error: a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from app.store.priority import Group
from app.store.records import InvalidCursor

MAX_CURSOR_LENGTH = 512  # characters; encode_cursor writes about 70
MAX_ROW_ID = 2**63 - 1  # BIGINT, the ids' type on PostgreSQL (SQLite's INTEGER alike)
_GROUPS = frozenset(group.value for group in Group)


class CursorKey(NamedTuple):
    """Where a page ended: its last study's values of the list's order columns."""

    group: int  # studies.sort_group, a priority.Group
    rank: float  # studies.sort_rank: -triage score, or NO_PRIORITY_RANK
    received_at: datetime  # studies.received_at, aware UTC
    entry_id: int  # studies.id


def encode_cursor(study: Any) -> str:
    """The opaque cursor after `study` (a studies row or a Study)."""
    return _encode(CursorKey(int(study.sort_group), float(study.sort_rank),
                             study.received_at.astimezone(UTC), int(study.id)))


def decode_cursor(cursor: str) -> CursorKey:
    """The key `encode_cursor` wrote into `cursor`. Raises InvalidCursor for anything else."""
    key = _parse(cursor)
    if key is None or _encode(key) != cursor:  # one spelling per key: the one written
        raise InvalidCursor("not a worklist paging cursor")
    return key


def _encode(key: CursorKey) -> str:
    values = [key.group, key.rank, key.received_at.isoformat(), key.entry_id]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _parse(cursor: str) -> CursorKey | None:
    """The key in `cursor` if its every value is one the columns hold, else None."""
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # UnicodeError, JSON's errors too
        return None
    if not (isinstance(values, list) and len(values) == 4):
        return None
    group, rank, received, entry_id = values
    # type() is: a bool is an int to isinstance, and a JSON true is no group.
    if type(group) is not int or group not in _GROUPS:
        return None
    if type(rank) is not float or not math.isfinite(rank):
        return None
    if type(entry_id) is not int or not 1 <= entry_id <= MAX_ROW_ID:
        return None
    received_at = _utc_moment(received)
    return None if received_at is None else CursorKey(group, rank, received_at, entry_id)


def _utc_moment(text: Any) -> datetime | None:
    """An ISO 8601 text with a UTC offset of zero as an aware datetime, else None."""
    if type(text) is not str:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.utcoffset() == timedelta(0) else None
