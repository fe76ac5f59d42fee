"""Results to the PACS: C-STORE and STOW-RS senders against stand-ins on loopback, and the
DeliveryWorker's retries with back-off on the in-memory job source."""

from __future__ import annotations

import http.server
import random
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from pynetdicom import evt

from app.contract.identifiers import InstanceFacts
from app.dicom.delivery import (
    Backoff,
    DeliveryWorker,
    Destination,
    encode,
    every,
    senders_from_settings,
    store_scu,
    stow_rs,
)
from app.dicom.ingest import ScoringIngest
from app.dicom.results import ResultBuilder
from app.dicom.store_adapter import StoreCommit, StoreJobSource
from app.dicom.stow import StowSession, boundary_of
from app.services.intake import film_record
from app.services.observer import Observer
from app.store import WorklistStore
from app.web.upload import RelatedParts
from tests.builders.dicom import study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import (
    PACS_AE,
    MemoryJobSource,
    StandInPacs,
    built,
    received,
    scoring_ingest,
    stand_in_scorer,
)
from tests.servers import free_port, poll, settings_for_tests


def _results(seed: int = 0):
    ingest, _ = scoring_ingest(results=ResultBuilder())
    return built(ingest(received(study_film(xray_like(96, 80, seed=seed))), "dicom:PACS"))


def _recipe(seed: int = 0) -> tuple[bytes, ...]:
    """A delivery job's parts as the ingest queues them: the results' recipe."""
    ingest, _ = scoring_ingest(results=ResultBuilder())
    return ingest(received(study_film(xray_like(96, 80, seed=seed))), "dicom:PACS").results


@pytest.mark.parametrize(("text", "expected"), [
    ("PACS@127.0.0.1:4242", Destination("PACS", "127.0.0.1", 4242)),
    ("ORTHANC@pacs.example:104", Destination("ORTHANC", "pacs.example", 104))])
def test_destination_parse(text, expected):
    assert Destination.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["PACS", "PACS@host", "@host:1", "PACS@host:port",
                                  "A_TITLE_LONGER_THAN_16@h:1", "PACS@host:70000"])
def test_destination_parse_refuses_what_is_not_ae_at_host_port(text):
    with pytest.raises(ValueError):
        Destination.parse(text)


def test_store_scu_delivers_sr_and_sc():
    results = _results()
    with StandInPacs() as pacs:
        outcome = store_scu(Destination(PACS_AE, "127.0.0.1", pacs.port))(results)
    assert outcome.delivered, outcome.detail
    assert set(pacs.received) == {str(r.SOPInstanceUID) for r in results}


def test_store_scu_to_a_destination_down_is_not_delivered():
    outcome = store_scu(Destination(PACS_AE, "127.0.0.1", free_port()), timeout=5)(_results())
    assert not outcome.delivered and "did not answer" in outcome.detail


def test_store_scu_refused_by_the_destination_is_not_delivered():
    with StandInPacs(status=0xA700) as pacs:
        outcome = store_scu(Destination(PACS_AE, "127.0.0.1", pacs.port))(_results())
    assert not outcome.delivered and "0xA700" in outcome.detail


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_result_whose_destination_is_down_is_delivered_when_it_comes_back():
    clock, source = _Clock(), MemoryJobSource()
    port = free_port()
    send = store_scu(Destination(PACS_AE, "127.0.0.1", port), timeout=5)
    backoff = Backoff(first=5, longest=60, jitter=0)
    results = _results()
    source.add(results, clock.now)
    worker = DeliveryWorker(source, send, backoff, clock=clock)
    assert worker.run_once() == 0  # down
    [(job, due, detail)] = source.waiting()
    assert job.attempts == 1 and due == clock.now + timedelta(seconds=5)
    assert "did not answer" in detail
    clock.now += timedelta(seconds=4)
    assert worker.run_once() == 0 and source.waiting()[0][0].attempts == 1  # not yet due
    with StandInPacs(port=port) as pacs:
        clock.now += timedelta(seconds=1)
        # A fresh worker on the same source, as after a restart (the app's source is its
        # database; this in-memory one only stands in for it).
        assert DeliveryWorker(source, send, backoff, clock=clock).run_once() == 1
    assert source.waiting() == []
    assert set(pacs.received) == {str(r.SOPInstanceUID) for r in results}


def test_worker_builds_a_recipe_job_into_the_results_the_ingest_promised():
    """The queue keeps the recipe; the worker builds the SR and secondary capture from it,
    the same objects (UIDs, bytes) as a build at the ingest would have been."""
    parts = _recipe()
    promised = ResultBuilder().build_job(parts)
    source = MemoryJobSource()
    source.add(parts)
    with StandInPacs() as pacs:
        worker = DeliveryWorker(source, store_scu(Destination(PACS_AE, "127.0.0.1",
                                                              pacs.port)),
                                build=ResultBuilder().build_job)
        assert worker.run_once() == 1
    assert set(pacs.received) == {str(ds.SOPInstanceUID) for ds in promised}
    assert source.waiting() == []


