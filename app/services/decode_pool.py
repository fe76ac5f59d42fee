"""Where films are decoded: a pool of worker processes, each job on a time and memory budget.

Decoding is nearly all the work of a request (the network costs under a millisecond), and it
is the part an upload can make expensive: a many-scan progressive JPEG, a 49-megapixel PNG.
So it runs outside the server process, in `workers` processes (default: one per core):

- the event loop and the threads that answer health checks never decode;
- a job that runs past `timeout` seconds is stopped by killing its process, answered
  `DecodeBudgetError` (413), and a fresh worker takes its place;
- each worker's address space is capped (`memory_mb`), so a decode that would need more
  fails with MemoryError inside the worker (TooManyPixelsError, 413) instead of pushing the
  server out of memory; a worker that dies anyway is replaced the same way;
- a worker that reached its cap (a MemoryError anywhere in the film's error), or whose
  address space stays high after a film (above `retire_mb`; by default more than half of
  the room between its size at rest and the cap; read after every film but those of at
  most 4 megapixels, which cannot leave that much), as a decoder that does not give back
  what it took leaves it, is replaced, never reused: the next film
  must not fail for the last one's sake (two such uploads once left every worker unable to
  decode ordinary films while /readyz said 200);
- a request that finds no free worker within `wait` seconds (default: `timeout`) is
  answered 503 (busy).

Workers are started with `spawn`, not `fork`: a fork of a process that holds TensorFlow's
threads can deadlock, and the workers need only the light contract package.

`InlineDecoder` does the same work in the calling thread: for tests, tools, and
`decode_workers = 0`.

Both own the one admission rule (`admit`): at most `admitted` places of films in flight
(waiting for a worker or decoding) across every door, each film taking the places its header
says it will cost (`film_weight`: one for any ordinary film); past them up to `queue` films
wait their turn, in order, in the caller's thread (never the event loop), each at most
`queue_seconds`; one more, or one that waited that long, is refused (ServerBusyError, 503
over HTTP, Out of Resources over DICOM).
"""

from __future__ import annotations

import gc
import io
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Protocol

from app.contract.errors import (
    DecodeBudgetError,
    ImageError,
    TooManyPixelsError,
    WorkerLostError,
)
from app.errors import ServerBusyError
from app.services.film import FilmJob, PreparedFilm, prepare_film

log = logging.getLogger("app.decoders")

_START_SECONDS = 60  # a worker that has not started by then is dead
RETIRE_FRACTION = 0.5  # of the room between a worker at rest and its cap; above: replaced
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Admission:
    """At most `limit` places taken at once (None: no limit), by films (or requests) that
    each take `weight` of them. One that finds too few free waits in a line of at most
    `queue` callers, first come first served, for at most `wait` seconds; one more caller,
    or one that waited that long, is refused (ServerBusyError). The line is served in
    order: a heavy film at its head is not overtaken by light ones behind it. A weight
    over `limit` counts as `limit` (such a film runs alone)."""

    def __init__(self, limit: int | None, queue: int = 0, wait: float = 0.0) -> None:
        self.limit = limit
        self.queue, self.wait = queue, wait
        self._lock = threading.Lock()
        self._line: deque[_Waiter] = deque()
        self.busy = 0  # places taken now, for GET /metrics (counted only under a limit)

    @property
    def waiting(self) -> int:
        """Callers waiting in the line now."""
        return len(self._line)

    @property
    def full(self) -> bool:
        """No place is free and the line is full now (a hint: one may free up a moment
        later)."""
        return self.limit is not None and self.busy >= self.limit \
            and len(self._line) >= self.queue

    @property
    def has_room(self) -> bool:
        """A place is free now, without waiting (a hint, as `full` is)."""
        return self.limit is None or (self.busy < self.limit and not self._line)

    @contextmanager
    def admit(self, weight: int = 1, queue: bool = True) -> Iterator[None]:
        """`weight` places (at least one) for the block; ServerBusyError at once when too
        few are free and the line is full (or, without `queue`, at once when too few are
        free: for a caller on the event loop, which must never wait here), or after `wait`
        seconds in the line."""
        if self.limit is None:
            yield
            return
        weight = min(max(int(weight), 1), self.limit)
        self._take(weight, queue)
        try:
            yield
        finally:
            with self._lock:
                self.busy -= weight
                self._grant()

    def _take(self, weight: int, queue: bool) -> None:
        with self._lock:
            if not self._line and self.busy + weight <= (self.limit or 0):
                self.busy += weight
                return
            if not queue or len(self._line) >= self.queue:
                raise ServerBusyError()
            waiter = _Waiter(weight)
            self._line.append(waiter)
        if waiter.granted.wait(self.wait):
            return
        with self._lock:
            if waiter.granted.is_set():  # granted as the wait ran out
                return
            self._line.remove(waiter)
            self._grant()  # the films behind it may fit now
        raise ServerBusyError()

    def _grant(self) -> None:
        """Places to the head of the line while they fit. Call under the lock."""
        while self._line and self.busy + self._line[0].weight <= (self.limit or 0):
            waiter = self._line.popleft()
            self.busy += waiter.weight
            waiter.granted.set()


