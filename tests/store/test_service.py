"""WorklistStore on SQLite and PostgreSQL: order, paging, filters, idempotence, statuses and
their audit records. Concurrency and kill -9: test_writes.py; retention: test_retention.py."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from app.contract.triage_score import triage_score
from app.store import (
    AuditAction,
    Conflict,
    EntryNotFound,
    FilmRecord,
    InvalidCursor,
    Status,
    WorklistStore,
)
from tests.store.conftest import Clock
from tests.store.factories import T0, film, mixed_models, refused

# Expected order of _ORDER_CASES' studies, by group, then priority, then arrival.
EXPECTED_ORDER = ["A", "I", "B", "C", "D", "E", "H", "G", "F"]


def _order_cases() -> list[list[FilmRecord]]:
    return [
        [film("A", probability=0.9)],
        [film("B", probability=0.7, minutes=1)],
        [film("C", probability=0.7, minutes=2)],  # B's priority, received later
        [film("D", probability=0.4)],
        [film("E", probability=0.2)],
        # not assessable only: needs a human look, no priority
        [film("F", probability=0.3, assessable=False, reasons=("rotated",))],
        # assessable 0.45, and a refused film: needs a look, ahead of F by its priority
        [film("G", probability=0.45), refused("G", "G.2")],
        # a flagged lateral does not count; its frontal film (0.1) does
        [film("H", probability=0.95, view_position="LL"),
         film("H", "H.2", probability=0.1, view_position="PA")],
        # flagged despite an unassessable film
        [film("I", probability=0.8), film("I", "I.2", probability=0.2, assessable=False)],
    ]


def _fill(store: WorklistStore) -> None:
    cases = _order_cases()
    random.Random(18).shuffle(cases)
    for records in cases:
        store.add_films(records)


def test_entries_orders_flagged_then_rest_then_needs_review(store: WorklistStore) -> None:
    _fill(store)
    page = store.entries()
    assert [entry.study_instance_uid for entry in page.entries] == EXPECTED_ORDER
    assert [entry.group for entry in page.entries] == (
        ["flagged"] * 3 + ["flagged"] + ["routine"] * 3 + ["needs_review"] * 2)
    assert page.entries[6].priority == pytest.approx(0.1)  # H: its frontal film
    assert page.entries[8].priority is None  # F
    assert page.total == 9 and page.next_cursor is None


def test_add_films_moves_study_when_new_film_is_flagged(store: WorklistStore) -> None:
    store.add_films([film("A", probability=0.6), film("B", probability=0.3)])
    [entry] = store.add_films([film("B", "B.2", probability=0.8, minutes=5)])
    assert (entry.group, entry.priority, len(entry.films)) == ("flagged", 0.8, 2)
    assert [e.study_instance_uid for e in store.entries().entries] == ["B", "A"]
    assert entry.received_at == T0 and entry.last_received_at == T0 + timedelta(minutes=5)


@pytest.mark.parametrize("limit", [1, 4, 9])
def test_entries_pages_by_offset_and_cursor(store: WorklistStore, limit: int) -> None:
    _fill(store)
    by_offset, by_cursor, cursor = [], [], None
    for offset in range(0, 9, limit):
        by_offset += store.entries(limit=limit, offset=offset).entries
    while True:
        page = store.entries(limit=limit, cursor=cursor)
        assert page.total == 9
        by_cursor += page.entries
        if (cursor := page.next_cursor) is None:
            break
    assert [e.study_instance_uid for e in by_offset] == EXPECTED_ORDER
    assert [e.study_instance_uid for e in by_cursor] == EXPECTED_ORDER


def test_entries_rank_films_of_different_models_by_triage_score(store: WorklistStore) -> None:
    records, expected = mixed_models()
    random.Random(22).shuffle(records)
    store.add_films(records)
    page = store.entries()
    assert [e.study_instance_uid for e in page.entries] == expected
    assert [e.group for e in page.entries] == ["flagged"] * 4 + ["routine"] * 2
    scores = [e.triage_score for e in page.entries]
    assert scores[:4] == sorted(scores[:4], reverse=True)
    assert scores[4:] == sorted(scores[4:], reverse=True)
    assert scores[0] == pytest.approx(0.9879, abs=1e-4)  # model 5 at p=0.98
    assert scores[2] == pytest.approx(0.7917, abs=1e-4)  # model 8 at p=0.985
    assert [e.priority for e in page.entries][:3] == [0.98, 0.99, 0.985]


@pytest.mark.parametrize("limit", [1, 4])
def test_entries_cursor_follows_the_triage_order(store: WorklistStore, limit: int) -> None:
    records, expected = mixed_models()
    store.add_films(records)
    seen, cursor = [], None
    while True:
        page = store.entries(limit=limit, cursor=cursor)
        seen += [e.study_instance_uid for e in page.entries]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == expected


def test_entries_cursor_skips_nothing_when_entries_arrive(store: WorklistStore) -> None:
    _fill(store)
    first = store.entries(limit=4)
    store.add_films([film("Z", probability=0.99)])  # lands on the first page, already read
    rest = store.entries(limit=50, cursor=first.next_cursor)
    assert [e.study_instance_uid for e in first.entries + rest.entries] == EXPECTED_ORDER


def test_entries_refuses_bad_paging(store: WorklistStore) -> None:
    with pytest.raises(InvalidCursor):
        store.entries(cursor="not-a-cursor")
    with pytest.raises(ValueError):
        store.entries(limit=0)
    with pytest.raises(ValueError):
        store.entries(status="archived")
    with pytest.raises(ValueError):
        store.entries(received_from=T0.replace(tzinfo=None))


def test_entries_filters_by_status_and_date(store: WorklistStore) -> None:
    for index, study in enumerate("ABCD"):
        store.add_films([film(study, probability=0.1 * (index + 1), minutes=60 * index)])
    ids = {e.study_instance_uid: e.id for e in store.entries().entries}
    store.set_status(ids["B"], Status.REPORTED, "dr. a")
    store.set_status(ids["D"], "dismissed", "dr. a")
    new = store.entries(status="new")
    assert [e.study_instance_uid for e in new.entries] == ["C", "A"] and new.total == 2
    assert [e.study_instance_uid for e in store.entries(status=Status.REPORTED).entries] == ["B"]
    window = store.entries(received_from=T0 + timedelta(minutes=60),
                           received_to=T0 + timedelta(minutes=180))  # end excluded
    assert [e.study_instance_uid for e in window.entries] == ["C", "B"]
    both = store.entries(status="new", received_from=T0 + timedelta(minutes=1))
    assert [e.study_instance_uid for e in both.entries] == ["C"] and both.total == 1


def test_add_films_same_sop_twice_keeps_one_film(store: WorklistStore) -> None:
    [first] = store.add_films([film("A", "A.1", 0.3)])
    # the same SOP again (a resend, with another result) and twice within one call
    [again] = store.add_films([film("A", "A.1", 0.9), film("A", "A.1", 0.8)])
    assert again.id == first.id
    assert [(f.sop_instance_uid, f.probability) for f in again.films] == [("A.1", 0.3)]
    assert (again.priority, again.group) == (0.3, "routine")
    assert store.entries().total == 1


def test_add_films_leaves_film_in_study_that_holds_it(store: WorklistStore) -> None:
    [first] = store.add_films([film("A", "S.1", 0.3)])
    # the same SOP under another Study Instance UID, beside a new film of that study
    assert [e.id for e in store.add_films([film("B", "S.1", 0.9)])] == [first.id]
    entries = store.add_films([film("C", "S.1"), film("C", "C.1")])
    assert [e.study_instance_uid for e in entries] == ["A", "C"]
    assert sorted(e.study_instance_uid for e in store.entries().entries) == ["A", "C"]


def test_add_films_lists_refused_film_with_its_reason(store: WorklistStore) -> None:
    [entry] = store.add_films([refused("A", code="lateral_view")])
    [result] = entry.films
    assert (result.error_code, result.probability, result.flagged) == ("lateral_view", None,
                                                                       None)
    assert entry.group == "needs_review"


def test_add_films_groups_by_study_and_fills_study_fields(store: WorklistStore) -> None:
    entries = store.add_films([
        film("B", "B.1", accession_number=None, patient_age="004Y"),
        film("A", "A.1", 0.7, patient_sex="F", view_position="AP", reasons=("rotated",),
             warnings=("low contrast",), source="dicom:MODALITY1"),
        film("B", "B.2", accession_number="ACC123", patient_age="005Y"),
    ])
    assert [e.study_instance_uid for e in entries] == ["B", "A"]  # order of first appearance
    b, a = entries
    assert (b.accession_number, b.patient_age, len(b.films)) == ("ACC123", "004Y", 2)
    assert (a.patient_sex, a.source, a.films[0].reasons, a.films[0].warnings) == (
        "F", "dicom:MODALITY1", ("rotated",), ("low contrast",))


def test_add_films_is_committed_for_another_store(store: WorklistStore, url: str) -> None:
    [entry] = store.add_films([film("A")])
    other = WorklistStore(url)  # another engine: another process or replica
    try:
        assert other.entry(entry.id).films == entry.films
    finally:
        other.close()


def test_add_films_keeps_thumbnail_apart(store: WorklistStore) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    [entry] = store.add_films([film("A", "A.1", thumbnail=png), film("A", "A.2")])
    assert [f.has_thumbnail for f in entry.films] == [True, False]
    assert store.thumbnail(entry.films[0].id) == png
    assert store.thumbnail(entry.films[1].id) is None


@pytest.mark.parametrize("fields", [
    {"sop_instance_uid": "1." * 40},
    {"study_instance_uid": ""},
    {"received_at": T0.replace(tzinfo=None)},
    {"probability": 1.5},
    {"threshold": 1.5},
    {"threshold": None},  # a scored film without the threshold it was scored at
    {"thumbnail": bytes(65 * 1024)},
])
def test_film_record_refuses_bad_value(fields: dict) -> None:
    with pytest.raises(ValueError):
        film("A", **fields)


def test_add_films_cuts_overlong_dicom_value(store: WorklistStore) -> None:
    [entry] = store.add_films([film("A", accession_number="X" * 40, body_part="Y" * 40)])
    assert (entry.accession_number, entry.films[0].body_part) == ("X" * 16, "Y" * 16)


def test_set_status_records_who_when_and_audit(store: WorklistStore, clock: Clock) -> None:
    [entry] = store.add_films([film("A")])
    moment = clock.advance(minutes=3)
    changed = store.set_status(entry.id, "opened", "dr. who")
    assert (changed.status, changed.status_by, changed.status_at) == (
        Status.OPENED, "dr. who", moment)
    store.set_status(entry.id, Status.REPORTED, "dr. no")
    records = store.audit(entry_id=entry.id)
    assert [(r.action, r.actor, r.detail) for r in records] == [
        (AuditAction.STATUS_CHANGED, "dr. no", {"from": "opened", "to": "reported"}),
        (AuditAction.STATUS_CHANGED, "dr. who", {"from": "new", "to": "opened"}),
    ]
    assert records[1].at == moment and records[0].study_instance_uid == "A"


def test_set_status_refuses_unknown_entry_status_or_actor(store: WorklistStore) -> None:
    [entry] = store.add_films([film("A")])
    with pytest.raises(EntryNotFound):
        store.set_status(entry.id + 1000, "reported", "dr. a")
    with pytest.raises(ValueError):
        store.set_status(entry.id, "archived", "dr. a")
    with pytest.raises(ValueError):
        store.set_status(entry.id, "reported", "  ")
    assert store.entry(entry.id).status == Status.NEW and store.audit() == []


def test_record_appends_opened_and_exported(store: WorklistStore) -> None:
    [entry] = store.add_films([film("A")])
    opened = store.record("dr. a", "opened", entry.id)
    exported = store.record("dr. b", AuditAction.EXPORTED, detail={"format": "csv"})
    assert [r.id for r in store.audit()] == [exported.id, opened.id]
    assert store.audit(before_id=exported.id) == [opened]
    assert (exported.entry_id, exported.detail) == (None, {"format": "csv"})
    with pytest.raises(ValueError):  # only set_status writes status changes
        store.record("dr. a", "status_changed", entry.id)
    with pytest.raises(EntryNotFound):
        store.record("dr. a", "opened", entry.id + 1000)


def test_store_offers_no_way_to_edit_audit() -> None:
    verbs = ("update", "delete", "remove", "edit", "clear")
    assert not [name for name in dir(WorklistStore) if name.startswith(verbs)]


def test_entry_of_unknown_id_raises(store: WorklistStore) -> None:
    with pytest.raises(EntryNotFound):
        store.entry(12345)


def test_add_films_from_many_threads_of_one_store(store: WorklistStore) -> None:
    """The routes share one store across worker threads."""
    def add(thread: int) -> None:
        for index in range(10):
            study = f"T{thread}.{index % 3}"
            store.add_films([film(study, f"{study}.{index}", 0.05 * index)])

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(add, range(6)))
    page = store.entries(limit=100)
    assert page.total == 18
    assert sum(len(entry.films) for entry in page.entries) == 60


def test_status_counts_names_every_status(store: WorklistStore) -> None:
    assert store.status_counts() == dict.fromkeys(Status, 0)
    entries = store.add_films([film("1"), film("2"), film("3")])
    store.set_status(entries[0].id, Status.REPORTED, "dr. a")
    assert store.status_counts() == {Status.NEW: 2, Status.OPENED: 0, Status.REPORTED: 1,
                                     Status.DISMISSED: 0, Status.CONFLICT: 0}


# --- study and instance integrity (issue 27) -------------------------------------------------

VICTIM, OTHER = "1" * 64, "2" * 64  # two patients' keys (salted hashes, never the IDs)


def test_a_film_of_another_patient_is_listed_apart_and_its_results_never_queued(
        store: WorklistStore) -> None:
    mine = film("S", "S.1", 0.2, patient_key=VICTIM, content_hash="a" * 64)
    theirs = film("S", "S.2", 0.99, patient_key=OTHER, content_hash="b" * 64, minutes=1)
    store.add_received([mine], {"S.1": [b"sr of S.1"]})
    added = store.add_received([theirs], {"S.2": [b"sr of S.2"]})
    assert added.conflicts == {"S.2": Conflict.PATIENT}
    [victim, apart] = sorted(store.entries().entries, key=lambda e: e.status != Status.NEW)
    assert victim.study_instance_uid == "S"
    assert victim.triage_score == triage_score(0.2, mine.threshold)
    assert [f.sop_instance_uid for f in victim.films] == ["S.1"]  # its score did not jump
    assert apart.status == Status.CONFLICT and apart.conflict_of == "S"
    assert apart.study_instance_uid != "S"
    assert [f.sop_instance_uid for f in apart.films] == ["S.2"]
    assert [d.sop_instance_uid for d in store.due_deliveries(T0 + timedelta(days=1))] == \
        ["S.1"]
    assert store.status_counts()[Status.CONFLICT] == 1
    # The same patient's next film joins the conflict entry, not the study.
    again = film("S", "S.3", 0.5, patient_key=OTHER, content_hash="c" * 64, minutes=2)
    assert store.add_received([again]).conflicts == {"S.3": Conflict.PATIENT}
    assert store.entry(apart.id).films[-1].sop_instance_uid == "S.3"


def test_the_same_sop_instance_uid_with_other_pixels_is_a_conflict_and_the_first_stands(
        store: WorklistStore) -> None:
    first = film("S", "S.1", 0.2, patient_key=VICTIM, content_hash="a" * 64)
    store.add_received([first], {"S.1": [b"sr"]})
    store.delivery_done(store.due_deliveries(T0 + timedelta(days=1))[0].id)  # delivered
    other = film("S", "S.1", 0.9, patient_key=VICTIM, content_hash="b" * 64, minutes=1)
    added = store.add_received([other], {"S.1": [b"another sr under the same uid"]})
    assert added.conflicts == {"S.1": Conflict.INSTANCE}
    [entry] = store.entries().entries
    assert [f.probability for f in entry.films] == [0.2]
    assert store.due_deliveries(T0 + timedelta(days=1)) == []  # nothing new under the UID
    # The same pixels again (a PACS retrying) is no conflict.
    assert store.add_received([first]).conflicts == {}


def test_the_same_sop_instance_uid_in_another_study_is_a_conflict(
        store: WorklistStore) -> None:
    store.add_received([film("S", "S.1", 0.2, patient_key=VICTIM, content_hash="a" * 64)])
    moved = film("T", "S.1", 0.2, patient_key=VICTIM, content_hash="a" * 64)
    assert store.add_received([moved], {"S.1": [b"sr"]}).conflicts == \
        {"S.1": Conflict.INSTANCE}
    assert [e.study_instance_uid for e in store.entries().entries] == ["S"]


def test_a_study_stored_before_keys_were_kept_takes_the_first_key_it_sees(
        store: WorklistStore) -> None:
    store.add_films([film("S", "S.1", 0.2)])  # no key, no hash: stored by older code
    assert store.add_received([film("S", "S.2", patient_key=VICTIM)]).conflicts == {}
    assert store.add_received([film("S", "S.3", patient_key=OTHER)]).conflicts == \
        {"S.3": Conflict.PATIENT}
    assert store.add_received([film("S", "S.1", 0.2, content_hash="d" * 64)]).conflicts \
        == {}  # an unhashed film takes the first hash it is sent again with
    assert store.add_received([film("S", "S.1", 0.2, content_hash="e" * 64)]).conflicts \
        == {"S.1": Conflict.INSTANCE}
