"""Decoding in worker processes: a per-image time budget that kills and replaces the worker,
a memory cap per worker, and health checks that answer while every worker is busy."""

from __future__ import annotations

import io
import os
import signal
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.contract.drift import film_digest
from app.contract.errors import DecodeBudgetError, WorkerLostError
from app.errors import ServerBusyError
from app.services.decode_pool import DecodePool, InlineDecoder
from app.services.film import FilmJob as Job
from tests.builders.images import jpeg_bytes, png16_bytes
from tests.servers import poll, running_server
from tests.services.pool_probe import worker_pids


def _big_png16(side: int) -> bytes:
    """A 16-bit PNG of `side` x `side` that compresses to little: slow to inflate, small to
    send."""
    rows = np.linspace(0, 65535, side, dtype=np.uint16)
    film = np.broadcast_to(rows[:, None], (side, side)).copy()
    buffer = io.BytesIO()
    Image.fromarray(film).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _slow_progressive_jpeg(side: int = 7000) -> bytes:
    """A 49-megapixel progressive JPEG: each of its scans is a pass over the whole film."""
    rng = np.random.default_rng(0)
    film = Image.fromarray(rng.integers(0, 255, (side // 50, side // 50)).astype(np.uint8))
    buffer = io.BytesIO()
    film.resize((side, side), Image.Resampling.BICUBIC).save(buffer, "JPEG", progressive=True,
                                                             quality=95)
    return buffer.getvalue()


def _job(data: bytes) -> Job:
    return Job(data, (64, 64), 3, None, 60_000_000)


def test_pool_and_inline_decoder_give_the_same_film():
    data = jpeg_bytes(300, 260)
    pool = DecodePool(1, timeout=30)
    try:
        pooled = pool.prepare(_job(data))
    finally:
        pool.close()
    inline = InlineDecoder().prepare(_job(data))
    np.testing.assert_array_equal(pooled.model_input, inline.model_input)
    assert pooled.facts == inline.facts


def test_a_decode_over_budget_is_stopped_and_its_worker_replaced():
    pool = DecodePool(1, timeout=0.05)
    try:
        before = worker_pids(pool)
        with pytest.raises(DecodeBudgetError):
            pool.prepare(_job(_big_png16(6000)))
        after = worker_pids(pool)
        assert len(after) == 1 and after != before  # a fresh worker took its place
        pool.timeout = 30  # the new worker needs a moment to start
        assert pool.prepare(_job(png16_bytes())).model_input.shape == (64, 64, 3)
    finally:
        pool.close()


def test_a_worker_that_runs_out_of_memory_answers_and_keeps_serving():
    pool = DecodePool(1, timeout=30, memory_mb=220)  # about 160 MB at rest; +98 MB for it
    try:
        from app.contract.errors import TooManyPixelsError

        with pytest.raises(TooManyPixelsError):
            pool.prepare(_job(_big_png16(7000)))
        assert pool.prepare(_job(jpeg_bytes())).model_input.shape == (64, 64, 3)
    finally:
        pool.close()


def _until(condition, seconds: float = 30) -> None:
    poll(condition, seconds, "the pool's state", interval=0.005)


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process so far, in clock ticks (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


@pytest.mark.slow
def test_no_free_worker_within_the_wait_is_busy():
    pool = DecodePool(1, timeout=30, wait=0.1)
    try:
        pool.prepare(_job(jpeg_bytes()))  # started
        with ThreadPoolExecutor(2) as threads:
            slow = threads.submit(pool.prepare, _job(_big_png16(7000)))
            _until(pool._idle.empty)  # the slow film holds the only worker
            with pytest.raises(ServerBusyError):
                pool.prepare(_job(jpeg_bytes()))
            assert slow.result().model_input.shape == (64, 64, 3)
    finally:
        pool.close()


def test_the_app_answers_a_runaway_decode_413_and_goes_on(client_factory):
    with client_factory(decode_workers=1, decode_timeout_seconds=0.05) as client:
        response = client.post("/predict", files={"file": ("x.png", _big_png16(6000))})
        assert response.status_code == 413 and response.json()["error"] == "decode_too_slow"
        client.app.state.decoder.timeout = 30
        assert client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())}).status_code \
            == 200


@pytest.mark.slow
def test_health_answers_at_once_while_40_heavy_uploads_are_in_flight(tmp_path):
    """The attack of the serving issue: 40 concurrent uploads of a 49-megapixel progressive
    JPEG. Health and readiness answer throughout; a normal film is scored or refused with 503,
    never queued behind them. (How fast they answer is measured by benchmarks/load.py, not
    held to a wall-clock limit here.)"""
    heavy = _slow_progressive_jpeg()
    with running_server(tmp_path / "server.log", decode_timeout_seconds="5") as url, \
            httpx.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(41) as pool:
        flood = [pool.submit(client.post, "/predict", files={"file": ("x.jpeg", heavy)})
                 for _ in range(40)]
        health, normal = [], []
        while not all(f.done() for f in flood):
            for path in ("/healthz", "/readyz"):
                health.append(client.get(path).status_code)
            answer = client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
            normal.append(answer.status_code)
            futures.wait(flood, timeout=0.1, return_when=futures.ALL_COMPLETED)
        statuses = [f.result().status_code for f in flood]
    assert len(health) >= 4, "the flood ended before health could be asked"
    assert set(health) == {200}, health
    assert set(statuses) <= {200, 413, 503} and 200 in statuses  # scored, stopped or refused
    assert set(normal) <= {200, 503}, normal


@pytest.mark.slow
def test_a_worker_killed_mid_decode_is_replaced_and_the_film_refused():
    pool = DecodePool(1, timeout=30)
    try:
        pool.prepare(_job(jpeg_bytes()))
        (pid,) = worker_pids(pool)
        with ThreadPoolExecutor(1) as threads:
            slow = threads.submit(pool.prepare, _job(_big_png16(7000)))
            _until(pool._idle.empty)
            busy_from = _cpu_ticks(pid)
            _until(lambda: _cpu_ticks(pid) > busy_from)  # decoding, not just handed the job
            os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
            with pytest.raises(WorkerLostError):
                slow.result()
        assert worker_pids(pool) != [pid]
        assert pool.prepare(_job(jpeg_bytes())).model_input.shape == (64, 64, 3)
    finally:
        pool.close()


def test_an_unexpected_error_in_a_worker_is_reported_and_the_worker_kept():
    pool = DecodePool(1, timeout=30)
    try:
        pool.prepare(_job(jpeg_bytes()))
        before = worker_pids(pool)
        bad = Job(jpeg_bytes(), (64, 64), 2, None, 60_000_000)  # 2 channels: a bug of ours
        with pytest.raises(RuntimeError, match="channels must be 1 or 3"):
            pool.prepare(bad)
        assert worker_pids(pool) == before
        assert pool.prepare(_job(jpeg_bytes())).model_input.shape == (64, 64, 3)
    finally:
        pool.close()


def test_a_job_that_cannot_be_sent_leaves_its_worker_ready_for_the_next():
    """A job goes out in two messages (decode_pool.send_job): one whose bytes are not
    bytes-like fails before the first, so the worker never waits for bytes that do not
    come, nor reads the next job as film bytes."""
    pool = DecodePool(1, timeout=30)
    try:
        before = worker_pids(pool)
        with pytest.raises(TypeError):
            pool.prepare(_job(None))  # type: ignore[arg-type]
        film = pool.prepare(_job(jpeg_bytes()))
        assert film.model_input.shape == (64, 64, 3)
        assert worker_pids(pool) == before
    finally:
        pool.close()


def test_a_worker_may_send_back_only_a_film_or_an_error():
    import pickle

    from app.services.decode_pool import _loads

    film = InlineDecoder().prepare(_job(jpeg_bytes()))
    ok, value = _loads(pickle.dumps((True, film)))
    np.testing.assert_array_equal(value.model_input, film.model_input)
    with pytest.raises(OSError, match="unreadable answer"):
        _loads(pickle.dumps((True, os.system)))  # what a compromised worker would try


def test_a_failed_film_leaves_nothing_behind_in_its_worker(monkeypatch):
    """A decode that fails late (after its arrays exist) must not keep them until the next
    job: held by the error's traceback, they once made the next film run out of memory."""
    import threading
    import weakref
    from multiprocessing import Pipe

    from app.contract.errors import CorruptImageError
    from app.services import decode_pool as decoders

    refs = []

    def failing(job):
        film = np.zeros((1000, 1000))
        refs.append(weakref.ref(film))
        try:
            raise ValueError("deep inside a decoder")
        except ValueError as exc:  # chained, as the decode boundary chains every failure
            raise CorruptImageError("late failure") from exc

    monkeypatch.setattr(decoders, "prepare_film", failing)
    server_end, worker_end = Pipe()
    worker = threading.Thread(target=decoders._serve, args=(worker_end, None), daemon=True)
    worker.start()
    assert server_end.recv() == "ready"
    decoders.send_job(server_end, _job(b"x"))
    ok, error, spent = decoders._loads(server_end.recv_bytes())
    assert not ok and isinstance(error, CorruptImageError) and not spent
    _until(lambda: refs[0]() is None, seconds=5)  # freed before any next job arrives
    server_end.close()
    worker.join(timeout=5)


def test_a_job_carries_the_model_s_checks_by_reference_and_decodes_the_same():
    """A pooled job names the model's folder instead of carrying its guard matrix and
    orientation detector (61 of 67 KB a job); the worker reads them there, once, and the
    film comes out as the inline decode of the full job gives it."""
    import pickle

    from app.contract.card import read_card
    from app.services.pipeline import film_job
    from app.services.saved_model import read_checks
    from tests.servers import REPO

    folder = REPO / "models" / "pneumonia" / "2"
    card = read_card(folder)
    guard, detector = read_checks(folder, card)
    job = film_job(card, guard, detector, 60_000_000, jpeg_bytes(300, 260),
                   checks_from=str(folder))
    assert guard is not None and detector is not None
    assert len(pickle.dumps(job.lean())) < len(pickle.dumps(job)) - 50_000
    pool = DecodePool(1, timeout=30)
    try:
        pooled = pool.prepare(job)
    finally:
        pool.close()
    inline = InlineDecoder().prepare(job)
    np.testing.assert_array_equal(pooled.model_input, inline.model_input)
    assert (pooled.reasons, pooled.guard_warnings, pooled.statistics) == \
        (inline.reasons, inline.guard_warnings, inline.statistics)
    assert dict(pooled.statistics).keys() == {"brightness", "contrast", "guard_distance"}
    assert pooled.digest == inline.digest == film_digest(pooled.model_input)


def test_the_admission_lines_up_films_by_weight_first_come_first_served():
    """Four places: a film of three and one of one take them all; a heavy film (three)
    then waits at the head of the line and a light one behind it is not let past it; a
    third caller finds the line (of two) full at once; a weight over the limit counts as
    the limit; each place comes back."""
    import threading

    from app.services.decode_pool import Admission
    from tests.servers import poll

    admission = Admission(4, queue=2, wait=30)
    order = []

    def later(name, weight):
        with admission.admit(weight):
            order.append(name)

    with admission.admit(3):
        with admission.admit(1):
            assert admission.busy == 4 and not admission.has_room
            heavy = threading.Thread(target=later, args=("heavy", 3))
            heavy.start()
            poll(lambda: admission.waiting == 1, 10, "the heavy film in the line")
            light = threading.Thread(target=later, args=("light", 1))
            light.start()
            poll(lambda: admission.waiting == 2, 10, "the light film behind it")
            assert admission.full
            with pytest.raises(ServerBusyError), admission.admit(1):
                pass
        # A place is free, enough for the light film, but it waits behind the heavy one.
        assert admission.busy == 3 and admission.waiting == 2 and order == []
    heavy.join()
    light.join()
    assert sorted(order) == ["heavy", "light"]
    assert admission.busy == 0 and admission.waiting == 0
    with admission.admit(99):  # over the limit: runs alone
        assert admission.busy == 4


def test_a_film_that_waits_its_time_in_the_line_is_refused_and_leaves_it():
    from app.services.decode_pool import Admission

    admission = Admission(1, queue=4, wait=0.2)
    with admission.admit():
        with pytest.raises(ServerBusyError), admission.admit():
            pass
        assert admission.waiting == 0
        with pytest.raises(ServerBusyError), admission.admit(queue=False):  # never waits
            pass
    with admission.admit():
        assert admission.busy == 1