class _Waiter:
    __slots__ = ("granted", "weight")

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.granted = threading.Event()


class Decoder(Protocol):
    admission: Admission

    # raises ImageError subclasses; `bulk`: one film of many (a worklist request)
    def prepare(self, job: FilmJob, bulk: bool = False) -> PreparedFilm: ...

    def admit(self, weight: int = 1, queue: bool = True) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...


class _Admitting:
    """The admission rule both decoders own."""

    _admission: Admission

    @property
    def admission(self) -> Admission:  # its counts, for GET /metrics
        return self._admission

    def admit(self, weight: int = 1, queue: bool = True):
        return self._admission.admit(weight, queue)


class InlineDecoder(_Admitting):
    """Decode in the calling thread."""

    def __init__(self, admitted: int | None = None, line: int = 0,
                 line_seconds: float = 0.0) -> None:
        self._admission = Admission(admitted, line, line_seconds)

    def prepare(self, job: FilmJob, bulk: bool = False) -> PreparedFilm:
        return prepare_film(job)

    def close(self) -> None:
        pass


class _Worker:
    def __init__(self, context, memory_mb: int | None) -> None:
        # Read by the child's NumPy at import, before any code of ours runs there: one BLAS
        # thread, so the address-space cap is not spent on idle thread stacks.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, memory_mb),
                                       name="decoder", daemon=True)
        self.process.start()
        child.close()
        self.started = False  # True once the worker said it is ready
        self.at_rest: int | None = None  # bytes of address space once ready

    def wait_started(self, timeout: float) -> None:
        """Wait for the worker's hello (it imports NumPy and Pillow first, about a second),
        so that a job's budget counts decoding, not start-up."""
        if not self.started:
            if not self.conn.poll(timeout):
                raise EOFError("the decode worker did not start")
            self.conn.recv()
            self.started = True
            self.at_rest = address_space(self.process.pid)

    def stop(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class DecodePool(_Admitting):
    """`workers` decoding processes; `prepare` blocks its caller until the film is ready."""

    def __init__(self, workers: int, timeout: float, memory_mb: int | None = None,
                 wait: float | None = None, admitted: int | None = None,
                 retire_mb: float | None = None, bulk_workers: int | None = None,
                 line: int = 0, line_seconds: float = 0.0) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self._admission = Admission(admitted, line, line_seconds)
        # Films of worklist requests (`bulk`) decode on at most this many workers at once
        # (None: all), so single films, which a clinician or a PACS is waiting on, always
        # find the rest: two worklists of large films on every worker cut single films to
        # 11% of their quiet throughput (benchmarks/attacks.py).
        self._bulk = threading.BoundedSemaphore(bulk_workers) if bulk_workers else None
        self.bulk_busy = 0  # bulk films decoding or waiting for a worker now
        self.timeout = timeout
        self.wait = timeout if wait is None else wait  # for a free worker, then 503
        self.memory_mb = memory_mb
        self.retire_bytes = None if retire_mb is None else int(retire_mb * 2 ** 20)
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(workers):
            self._idle.put(self._start())

    def _start(self) -> _Worker:
        worker = _Worker(self._context, self.memory_mb)
        with self._lock:
            self._all.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> _Worker:
        worker.stop()
        with self._lock:
            self._all.discard(worker)
        if self._closed:  # shutting down: nothing new to start, or to stop later
            return worker
        return self._start()

    def prepare(self, job: FilmJob, bulk: bool = False) -> PreparedFilm:
        """`job`'s film, decoded by a free worker; blocks until it is ready. Raises the
        film's ImageError, DecodeBudgetError past `timeout`, ServerBusyError when no worker
        (for `bulk`: no bulk place) is free within `wait` seconds."""
        lane = self._bulk if bulk else None
        if lane is not None and not lane.acquire(timeout=self.wait):
            raise ServerBusyError()
        if lane is not None:
            with self._lock:
                self.bulk_busy += 1
        try:
            return self._prepare(job)
        finally:
            if lane is not None:
                with self._lock:
                    self.bulk_busy -= 1
                lane.release()

    def _prepare(self, job: FilmJob) -> PreparedFilm:
        if self._closed:
            raise ServerBusyError()
        try:
            worker = self._idle.get(timeout=self.wait)
        except queue.Empty:
            raise ServerBusyError() from None
        sent = False
        try:
            worker.wait_started(_START_SECONDS)
            send_job(worker.conn, job)
            sent = True
            if not worker.conn.poll(self.timeout):
                log.warning("a decode ran past its %.0f s budget: worker %d stopped and "
                            "replaced", self.timeout, worker.process.pid)
                worker = self._replace(worker)
                raise DecodeBudgetError(self.timeout)
            ok, value, spent = _loads(worker.conn.recv_bytes())
            if spent or (not _small(ok, value) and self._holds_too_much(worker)):
                log.info("decode worker %d %s: replaced", worker.process.pid,
                         "reached its memory cap" if spent else "kept its memory after a film")
                worker = self._replace(worker)
        except (EOFError, OSError) as exc:
            lost, worker = worker, self._replace(worker)  # stopped and reaped: its exit code
            log.warning("a decode worker %s (exit code %s): replaced",
                        "died decoding a film" if sent else "was lost between films",
                        lost.process.exitcode)
            # Mid-job: most likely the film's memory (the kernel's OOM killer). Before the
            # job was sent: not the film's fault; the client may try again.
            raise (WorkerLostError() if sent else ServerBusyError()) from exc
        finally:
            self._idle.put(worker)
        if not ok:
            raise value
        return value

    def _holds_too_much(self, worker: _Worker) -> bool:
        """Whether the worker's address space stays high after a film, read by the server
        from /proc (a worker is not asked about itself); False where /proc is not there."""
        limit = self.retire_bytes
        if limit is None and self.memory_mb and worker.at_rest is not None:
            cap = self.memory_mb * 2 ** 20
            limit = int(worker.at_rest + RETIRE_FRACTION * max(cap - worker.at_rest, 0))
        size = address_space(worker.process.pid)
        return limit is not None and size is not None and size > limit

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.stop()

    def ask(self, question: Callable[[], object]) -> object:
        """`question()` answered by one idle worker, in its process: what a worker holds
        (its modules, its pid). `question` is pickled by reference (a module-level
        function), and its answer must be plain data (the server unpickles nothing else
        from a worker). Raises ServerBusyError when no worker is free within `wait`
        seconds, RuntimeError when the question raised there."""
        try:
            worker = self._idle.get(timeout=self.wait)
        except queue.Empty:
            raise ServerBusyError() from None
        try:
            worker.wait_started(_START_SECONDS)
            worker.conn.send(question)
            ok, answer = _loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            worker = self._replace(worker)  # lost: a fresh one takes its place
            raise
        finally:
            self._idle.put(worker)
        if not ok:
            raise answer
        return answer


# A film of at most this many pixels, decoded, cannot leave a worker holding half its cap
# (a few copies of it, even in float64, are tens of MB): its worker's memory is not read.
_SMALL_FILM_PIXELS = 4_000_000


def _small(ok: bool, value: object) -> bool:
    """Whether a decode worker's answer is a film of at most _SMALL_FILM_PIXELS (its
    file's size as decoded; an error is never small: its film's size is unknown)."""
    facts = getattr(value, "facts", None) if ok else None
    return facts is not None and facts.width * facts.height <= _SMALL_FILM_PIXELS


def address_space(pid: int) -> int | None:
    """A process's address space in bytes (/proc/PID/statm), None where unreadable."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[0]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


def _serve(conn: Connection, memory_mb: int | None) -> None:
    """A worker's loop: one job in, (True, PreparedFilm) or (False, error) out. The error is
    the ImageError for a film that cannot be scored, or a RuntimeError naming anything else
    (a bug of ours, answered 500 by the app); the worker goes on either way."""
    # Ctrl+C at a terminal reaches the whole process group: the server stops its workers
    # itself, so a worker ignores it rather than print a KeyboardInterrupt's traceback.
    if threading.current_thread() is threading.main_thread():  # a worker process's loop
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_mb:
        import resource  # noqa: PLC0415 - POSIX only, and only in the worker

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from app.logs import silence_decoder_chatter  # noqa: PLC0415

    silence_decoder_chatter()
    import app.services.film  # noqa: F401, PLC0415 - imported before saying ready

    conn.send("ready")
    while True:
        try:
            job = conn.recv()
            if isinstance(job, FilmJob):
                job = replace(job, data=conn.recv_bytes())  # send_job's second message
        except (EOFError, OSError):
            return  # the server went away
        if not isinstance(job, FilmJob):  # a question (DecodePool.ask)
            conn.send_bytes(_answered(job))
            continue
        payload, ok = _answer(job)
        del job
        if not ok:
            # Nothing of a failed film may outlive its answer: the frames of its decode hold
            # its arrays (in reference cycles), and kept until the next job they made that
            # job run out of memory. Collected before answering, so that the server's look
            # at this worker's memory (DecodePool._holds_too_much) sees what stays.
            gc.collect()
        conn.send_bytes(payload)
        del payload


def send_job(conn: Connection, job: FilmJob) -> None:
    """Send `job` to a worker's `_serve` in two messages: the job as a decode worker gets
    it (`FilmJob.lean`: the model's guard and detector by reference) without its bytes,
    then the bytes themselves. Pickled inside the job, a film's bytes were copied into the
    pickle while holding the interpreter lock (a 16-bit PNG of 2 MB: 28% of the lock's
    time in the scoring threads, the event loop waiting); `send_bytes` writes them from
    the request's own buffer, the lock released. Everything that can fail before the bytes
    are written (the bytes' type, the pickle) fails before the first message, so a worker
    is never left waiting for bytes that do not come; OSError midway is a lost worker."""
    data = memoryview(job.data)  # not bytes-like: TypeError here, before a message is sent
    conn.send(replace(job.lean(), data=b""))
    conn.send_bytes(data)


def _answer(job: FilmJob) -> tuple[bytes, bool]:
    """(pickled (ok, PreparedFilm or error, spent), ok); `spent`: the film ran this worker
    out of memory, so the server replaces it."""
    spent = False
    try:
        result: tuple = (True, prepare_film(job), False)
    except MemoryError:
        result = (False, TooManyPixelsError(None, None), True)
    except ImageError as exc:
        spent = _out_of_memory(exc)
        result = (False, _bare(exc), spent)
    except Exception as exc:  # noqa: BLE001 - reported to the server, worker kept
        spent = _out_of_memory(exc)
        result = (False, RuntimeError(f"decode worker: {type(exc).__name__}: {exc}"), spent)
    try:
        return pickle.dumps(result), result[0]
    except Exception as exc:  # noqa: BLE001 - an unpicklable error must not kill us
        return pickle.dumps((False, RuntimeError(f"decode worker: {exc}"), spent)), False


def _answered(question: Callable[[], object]) -> bytes:
    """(True, answer) or (False, RuntimeError naming the failure), pickled."""
    try:
        return pickle.dumps((True, question()))
    except Exception as exc:  # noqa: BLE001 - reported to the asker, worker kept
        return pickle.dumps((False, RuntimeError(f"decode worker: {type(exc).__name__}: "
                                                 f"{exc}")))


def _out_of_memory(exc: BaseException) -> bool:
    """A MemoryError anywhere in the error's chain, or a decoder's words for one (pydicom
    wraps its plugins' errors in a RuntimeError that quotes them)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError) or any(
                word in str(current) for word in ("MemoryError", "bad_alloc",
                                                  "out of memory", "Out of memory")):
            return True
        current = current.__cause__ or current.__context__
    return False


def _bare(exc: BaseException) -> BaseException:
    """The error without its traceback and chained causes (and the frames they hold)."""
    exc.__traceback__ = exc.__cause__ = exc.__context__ = None
    return exc


# What a worker may send back, by (module, name): the result's own classes, NumPy's array
# reconstruction and the error classes. Anything else is refused, so a worker compromised by
# a hostile file (a decoder exploit) cannot make the server run code by unpickling.
_ALLOWED = {
    ("builtins", "RuntimeError"), ("builtins", "ValueError"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("app.services.film", "PreparedFilm"), ("app.services.film", "ImageFacts"),
    ("app.contract.dicom", "DicomInfo"),
}
_ALLOWED_ERROR_MODULES = ("app.contract.errors",)


class _ResultUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        found = super().find_class(module, name)
        if (module, name) in _ALLOWED or (
                module in _ALLOWED_ERROR_MODULES and isinstance(found, type)
                and issubclass(found, ImageError)):
            return found
        raise pickle.UnpicklingError(f"a decode worker sent {module}.{name}")


def _loads(payload: bytes):
    try:
        return _ResultUnpickler(io.BytesIO(payload)).load()
    except Exception as exc:  # noqa: BLE001 - a worker we no longer trust
        raise OSError(f"unreadable answer from a decode worker: {exc}") from None
