"""The list's paging cursors (app/store/cursors.py): what encode_cursor writes comes back as
it was; anything else, however it is forged, is InvalidCursor before the database sees it,
on both engines (a forged id past BIGINT, or a year-1 arrival east of UTC, was a 500)."""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.store import InvalidCursor, Page, WorklistStore
from app.store.cursors import MAX_ROW_ID, CursorKey, decode_cursor, encode_cursor
from app.store.models import Study
from app.store.priority import Group
from tests.store.factories import T0

ARRIVAL = T0.isoformat()  # "2025-03-01T08:00:00+00:00"
VALID = encode_cursor(Study(sort_group=1, sort_rank=-0.25, received_at=T0, id=7))


def b64(text: str | bytes) -> str:
    """`text` as base64url without padding, as a cursor is written."""
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def key(group: str, rank: str, arrival: str, entry_id: str) -> str:
    """A cursor of these JSON texts, e.g. key("1", "-0.25", f'"{ARRIVAL}"', "7")."""
    return b64(f"[{group}, {rank}, {arrival}, {entry_id}]")


# Every way of forging one, by family; each must be InvalidCursor.
FORGED = {
    # not base64, or not text
    "empty": "", "abc": "abc", "W10": "W10", "not base64": "!!!***", "non-ASCII": "ü€😀",
    "a NUL": "W10\x00", "too long": VALID + "A" * 600,
    "base64 of bytes that are not UTF-8": b64(bytes(range(128, 256))),
    # base64 of something that is not a key
    "base64 of text": b64("hello"), "JSON null": b64("null"), "a JSON number": b64("7"),
    "a JSON object of 4": b64('{"a": 1, "b": 2, "c": 3, "d": 4}'),
    "a JSON text of 4 characters": b64('"1111"'), "nested lists": b64("[" * 300 + "]" * 300),
    "3 values": b64(f'[1, -0.25, "{ARRIVAL}"]'), "5 values": b64(f'[1, -0.25, "{ARRIVAL}", 7, 8]'),
    # the right length, values of the wrong type
    "booleans": key("true", "-0.25", f'"{ARRIVAL}"', "true"),
    "group a float": key("1.0", "-0.25", f'"{ARRIVAL}"', "7"),
    "group a text": key('"1"', "-0.25", f'"{ARRIVAL}"', "7"),
    "rank an integer": key("1", "0", f'"{ARRIVAL}"', "7"),
    "rank a text": key("1", '"nan"', f'"{ARRIVAL}"', "7"),
    "arrival a number": key("1", "-0.25", "1740816000", "7"),
    "id a float": key("1", "-0.25", f'"{ARRIVAL}"', "7.0"),
    "id a text": key("1", "-0.25", f'"{ARRIVAL}"', '"7"'),
    # values out of the columns' range
    "group not a Group": key("3", "-0.25", f'"{ARRIVAL}"', "7"),
    "group negative": key("-5", "-0.25", f'"{ARRIVAL}"', "7"),
    "group past INTEGER": key(str(2**40), "-0.25", f'"{ARRIVAL}"', "7"),
    "group infinite": key("1e400", "-0.25", f'"{ARRIVAL}"', "7"),
    "rank NaN": key("1", "NaN", f'"{ARRIVAL}"', "7"),
    "rank infinite": key("1", "Infinity", f'"{ARRIVAL}"', "7"),
    "rank past a double": key("1", "1" + "0" * 400, f'"{ARRIVAL}"', "7"),
    "id 0": key("1", "-0.25", f'"{ARRIVAL}"', "0"),
    "id negative": key("1", "-0.25", f'"{ARRIVAL}"', str(-2**63 - 5)),
    "id 2**63": key("1", "-0.25", f'"{ARRIVAL}"', str(2**63)),
    "id of 4,000 digits": key("1", "-0.25", f'"{ARRIVAL}"', "9" * 4000),
    "arrival without an offset": key("1", "-0.25", '"2025-03-01T08:00:00"', "7"),
    "arrival not ISO 8601": key("1", "-0.25", '"yesterday"', "7"),
    "arrival in year 1, east of UTC": key("1", "-0.25", '"0001-01-01T00:00:00+14:00"', "7"),
    "arrival in year 9999, west of UTC": key("1", "-0.25", '"9999-12-31T23:59:59-14:00"', "7"),
    "arrival off UTC": key("1", "-0.25", '"2025-03-01T09:00:00+01:00"', "7"),
    # a valid key spelt another way than encode_cursor spells it
    "no spaces": b64(f'[1,-0.25,"{ARRIVAL}",7]'), "padded": VALID + "==",
    "a float spelt long": key("1", "-0.250", f'"{ARRIVAL}"', "7"),
}


