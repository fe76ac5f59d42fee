"""The stored worklist's service (app/services/worklist.py): filters as time windows,
store errors as request errors, the CSV's cells and the audit of an export."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from app.errors import InvalidCursorError, NoThumbnailError, UnknownEntryError
from app.services import worklist
from app.services.worklist import ListFilters
from app.store import Status
from tests.store.factories import film, mixed_models, refused


@pytest.mark.parametrize(("received_from", "received_to", "window"), [
    (None, None, (None, None)),
    (date(2025, 3, 1), date(2025, 3, 1),  # one whole UTC day
     (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))),
    (datetime(2025, 3, 1, 8), None, (datetime(2025, 3, 1, 8, tzinfo=UTC), None)),  # naive: UTC
    (datetime(2025, 3, 1, 8, tzinfo=timezone(timedelta(hours=2))), None,
     (datetime(2025, 3, 1, 6, tzinfo=UTC), None)),
    (None, date.max, (None, None)),  # no day after the last one: no upper bound
    (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), None,
     (datetime.min.replace(tzinfo=UTC), None)),  # before year 1 in UTC: as early as it goes
])
def test_filters_are_a_window_of_aware_utc_moments(received_from, received_to, window):
    filters = ListFilters(received_from=received_from, received_to=received_to)
    assert filters.window() == window


def test_filters_as_query_parameters_and_audit_detail():
    filters = ListFilters(status=Status.NEW, received_from=date(2025, 3, 1))
    assert filters.query() == {"status": "new", "received_from": "2025-03-01"}
    assert ListFilters().query() == {}


def test_a_forged_cursor_is_a_request_error(store):
    with pytest.raises(InvalidCursorError):
        worklist.list_page(store, ListFilters(), limit=10, cursor="bm9wZQ")


def test_store_errors_become_request_errors(store):
    with pytest.raises(UnknownEntryError) as caught:
        worklist.change_status(store, 41, Status.REPORTED, "someone")
    assert "41" in caught.value.message
    with pytest.raises(UnknownEntryError):
        worklist.open_entry(store, 41, "someone")
    with pytest.raises(NoThumbnailError):
        worklist.thumbnail(store, 41)
    assert store.audit() == []  # nothing recorded about an entry that is not there


def test_an_export_is_audited_before_its_first_line(store):
    store.add_films([film("1.1")])
    lines = worklist.export_csv(store, ListFilters(status=Status.NEW), "dr.grey")
    (record,) = store.audit()
    assert (record.action, record.actor, record.detail) == (
        "exported", "dr.grey", {"format": "csv", "status": "new"})
    assert next(lines).startswith("rank,group,decision,triage_score,priority,flagged,status")
    assert next(lines).startswith("1,routine,not flagged,20,0.200000,no,new,")


def test_the_scores_shown_come_in_the_lists_order_whatever_the_model(store):
    records, expected = mixed_models()
    store.add_films(records)
    rows = list(csv.DictReader(worklist.export_csv(store, ListFilters(), "dr.grey")))
    assert [row["study_instance_uid"] for row in rows] == expected
    # model 5 at p=0.98 reads 98 and comes before model 8 at p=0.985, which reads 79
    assert [row["triage_score"] for row in rows] == ["98", "86", "79", "57", "46", "42"]
    for entry in store.entries().entries:  # the number shown is the one stored, that ranks
        assert worklist.entry_triage_score(entry)[0] == entry.triage_score


def test_notes_say_why_to_look_twice_once_each(store):
    (entry,) = store.add_films([
        refused("2.1"),
        film("2.1", "2.1.2", assessable=False, reasons=("rotated",), warnings=("tiny",)),
        film("2.1", "2.1.3", warnings=("tiny",))])
    assert worklist.entry_notes(entry) == [
        "the film is a CT slice", "not assessable by the model (rotated)", "tiny"]


def test_the_viewer_link_is_the_template_with_the_study_uid():
    template = "https://pacs.example/viewer?StudyInstanceUIDs={study_uid}"
    assert worklist.viewer_link(template, "1.2.3") == \
        "https://pacs.example/viewer?StudyInstanceUIDs=1.2.3"
    assert worklist.viewer_link(None, "1.2.3") is None
    assert worklist.viewer_link("https://x/{study_uid}", "a b&c") == "https://x/a%20b%26c"