class _CountingPacs(StandInPacs):
    """A stand-in PACS that counts the associations it was asked for."""

    associations = 0

    def start(self) -> _CountingPacs:
        super().start()
        self._server.bind(evt.EVT_ESTABLISHED, self._opened)
        return self

    def _opened(self, event) -> None:
        self.associations += 1


class _TogetherSource(MemoryJobSource):
    """A job source that removes delivered jobs together, and says how it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.removed: list[list] = []

    def done_all(self, jobs) -> None:
        self.removed.append(sorted(job.id for job in jobs))
        for job in jobs:
            self.done(job)


def test_a_pass_sends_its_jobs_in_one_association_and_removes_them_together():
    """Five jobs due: one association carries all ten results, and the five leave the
    queue in one call (one transaction for the store), not one association and one
    transaction a film."""
    source = _TogetherSource()
    for seed in range(5):
        source.add(_recipe(seed))
    with _CountingPacs() as pacs:
        worker = DeliveryWorker(source, store_scu(Destination(PACS_AE, "127.0.0.1",
                                                              pacs.port)),
                                build=ResultBuilder().build_job)
        assert worker.run_once() == 5
    assert pacs.associations == 1 and len(pacs.received) == 10
    assert source.removed == [[1, 2, 3, 4, 5]] and source.waiting() == []


def test_jobs_are_shared_among_parallel_associations_with_tcp_nodelay(monkeypatch):
    """With two associations a pass's jobs go out on two connections at once, each with
    Nagle's algorithm off (pynetdicom leaves it on)."""
    import socket

    import app.dicom.delivery as delivery

    flags = []
    real = delivery.no_delay

    def recording(sock):
        real(sock)
        flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(delivery, "no_delay", recording)
    source = _TogetherSource()
    for seed in range(8):  # two associations' worth (JOBS_PER_ASSOCIATION)
        source.add(_recipe(seed))
    with _CountingPacs() as pacs:
        worker = DeliveryWorker(source, store_scu(Destination(PACS_AE, "127.0.0.1",
                                                              pacs.port)),
                                build=ResultBuilder().build_job, associations=3)
        try:
            assert worker.run_once() == 8
        finally:
            worker.stop()
    assert pacs.associations == 2 and len(pacs.received) == 16
    assert flags == [1, 1] and source.removed == [list(range(1, 9))]


def test_a_refused_job_leaves_the_others_of_its_association_delivered():
    """The PACS refuses one job's SR: that job waits for its next attempt, the others of
    the same association are delivered."""
    source = _TogetherSource()
    refused = source.add(_recipe(0))
    for seed in (1, 2):
        source.add(_recipe(seed))
    refused_uid = str(ResultBuilder().build_job(refused.instances)[0].SOPInstanceUID)

    class Picky(_CountingPacs):
        def _on_store(self, event):
            if str(event.request.AffectedSOPInstanceUID) == refused_uid:
                return 0xA700
            return super()._on_store(event)

    with Picky() as pacs:
        worker = DeliveryWorker(source, store_scu(Destination(PACS_AE, "127.0.0.1",
                                                              pacs.port)),
                                build=ResultBuilder().build_job)
        assert worker.run_once() == 2
    assert pacs.associations == 1
    [(waiting, _, detail)] = source.waiting()
    assert waiting.id == refused.id and waiting.attempts == 1 and "0xA700" in detail


class _Counted(Observer):
    def __init__(self) -> None:
        self.failures: list[str] = []

    def results_failed(self, reason: str) -> None:
        self.failures.append(reason)


def test_a_job_whose_results_cannot_be_built_is_abandoned_listed_and_counted(caplog):
    """Not retried for ever, not dropped silently: its film gets the reason."""
    counted, source = _Counted(), MemoryJobSource()
    source.add([b"PTR1" + b"\x00\x00\x00\x05{oops"])  # a recipe cut short
    with StandInPacs() as pacs:
        worker = DeliveryWorker(source, store_scu(Destination(PACS_AE, "127.0.0.1",
                                                              pacs.port)),
                                build=ResultBuilder().build_job, metrics=counted)
        assert worker.run_once() == 0
    assert pacs.received == {} and source.waiting() == []
    assert source.abandoned_reasons == ["build"] and counted.failures == ["build"]
    assert "Traceback" not in caplog.text


