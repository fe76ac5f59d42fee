"""Bounds that hold under load: films past the decode places wait in a bounded line (never
on the event loop) and past it are refused at once, slow uploads are cut off, the health
checks are answered while every place is taken, and a film costs one thread call."""

import asyncio
import threading

import pytest

from app.errors import UploadTimeoutError
from app.web.upload import _chunks
from tests.builders.images import jpeg_bytes
from tests.servers import poll


@pytest.fixture(scope="module")
def one_slot_client(client_factory):
    with client_factory(max_concurrent_decodes=1, decode_queue=0) as client:
        yield client


def test_requests_beyond_the_decode_places_and_their_line_get_503_at_once(one_slot_client):
    client = one_slot_client
    with client.app.state.decoder.admit():  # an upload in flight holds the only place
        for path, field in (("/predict", "file"), ("/predict/batch", "files"), ("/", "files")):
            response = client.post(path, files={field: ("x.jpeg", jpeg_bytes())})
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert response.json()["error"] == "busy"
        assert client.get("/healthz").status_code == 200  # health never waits for a slot
        assert client.get("/readyz").status_code == 200
    assert client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())}).status_code == 200


def test_films_past_the_decode_places_wait_their_turn_in_the_line(client_factory):
    """Ordinary overload queues rather than failing: with the only place taken, two films
    wait in the line (in their route threads, the event loop free: health answers) and are
    scored once it is given back; a third, past the line of two, is refused at once. A
    worklist request, which takes its place on the event loop, never waits in it."""
    with client_factory(max_concurrent_decodes=1, decode_queue=2,
                        decode_queue_seconds=60) as client:
        admission = client.app.state.decoder.admission
        answers = []
        with client.app.state.decoder.admit():
            waiting = [threading.Thread(target=lambda: answers.append(client.post(
                "/predict", files={"file": ("x.jpeg", jpeg_bytes())}))) for _ in range(2)]
            for thread in waiting:
                thread.start()
            poll(lambda: admission.waiting == 2, 30, "two films in the line")
            assert client.get("/healthz").status_code == 200
            third = client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
            assert third.status_code == 503 and third.json()["error"] == "busy"
            batch = client.post("/predict/batch", files={"files": ("x.jpeg", jpeg_bytes())})
            assert batch.status_code == 503
        for thread in waiting:
            thread.join()
        assert [answer.status_code for answer in answers] == [200, 200]


def test_a_film_costs_one_thread_call(one_slot_client, monkeypatch):
    """The body is read on the event loop; parsing it, its admission, scoring and the
    answer's JSON are one hand-off to a thread (they were four: the body's parse and its
    end, the route, FastAPI's response validation)."""
    import anyio.to_thread

    calls = []
    real = anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):
        calls.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    answer = one_slot_client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
    assert answer.status_code == 200 and len(calls) == 1, calls


def test_slots_are_given_back_after_errors(one_slot_client):
    for _ in range(3):  # a leak would leave the one slot taken after the first
        assert one_slot_client.post("/predict", files={"file": ("x", b"nope")}).status_code \
            == 415
    assert one_slot_client.post("/predict",
                                files={"file": ("x.jpeg", jpeg_bytes())}).status_code == 200


class _SlowRequest:
    def __init__(self, pauses: list[float]) -> None:
        self.pauses = pauses

    async def stream(self):
        for pause in self.pauses:
            await asyncio.sleep(pause)
            yield b"x"


def _read(request, idle: float, total: float, min_rate: float = 0.0) -> int:
    async def run() -> int:
        return len([chunk async for chunk in _chunks(request, idle, total, min_rate)])

    return asyncio.run(run())


@pytest.mark.slow
def test_an_upload_that_trickles_below_the_minimum_rate_is_stopped(monkeypatch):
    """The slow-loris of the red-team pass: a byte every 0.2 s never trips the idle or total
    timeout, and held a decode slot for two minutes; the average rate now cuts it off."""
    import time

    monkeypatch.setattr("app.web.upload._RATE_GRACE_SECONDS", 0.5)
    trickle = [0.2] * 20  # 5 bytes/s for 4 s
    assert _read(_SlowRequest(trickle), idle=1, total=10) == 20  # no minimum: all read
    started = time.monotonic()
    with pytest.raises(UploadTimeoutError):
        _read(_SlowRequest(trickle), idle=1, total=10, min_rate=1000)
    assert time.monotonic() - started < 1.5
    assert _read(_SlowRequest([0.0] * 20), idle=1, total=10, min_rate=1000) == 20


def test_an_upload_that_pauses_too_long_is_stopped():
    assert _read(_SlowRequest([0.0, 0.01, 0.01]), idle=0.5, total=5) == 3
    with pytest.raises(UploadTimeoutError):
        _read(_SlowRequest([0.0, 0.3]), idle=0.1, total=5)


def test_an_upload_that_trickles_past_the_total_is_stopped():
    with pytest.raises(UploadTimeoutError):
        _read(_SlowRequest([0.05] * 20), idle=0.5, total=0.3)


def test_multipart_bodies_are_parsed_off_the_event_loop(one_slot_client, monkeypatch):
    """The event loop only moves bytes; python-multipart's work (and a body of many tiny
    parts is a lot of it) runs in a worker thread."""
    import threading

    from python_multipart.multipart import MultipartParser

    threads = set()
    write = MultipartParser.write

    def recording_write(self, data):
        threads.add(threading.current_thread().name)
        return write(self, data)

    monkeypatch.setattr(MultipartParser, "write", recording_write)
    loop_thread = one_slot_client.portal.call(lambda: threading.current_thread().name)
    assert one_slot_client.post("/predict",
                                files={"file": ("x.jpeg", jpeg_bytes())}).status_code == 200
    assert threads and loop_thread not in threads
