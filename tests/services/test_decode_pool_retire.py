"""Decode workers are replaced, never reused, once a film ran them out of memory or left
their memory high (app/services/decode_pool.py); the 30000x30000 frame never gets there."""

import io

import numpy as np
import pytest
from PIL import Image

from app.contract.errors import TooManyPixelsError
from app.services.decode_pool import DecodePool, _out_of_memory
from app.services.film import FilmJob
from tests.builders import films as fb
from tests.builders.images import jpeg_bytes
from tests.services.pool_probe import worker_pids


def _job(data: bytes) -> FilmJob:
    return FilmJob(data, (64, 64), 3, None, 60_000_000)


def _big_png16(side: int) -> bytes:
    rows = np.linspace(0, 65535, side, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(np.broadcast_to(rows[:, None], (side, side)).copy()).save(
        buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def test_a_worker_that_ran_out_of_memory_is_replaced_before_the_next_film():
    pool = DecodePool(1, timeout=30, memory_mb=220)
    try:
        assert pool.prepare(_job(jpeg_bytes())).model_input.shape == (64, 64, 3)
        before = worker_pids(pool)
        with pytest.raises(TooManyPixelsError):
            pool.prepare(_job(_big_png16(7000)))
        assert worker_pids(pool) != before  # a fresh worker took its place
        assert pool.prepare(_job(jpeg_bytes())).model_input.shape == (64, 64, 3)
    finally:
        pool.close()


def test_a_worker_whose_memory_stays_high_after_a_film_is_replaced():
    pool = DecodePool(1, timeout=30, retire_mb=1)  # every worker is over 1 MB after a film
    try:
        before = worker_pids(pool)
        large = _big_png16(2100)  # 4.4 megapixels: its worker's memory is read
        assert pool.prepare(_job(large)).model_input.shape == (64, 64, 3)
        assert worker_pids(pool) != before
    finally:
        pool.close()


def test_after_a_small_film_its_worker_s_memory_is_not_read(monkeypatch):
    """A film of at most 4 megapixels cannot leave its worker holding half its cap: no
    read of /proc after it (one a film cost the server a system call or three per film),
    and the worker is kept even under a limit every worker is over."""
    import app.services.decode_pool as decode_pool

    reads = []
    real = decode_pool.address_space
    monkeypatch.setattr(decode_pool, "address_space",
                        lambda pid: reads.append(pid) or real(pid))
    pool = DecodePool(1, timeout=30, retire_mb=1)
    try:
        pool.prepare(_job(jpeg_bytes()))  # the worker's start reads it once, at rest
        reads.clear()
        before = worker_pids(pool)
        assert pool.prepare(_job(jpeg_bytes(seed=2))).model_input.shape == (64, 64, 3)
        assert reads == [] and worker_pids(pool) == before
    finally:
        pool.close()


def test_a_worker_under_its_limit_is_kept():
    pool = DecodePool(1, timeout=30, memory_mb=2048)
    try:
        pool.prepare(_job(jpeg_bytes()))
        before = worker_pids(pool)
        pool.prepare(_job(jpeg_bytes(seed=2)))
        assert worker_pids(pool) == before
    finally:
        pool.close()


@pytest.mark.realdata
def test_the_poisoning_frame_is_refused_unread_and_the_worker_scores_on(data_dir):
    poison = fb.poisoning_jpeg_extended(fb.gray_of(data_dir / "test/NORMAL/IM-0001-0001.jpeg"))
    assert len(poison) < 100_000
    pool = DecodePool(1, timeout=30, memory_mb=2048)
    try:
        for _ in range(3):
            with pytest.raises(TooManyPixelsError):
                pool.prepare(FilmJob(poison, (64, 64), 3, None, 50_000_000))
        film = (data_dir / "test/NORMAL/IM-0003-0001.jpeg").read_bytes()
        assert pool.prepare(_job(film)).model_input.shape == (64, 64, 3)
    finally:
        pool.close()


def test_memory_errors_are_recognised_in_an_errors_chain():
    try:
        try:
            raise MemoryError()
        except MemoryError as exc:
            raise TooManyPixelsError(None, None) from exc
    except TooManyPixelsError as outer:
        assert _out_of_memory(outer)
    assert _out_of_memory(RuntimeError("pylibjpeg: std::bad_alloc"))
    assert not _out_of_memory(ValueError("a damaged film"))


def test_films_of_worklists_leave_a_worker_to_single_films():
    """With two workers and one for worklists (bulk), a second worklist film waits for the
    first and is refused past `wait`, while a single film is decoded at once."""
    import threading

    from app.errors import ServerBusyError
    from tests.servers import poll

    # wait: well under the slow film's decode (about 0.5 s), which holds the bulk worker
    pool = DecodePool(2, timeout=60, memory_mb=None, wait=0.1, bulk_workers=1)
    try:
        slow = threading.Thread(target=pool.prepare, args=(_job(_big_png16(7500)),),
                                kwargs={"bulk": True})
        slow.start()
        poll(lambda: pool.bulk_busy == 1, 30, "the worklist film to take its worker")
        with pytest.raises(ServerBusyError):
            pool.prepare(_job(jpeg_bytes()), bulk=True)
        assert pool.prepare(_job(jpeg_bytes())).model_input.shape == (64, 64, 3)
        assert slow.is_alive()  # the single film did not wait for the worklist's
        slow.join()
        assert pool.prepare(_job(jpeg_bytes()), bulk=True).model_input.shape == (64, 64, 3)
    finally:
        pool.close()