def test_a_cursor_round_trips() -> None:
    assert decode_cursor(VALID) == CursorKey(1, -0.25, T0, 7) == (1, -0.25, T0, 7)


@given(group=st.sampled_from(list(Group)),
       rank=st.floats(allow_nan=False, allow_infinity=False),
       received_at=st.datetimes(timezones=st.just(UTC)),
       entry_id=st.integers(1, MAX_ROW_ID))
def test_every_cursor_written_is_read_back(group: Group, rank: float, received_at: datetime,
                                           entry_id: int) -> None:
    study = Study(sort_group=group, sort_rank=rank, received_at=received_at, id=entry_id)
    assert decode_cursor(encode_cursor(study)) == (group, rank, received_at, entry_id)


def test_a_cursor_of_an_arrival_in_another_zone_is_written_in_utc() -> None:
    later = T0.astimezone(timezone(timedelta(hours=5)))
    study = Study(sort_group=0, sort_rank=1, received_at=later, id=3)
    assert decode_cursor(encode_cursor(study)) == (0, 1.0, T0, 3)


@pytest.mark.parametrize("cursor", FORGED.values(), ids=FORGED.keys())
def test_decode_cursor_refuses_a_forged_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


def test_no_forged_cursor_reaches_the_database(store: WorklistStore) -> None:
    """On SQLite and PostgreSQL: each forged cursor is InvalidCursor, never the engine's
    overflow or out-of-range error (which the API answered 500)."""
    outcomes = {name: _outcome(store, cursor) for name, cursor in FORGED.items()}
    assert {name: o for name, o in outcomes.items() if o != "InvalidCursor"} == {}


def _outcome(store: WorklistStore, cursor: str) -> str:
    try:
        store.entries(limit=5, cursor=cursor)
    except InvalidCursor:
        return "InvalidCursor"
    except Exception as exc:  # what the old decoder let through to the engine
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    return "a page"


# JSON values a forger might put in each place: any number, text or ISO 8601 moment in any
# zone (year 1 and year 9999 included), or a list of them; mostly a key's four places, each
# with a value of its own type or another.
_JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
                 | st.text(string.printable, max_size=12)
                 | st.datetimes(timezones=st.timezones()).map(datetime.isoformat)
                 | st.sampled_from([0, 1, 2, -1, 2**63 - 1, 2**63, -2**63]))
_ANY = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_KEYS = st.tuples(st.integers() | _ANY, st.floats() | _ANY,
                  st.datetimes(timezones=st.timezones()).map(datetime.isoformat) | _ANY,
                  st.integers() | _ANY).map(list)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=_KEYS | st.lists(_ANY, min_size=3, max_size=5))
def test_any_forged_key_is_a_page_or_invalid_never_an_engine_error(
        store: WorklistStore, values: list) -> None:
    cursor = b64(json.dumps(values))
    try:
        page = store.entries(limit=5, cursor=cursor)
    except InvalidCursor:
        return
    assert isinstance(page, Page) and cursor == encode_cursor(
        Study(sort_group=values[0], sort_rank=values[1],
              received_at=datetime.fromisoformat(values[2]), id=values[3]))
