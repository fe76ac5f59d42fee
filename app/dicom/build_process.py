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
is stopped) is replaced and the job is tried again later (BuildUnavailable): it is not the
job's fault. A recipe whose results cannot be made is still abandoned with its reason, as
when built in this process. Its memory is its share of the budget (app/memory.py
RESULTS_BUILD_MB): what it builds is bounded by the recipe, whatever film was sent.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pydicom
from pydicom import Dataset

from app.dicom.failures import BuildFailed, BuildUnavailable, ResultsFailure, ResultsNotMade
from app.dicom.recipe import Recipe, is_recipe
from app.dicom.results import ResultBuilder

log = logging.getLogger("app.dicom")
# A film's results take about 50 ms to build; one that takes this long never will.
BUILD_SECONDS = 60.0


class ProcessBuilder:
    """`build_job` as ResultBuilder's (app/dicom/delivery.py Build), the SR and secondary
    capture built and encoded in one spawned process; the heat map drawn here first by
    `results`' explainer. Thread-safe: the delivery's association threads share it, their
    builds taking turns in the process."""

    def __init__(self, results: ResultBuilder, timeout: float = BUILD_SECONDS) -> None:
        self._results = results
        self._timeout = timeout
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def build_job(self, parts: Sequence[bytes]) -> tuple[Dataset, ...]:
        """A delivery job's instances; a job queued before recipes is read here as it is.
        Raises ResultsNotMade or BuildFailed (never deliverable), BuildUnavailable (try
        again)."""
        if not (len(parts) == 1 and is_recipe(parts[0])):
            return self._results.build_job(parts)
        recipe = Recipe.decode(parts[0])
        recipe = recipe.with_heat(self._results.heat(recipe))
        pool = self._running()
        try:
            answer = pool.submit(_build, recipe).result(self._timeout)
        except BrokenProcessPool as exc:  # it died: killed, or out of memory
            self._replace(pool)
            raise BuildUnavailable("the results' build process stopped") from exc
        except TimeoutError as exc:
            self._replace(pool, stop=True)
            raise BuildUnavailable(f"the results' build ran past {self._timeout:.0f} s: "
                                   "its process was stopped") from exc
        except (CancelledError, RuntimeError) as exc:  # closed meanwhile: the node stops
            raise BuildUnavailable("the results' build process is stopped") from exc
        if isinstance(answer, tuple):  # (reason, tag, why) of ResultsNotMade, or (kind,)
            if len(answer) == 3:
                raise ResultsNotMade(ResultsFailure(answer[0]), answer[1], answer[2])
            raise BuildFailed(answer[0])
        return tuple(pydicom.dcmread(io.BytesIO(part)) for part in answer)

    def warm_up(self) -> None:
        """Start the build process and build one throw-away SR in it (highdicom's tables),
        and warm this process's own builder for jobs queued before recipes."""
        self._results.warm_up()
        try:
            self._running().submit(_warm_up).result()
        except Exception as exc:  # noqa: BLE001 - stopped meanwhile, or a broken start
            if not self._closed:
                log.warning("the results' build process did not start (%s): the next job "
                            "starts it again", type(exc).__name__)
                self.close(reopen=True)

    def close(self, reopen: bool = False) -> None:
        """Stop the build process (a build in it is cancelled); `reopen`: a later job
        starts a new one."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = not reopen
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _running(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise BuildUnavailable("the results' build process is stopped")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start, initargs=(self._results.secondary_capture,))
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor, stop: bool = False) -> None:
        """A new process for the next job; `stop`: end the old one's build first (the
        executor itself never stops a running task: its processes are stopped here)."""
        with self._lock:
            if self._pool is broken:
                self._pool = None
        if stop:
            for process in list(getattr(broken, "_processes", {}).values()):
                process.kill()
        broken.shutdown(wait=False, cancel_futures=True)
        log.warning("the results' build process stopped: replaced; its jobs are tried again")


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
        built = _BUILDER.build(recipe)
    except ResultsNotMade as exc:
        return exc.reason.value, exc.tag, exc.why  # type: ignore[return-value]
    except Exception as exc:  # noqa: BLE001 - listed by type in the parent, as there
        return (type(exc).__name__,)
    parts = []
    for dataset in built:
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        parts.append(buffer.getvalue())
    return parts