def test_backoff_doubles_up_to_its_longest():
    backoff = Backoff(first=5, longest=60, jitter=0)
    assert [backoff.delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    spread = Backoff(first=10, jitter=0.1)
    assert all(9 <= spread.delay(1, random.Random(s)) <= 11 for s in range(20))


def test_worker_thread_delivers_when_woken():
    source = MemoryJobSource()
    with StandInPacs() as pacs:
        worker = DeliveryWorker(source, store_scu(Destination(PACS_AE, "127.0.0.1",
                                                              pacs.port)),
                                poll_seconds=60).start()
        try:
            results = _results()
            source.add(results)
            worker.wake()
            poll(lambda: len(pacs.received) == 2, 30, "the results at the PACS")
        finally:
            worker.stop()
    poll(lambda: source.waiting() == [], 5, "the job to be removed")


@contextmanager
def _stow_server(status_of_ingest=None):
    """A DICOMweb stand-in: STOW-RS split by the web layer's RelatedParts and stored by
    app/dicom/stow.py into a recording ingest."""
    ingest, recorder = scoring_ingest()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            import json

            reader = RelatedParts(boundary_of(self.headers["Content-Type"]), 1 << 24, 100)
            session = StowSession(ingest)
            reader.feed([self.rfile.read(int(self.headers["Content-Length"]))])
            reader.close()
            for part in reader.completed:
                session.add(part.data, part.content_type)
            status, answer = session.response()
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicomweb/studies", recorder
    finally:
        server.shutdown()
        server.server_close()


def test_stow_rs_sender_delivers_a_secondary_capture_our_own_stow_reads():
    """Our STOW-RS parser takes the SC the sender posts (and, as our own result,
    acknowledges it without listing it)."""
    _, sc = _results()
    with _stow_server() as (url, recorder):
        outcome = stow_rs(url)([sc])
    assert outcome.delivered, outcome.detail
    assert recorder.committed == []


def test_stow_rs_sender_refused_is_not_delivered():
    sr, _ = _results()
    sr.SOPClassUID = "1.2.826.0.1.3680043.8.498.999"  # no storage class: refused (0x0122)
    with _stow_server() as (url, _):
        outcome = stow_rs(url)([sr])
    assert not outcome.delivered and "409" in outcome.detail


def test_senders_from_settings():
    assert senders_from_settings(settings_for_tests()) is None
    settings = settings_for_tests(results_destination="PACS@127.0.0.1:4242",
                                  results_dicomweb_url="http://127.0.0.1:1/studies")
    assert senders_from_settings(settings) is not None
    assert every([])([]).delivered


# --- on the worklist store (app/dicom/store_adapter.py) -------------------------------------


def _films_of(store: WorklistStore) -> dict[str, str | None]:
    return {film.sop_instance_uid: film.results_error
            for entry in store.entries(limit=500).entries for film in entry.films}


def test_past_the_bound_a_film_s_results_are_refused_visibly_and_counted(worklist):
    """Results wait while the PACS is down, each a recipe in the database: at most
    PNEUMONIA_RESULTS_MAX_PENDING of them; past it a new film keeps its score, its results
    are not made, and it says so."""
    counted = _Counted()
    scorer = stand_in_scorer(0.9)
    ingest = ScoringIngest(lambda: scorer, StoreCommit(worklist, max_pending=2,
                                                       metrics=counted), ResultBuilder())
    films = [study_film(xray_like(96, 80, seed=seed)) for seed in range(3)]
    for film in films:
        ingest(received(film), "dicom:PACS")
    assert worklist.pending_results() == 2
    assert _films_of(worklist) == {films[0].SOPInstanceUID: None,
                                   films[1].SOPInstanceUID: None,
                                   films[2].SOPInstanceUID: "queue_full"}
    assert counted.failures == ["queue_full"]


def test_a_queued_job_that_cannot_be_built_leaves_the_queue_and_marks_its_film(worklist):
    """A recipe the worker cannot build (here: cut short) is never retried for ever nor
    dropped silently: the film gets reason build, the job leaves, the count moves."""
    counted = _Counted()
    scorer = stand_in_scorer(0.9)
    ingest = ScoringIngest(lambda: scorer, StoreCommit(worklist), ResultBuilder())
    film = study_film(xray_like(96, 80))
    result = ingest(received(film), "dicom:PACS")
    with worklist.engine.begin() as connection:  # the stored recipe, damaged
        connection.exec_driver_sql("UPDATE deliveries SET payload = substr(payload, 1, 60)")
    with StandInPacs() as pacs:
        worker = DeliveryWorker(StoreJobSource(worklist),
                                store_scu(Destination(PACS_AE, "127.0.0.1", pacs.port)),
                                build=ResultBuilder().build_job, metrics=counted)
        assert worker.run_once() == 0
    assert pacs.received == {} and worklist.pending_results() == 0
    assert _films_of(worklist) == {film.SOPInstanceUID: "build"}
    assert counted.failures == ["build"] and result.results_error is None


def test_a_job_from_before_recipes_is_delivered_as_it_was_queued(worklist):
    """Rows queued by the previous version hold the SR and secondary capture as Part 10
    bytes; after an upgrade they are sent as they are."""
    ingest, _ = scoring_ingest(results=ResultBuilder())
    film = study_film(xray_like(96, 80))
    old = [encode(ds) for ds in built(ingest(received(film), "dicom:PACS"))]
    record = film_record(InstanceFacts.of(film), "dicom:PACS", datetime.now(UTC), None, None,
                         None)
    worklist.add_films([record], results={film.SOPInstanceUID: old})
    with StandInPacs() as pacs:
        worker = DeliveryWorker(StoreJobSource(worklist),
                                store_scu(Destination(PACS_AE, "127.0.0.1", pacs.port)),
                                build=ResultBuilder().build_job,
                                clock=lambda: datetime.now(UTC) + timedelta(seconds=1))
        assert worker.run_once() == 1
    assert len(pacs.received) == 2
