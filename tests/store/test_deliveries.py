"""app/store/deliveries.py through WorklistStore: results queued with their film in one
transaction, leased, retried, removed once delivered, gone with their study; both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.store import WorklistStore, upgrade
from app.store.deliveries import pack, unpack
from tests.store.factories import T0, film


def test_payloads_pack_and_unpack_any_instances():
    items = (b"", b"\x00" * 5, b"DICM" * 1000)
    assert unpack(pack(items)) == items and unpack(b"") == ()


def test_results_are_queued_with_their_film_and_leased_once(store: WorklistStore):
    (entry,) = store.add_films([film("1.2.3")], results={"1.2.3.1": [b"sr", b"sc"]})
    (job,) = store.due_deliveries(T0, lease_seconds=60)
    assert job.instances == (b"sr", b"sc") and job.study_id == entry.id and job.attempts == 0
    assert store.due_deliveries(T0) == []  # leased: another worker does not take it
    assert store.due_deliveries(T0 + timedelta(seconds=61))[0].id == job.id  # lease ran out
    assert store.undelivered() == {entry.id: store.undelivered()[entry.id]}
    assert store.undelivered()[entry.id].count == 1


def test_a_film_sent_twice_is_delivered_once(store: WorklistStore):
    store.add_films([film("1.2.3")], results={"1.2.3.1": [b"sr"]})
    store.add_films([film("1.2.3")], results={"1.2.3.1": [b"sr again"]})
    assert [job.instances for job in store.due_deliveries(T0)] == [(b"sr",)]


def test_failed_then_delivered(store: WorklistStore):
    (entry,) = store.add_films([film("1.2.3")], results={"1.2.3.1": [b"sr"]})
    (job,) = store.due_deliveries(T0)
    store.delivery_failed(job.id, T0 + timedelta(minutes=5), "association rejected")
    assert store.due_deliveries(T0 + timedelta(minutes=4)) == []
    assert store.undelivered()[entry.id].last_error == "association rejected"
    (again,) = store.due_deliveries(T0 + timedelta(minutes=5))
    assert again.attempts == 1
    store.delivery_done(again.id)
    assert store.undelivered() == {} and store.due_deliveries(T0 + timedelta(days=1)) == []


def test_results_survive_a_new_store_on_the_same_database(url: str):
    first = WorklistStore(url)
    first.add_films([film("1.2.3")], results={"1.2.3.1": [b"sr"]})
    first.close()  # as a restart would
    second = WorklistStore(url)
    try:
        due = datetime.now(UTC) + timedelta(seconds=1)  # queued on the real clock
        assert [job.instances for job in second.due_deliveries(due)] == [(b"sr",)]
    finally:
        second.close()


def test_retention_takes_undelivered_results_with_their_entry(store: WorklistStore):
    store.add_films([film("1.2.3")], results={"1.2.3.1": [b"sr"]})
    store.purge(T0 + timedelta(days=31), retention_days=30, audit_retention_days=365)
    assert store.undelivered() == {} and store.due_deliveries(T0 + timedelta(days=31)) == []


def test_the_worklist_shows_a_result_not_yet_delivered(client, tmp_path):
    """The API's entry and the page's row say so, with the last failure, until delivered."""
    worklist = client.app.state.store
    uid = f"1.2.826.0.1.{datetime.now(UTC).timestamp():.0f}"
    (entry,) = worklist.add_films([film(uid, minutes=60 * 24 * 365)],
                                  results={f"{uid}.1": [b"sr"]})
    (job,) = [j for j in worklist.due_deliveries(datetime.now(UTC)) if j.study_id == entry.id]
    worklist.delivery_failed(job.id, datetime.now(UTC) + timedelta(hours=1), "PACS refused")
    listed = client.get("/worklist/entries", params={"limit": 500}).json()["entries"]
    (mine,) = [e for e in listed if e["id"] == entry.id]
    assert mine["undelivered_results"] == 1 and mine["delivery_error"] == "PACS refused"
    page = client.get("/worklist/rows", params={"limit": 500}).text
    assert "Result not yet in the PACS (1 film): PACS refused" in page
    worklist.delivery_done(job.id)
    listed = client.get("/worklist/entries", params={"limit": 500}).json()["entries"]
    assert [e["undelivered_results"] for e in listed if e["id"] == entry.id] == [0]


def test_a_leased_job_carries_its_film_s_arrival_and_pending_counts_the_films(
        store: WorklistStore):
    assert store.pending_results() == 0
    store.add_films([film("1.2.3", minutes=7), film("1.2.4")],
                    results={"1.2.3.1": [b"sr", b"sc"], "1.2.4.1": [b"sr"]})
    assert store.pending_results() == 2  # films whose results wait, not instances
    arrivals = {job.sop_instance_uid: job.received_at for job in store.due_deliveries(T0)}
    assert arrivals == {"1.2.3.1": T0 + timedelta(minutes=7), "1.2.4.1": T0}
    store.delivery_done(store.due_deliveries(T0 + timedelta(hours=1))[0].id)
    assert store.pending_results() == 1


# What a delivery job holds of a patient (app/dicom/recipe.py keeps the header's name, ID
# and birth date for the PACS), and enough bytes that its row spills over several pages.
_IDENTITY = (b"Doe^Jane^Secret", b"PID-7731-SECRET", b"20200229")
_RECIPE = b"PTR1" + b"".join(_IDENTITY) + bytes(range(256)) * 400


def test_a_delivered_result_leaves_the_sqlite_files_and_their_write_ahead_log(tmp_path):
    """SECURITY.md says a delivered result leaves no copy: the row is overwritten in the
    file (secure_delete) and the log that held its insert is checkpointed and truncated."""
    url = f"sqlite:///{tmp_path / 'worklist.db'}"
    upgrade(url)
    store = WorklistStore(url)
    try:
        store.add_films([film("2.25.1")], results={"2.25.1.1": [_RECIPE]})
        held = b"".join(path.read_bytes() for path in tmp_path.glob("worklist.db*"))
        assert all(secret in held for secret in _IDENTITY)  # the test sees them when there
        (job,) = store.due_deliveries(datetime.now(UTC) + timedelta(seconds=1))
        store.delivery_done(job.id)
        # read while the store is open: closing its last connection would checkpoint anyway
        files = {path.name: path.read_bytes() for path in tmp_path.glob("worklist.db*")}
    finally:
        store.close()
    assert files["worklist.db-wal"] == b""
    for name, data in files.items():
        for secret in _IDENTITY:
            assert secret not in data, (name, secret)


def test_a_job_that_can_never_be_built_leaves_and_marks_its_film(store: WorklistStore):
    (entry,) = store.add_films([film("1.2.3")], results={"1.2.3.1": [_RECIPE]})
    (job,) = store.due_deliveries(T0)
    store.delivery_abandoned(job.id, "build")
    assert store.undelivered() == {} and store.pending_results() == 0
    assert [f.results_error for f in store.entry(entry.id).films] == ["build"]


def test_a_film_stored_with_its_results_error_keeps_it(store: WorklistStore):
    (entry,) = store.add_films([film("1.2.3", results_error="identity"), film("1.2.3", "1.2.3.2")])
    assert [f.results_error for f in store.entry(entry.id).films] == ["identity", None]


def test_the_worklist_shows_results_that_will_not_reach_the_pacs(client):
    """A result that cannot be made or queued is a reason on its film, in the API and on
    the page, with what to do: never an entry that looks delivered."""
    worklist = client.app.state.store
    uid = f"1.2.826.0.2.{datetime.now(UTC).timestamp():.0f}"
    (entry,) = worklist.add_films([film(uid, minutes=60 * 24 * 365,
                                        results_error="queue_full")])
    listed = client.get("/worklist/entries", params={"limit": 500}).json()["entries"]
    (mine,) = [e for e in listed if e["id"] == entry.id]
    (shown,) = mine["films"]
    assert shown["results_error"]["error"] == "queue_full"
    assert "PNEUMONIA_RESULTS_MAX_PENDING" in shown["results_error"]["detail"]
    page = client.get("/worklist/rows", params={"limit": 500}).text
    assert 'data-reason="queue_full"' in page and "Report this film from the PACS" in page
