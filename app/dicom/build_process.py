"""The results' building in a process of its own: highdicom's SR, the secondary capture and
their encoding, off the serving process's interpreter lock.

Why: building one film's results is about 40 ms of pure Python (the SR with highdicom 23 ms,
its encoding 7 ms, the secondary capture 10 ms), all under the one interpreter lock that
the DICOM associations receiving films and the HTTP routes also need: at 8 associations
the node answered 5-6% of `/predict`'s films/s and delivered 8-9 films/s (docs/speed.md).
Here the delivery worker still draws the heat map (the model is in this process, and
TensorFlow computes without the lock), then hands the recipe to the build process, which
returns each instance as Part 10 bytes; read back, an instance is re-encoded for the
association from its raw elements (0.4 ms, not 7), byte for byte the same.

A build process that dies (killed, out of memory) or takes longer than BUILD_SECONDS (it
is stopped) is replaced and the job is tried again later (BuildUnavailable); a recipe on
which that happened BUILD_TRIES times is abandoned (BuildFailed), listed and counted, not
tried for ever. A recipe whose results cannot be made is still abandoned with its reason,
as when built in this process. Its memory is its share of the budget (app/memory.py
RESULTS_BUILD_MB): what it builds is bounded by the recipe, whatever film was sent.
"""

from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing
import signal
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress

import pydicom
from pydicom import Dataset

from app.dicom.failures import BuildFailed, BuildUnavailable, ResultsFailure, ResultsNotMade
from app.dicom.recipe import Recipe, is_recipe
from app.dicom.results import ResultBuilder

log = logging.getLogger("app.dicom")
# A film's results take about 50 ms to build; one that takes this long never will.
BUILD_SECONDS = 60.0
# Times the process may die or run out of time building one recipe before that recipe is
# taken for the cause and abandoned (listed and counted), rather than tried for ever.
BUILD_TRIES = 3
_REMEMBERED = 1024  # recipes whose lost builds are counted, the latest kept


class ProcessBuilder:
    """`build_job` as ResultBuilder's (app/dicom/delivery.py Build), the SR and secondary
    capture built and encoded in one spawned process; the heat map drawn here first by
    `results`' explainer. Thread-safe: the delivery's association threads share it and
    build one at a time (the process builds one at a time anyway), so a build's time
    counts from its own start and a lost process is blamed on the one recipe it held."""

    def __init__(self, results: ResultBuilder, timeout: float = BUILD_SECONDS) -> None:
        self._results = results
        self._timeout = timeout
        self._lock = threading.Lock()  # the pool and the flag
        self._turn = threading.Lock()  # one build at a time
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._lost: OrderedDict[str, int] = OrderedDict()  # recipe digest -> builds lost

    def build_job(self, parts: Sequence[bytes]) -> tuple[Dataset, ...]:
        """A delivery job's instances; a job queued before recipes is read here as it is.
        Raises ResultsNotMade or BuildFailed (never deliverable), BuildUnavailable (try
        again later: the process stopped, or the builder is closed)."""
        if not (len(parts) == 1 and is_recipe(parts[0])):
            return self._results.build_job(parts)
        recipe = Recipe.decode(parts[0])
        recipe = recipe.with_heat(self._results.heat(recipe))
        with self._turn:
            answer = self._run(_build, recipe, key=hashlib.sha256(parts[0]).hexdigest())
        if isinstance(answer, tuple):  # (reason, tag, why) of ResultsNotMade, or (kind,)
            if len(answer) == 3:
                raise ResultsNotMade(ResultsFailure(answer[0]), answer[1], answer[2])
            raise BuildFailed(answer[0])
        return tuple(pydicom.dcmread(io.BytesIO(part)) for part in answer)

    def warm_up(self) -> None:
        """Start the build process and build one throw-away SR in it (highdicom's tables),
        and warm this process's own builder for jobs queued before recipes. A failure is
        logged; the next job starts a process again."""
        self._results.warm_up()
        try:
            with self._turn:
                self._run(_warm_up)
        except BuildUnavailable as exc:
            if not self._closed:
                log.warning("the results' build process did not warm up: %s", exc)

    def close(self) -> None:
        """Stop the build process at once (a build in it is lost, its job tried again at
        the next start); no process is started after."""
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            _stop(pool)

    def _run(self, function, *args, key: str | None = None):
        """`function(*args)` in the build process; BuildUnavailable when it cannot run or
        its process is lost (the `key` recipe's loss counted: BuildFailed at BUILD_TRIES)."""
        with self._lock:
            if self._closed:
                raise BuildUnavailable("the results' build process is stopped")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start, initargs=(self._results.secondary_capture,))
            pool = self._pool
        try:
            future = pool.submit(function, *args)
        except (BrokenProcessPool, RuntimeError) as exc:  # shut down meanwhile, or broken
            self._replace(pool)
            raise BuildUnavailable("the results' build process is stopped") from exc
        try:
            return future.result(self._timeout)
        except (BrokenProcessPool, CancelledError, TimeoutError) as exc:
            why = (f"ran past {self._timeout:.0f} s" if isinstance(exc, TimeoutError)
                   else "stopped")
            self._replace(pool)
            if self._closed:  # the node stops: not the recipe's doing
                raise BuildUnavailable("the results' build process is stopped") from exc
            if key is not None and self._lose(key) >= BUILD_TRIES:
                raise BuildFailed(f"the build process {why} {BUILD_TRIES} times on it") \
                    from exc
            raise BuildUnavailable(f"the results' build process {why}") from exc

    def _lose(self, key: str) -> int:
        with self._lock:
            lost = self._lost.pop(key, 0) + 1
            self._lost[key] = lost
            while len(self._lost) > _REMEMBERED:
                self._lost.popitem(last=False)
            return lost

    def _replace(self, lost: ProcessPoolExecutor) -> None:
        """No more jobs for `lost`: its process stopped, and the next job starts another."""
        with self._lock:
            if self._pool is lost:
                self._pool = None
        _stop(lost)
        if not self._closed:
            log.warning("the results' build process stopped: replaced; its job is tried "
                        "again")


def _stop(pool: ProcessPoolExecutor) -> None:
    """Shut `pool` down and kill its process: the executor never stops a running task
    itself, and a stuck build would hold the server's exit (its atexit joins it)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    with suppress(Exception):  # already shut down: nothing more to stop
        pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with suppress(Exception):
            process.kill()


# --- In the build process --------------------------------------------------------------

_BUILDER: ResultBuilder | None = None


def _start(secondary_capture: bool) -> None:
    global _BUILDER
    from app.logs import silence_decoder_chatter

    # Ctrl+C at a terminal reaches the whole process group: the server stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    silence_decoder_chatter()  # highdicom quotes patients' names it finds unusual
    _BUILDER = ResultBuilder(secondary_capture)


def _warm_up() -> None:
    assert _BUILDER is not None
    _BUILDER.warm_up()


def _build(recipe: Recipe) -> list[bytes] | tuple[str, ...]:
    """The recipe's instances as Part 10 bytes, or why they cannot be made: a tuple that
    pickles whatever the exception held."""
    assert _BUILDER is not None
    try:
        parts = []
        for dataset in _BUILDER.build(recipe):
            buffer = io.BytesIO()
            pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
            parts.append(buffer.getvalue())
        return parts
    except ResultsNotMade as exc:
        return exc.reason.value, exc.tag, exc.why  # type: ignore[return-value]
    except Exception as exc:  # noqa: BLE001 - listed by type in the parent, as there
        return (type(exc).__name__,)
