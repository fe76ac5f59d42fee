"""Memory: one budget for the whole process tree, and memory given back after a burst.

One memory budget for the whole process tree: the serving process, its decode workers and
the request bodies in flight (issue 20; Settings.memory_budget_mb, SECURITY.md "Limits").

The tree's resident memory is bounded by the sum of three shares:

- the serving process's (`server_mb`): TensorFlow, the models, the requests in flight beside
  their bodies; a worklist's files stream through it and are let go once decoded
  (app/web/upload.py), so no body is held whole;
- each decode worker's address-space cap (`worker_mb`, RLIMIT_AS in
  app/services/decode_pool.py): a process's resident memory can never pass its address
  space, so `workers x worker_mb` bounds them all, whatever a film makes them allocate;
- the bodies in flight (`bodies_bytes`, `BodyBudget` below), held in the server: HTTP
  bodies (app/web/upload.py) and the DICOM node's data sets as they arrive, C-STORE
  (app/dicom/transport.py) and STOW-RS alike, in one budget, so that neither door can take
  the other's share or the memory the sum below promises.

A Kubernetes container's memory limit is such a budget: deploy/kubernetes.yaml sets the
limit and PNEUMONIA_MEMORY_BUDGET_MB to the same figure (tests/test_deploy.py checks it).

Memory given back after a burst: glibc keeps the heap a large request grew (a worklist
of 100 films, a 200 MiB body) for the process's reuse, so the resident size stays at its
peak; `malloc_trim(0)` returns the free pages to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import ServerBusyError

log = logging.getLogger("app.memory")

try:
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _TRIM = _LIBC.malloc_trim
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
    _TRIM = None


def give_back_memory() -> bool:
    """Return free heap pages to the system; True when glibc released any."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))


MIB = 1 << 20
# The serving process's share by default: benchmarks/memory_tree.py measured 936 MiB at
# rest with the two committed models, 967 MiB through two streamed worklists of 83 MB.
SERVER_MEMORY_MB = 1280
# The least a derived worker cap may be: a worker takes about 160 MB of address space at
# rest, and 512 MiB decoded a 49-megapixel 16-bit PNG, a 49-megapixel JPEG and a
# 9-megapixel 16-bit DICOM through the pool (measured with app/services/decode_pool.py).
MIN_WORKER_MB = 512
# The results' build process (app/dicom/build_process.py), where the node sends results: its
# share of the budget. Measured on the 2-core machine: 160 MiB resident after 20 builds, the
# same after 5. What it builds is bounded by the recipe, not by the film sent (a sanitised
# header, pixels at most 512 px a side), so it is not capped as the decode workers are (an
# address-space cap of 384 MiB failed on highdicom's load of the standard's tables).
RESULTS_BUILD_MB = 256


def within_budget(budget_mb: int, server_mb: int, bodies_bytes: int, workers: int,
                  worker_mb: int | None, given: bool, build_mb: int = 0) -> int | None:
    """The decode workers' address-space cap, MiB, under a budget of `budget_mb` MiB: the
    one `given` (the setting was set) when the shares fit, else (None given) the room the
    server's share, the bodies and the results' build process (`build_mb`, its share: 0
    where the node sends no results) leave, shared among the `workers`. `bodies_bytes` is the
    one BodyBudget's limit: the HTTP bodies and the DICOM node's data sets in flight
    (C-STORE as they arrive, STOW-RS) together, so the node's data sets are counted here;
    what the node holds beside them (per association, the PDU being read, at most
    dicom_max_pdu_bytes, in pynetdicom's three or four copies: about 32 MiB at the
    defaults) is in the server's share. With no workers (decoding in the server,
    uncapped) the server's share must hold it: `worker_mb` is returned as it is. Raises
    ValueError naming the settings to change; no value in it is a secret."""
    bodies_mb = -(-bodies_bytes // MIB)  # rounded up
    fixed = server_mb + bodies_mb + build_mb
    shares = (f"the server's share (PNEUMONIA_SERVER_MEMORY_MB={server_mb}) and the bodies "
              f"and DICOM data sets in flight (PNEUMONIA_MAX_UPLOAD_MEMORY_BYTES, "
              f"{bodies_mb} MiB)")
    if build_mb:
        shares += (f" and the DICOM results' build process ({build_mb} MiB, as results are "
                   f"sent: PNEUMONIA_RESULTS_DESTINATION or PNEUMONIA_RESULTS_DICOMWEB_URL)")
    if workers == 0:
        if fixed > budget_mb:
            raise ValueError(f"PNEUMONIA_MEMORY_BUDGET_MB={budget_mb} is too small: {shares} "
                             f"need {fixed} MiB")
        return worker_mb
    if given and worker_mb is None:
        raise ValueError("PNEUMONIA_MEMORY_BUDGET_MB needs a cap per decode worker: leave "
                         "PNEUMONIA_DECODE_MEMORY_MB unset (derived from the budget) or give "
                         "a number")
    if given:
        need = fixed + workers * worker_mb  # type: ignore[operator]
        if need > budget_mb:
            raise ValueError(
                f"PNEUMONIA_MEMORY_BUDGET_MB={budget_mb} is too small: {shares} and "
                f"{workers} decode workers (PNEUMONIA_DECODE_WORKERS) capped at "
                f"PNEUMONIA_DECODE_MEMORY_MB={worker_mb} each need {need} MiB. Raise the "
                f"budget, or lower the cap (or leave it unset: derived from the budget), "
                f"the workers or the server's share")
        return worker_mb
    derived = (budget_mb - fixed) // workers
    if derived < MIN_WORKER_MB:
        raise ValueError(
            f"PNEUMONIA_MEMORY_BUDGET_MB={budget_mb} is too small: after {shares} "
            f"({fixed} MiB), {workers} decode workers (PNEUMONIA_DECODE_WORKERS) would get "
            f"{max(derived, 0)} MiB each, under the {MIN_WORKER_MB} MiB a worker needs. "
            f"Raise the budget to at least {fixed + workers * MIN_WORKER_MB}, or run fewer "
            f"workers")
    return derived


class BodyBudget:
    """The bytes of every request body and DICOM data set in flight, together, within
    `limit`: one more chunk that would pass it is refused at once (ServerBusyError: 503
    over HTTP, Out of Resources over DICOM), so many slow or large uploads cannot take the
    server's memory. Shared by the event loop and the DICOM node's association threads,
    hence the lock (uncontended: a few tens of nanoseconds a chunk)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    @contextmanager
    def reservation(self) -> Iterator[Held]:
        """One request's share: bytes taken as they arrive, given back as they leave the
        process (a streamed file once decoded), and all of them when the request ends."""
        held = Held(self)
        try:
            yield held
        finally:
            held.give(held.taken)


class Held:
    """One request's (or one data set's) bytes in a BodyBudget; with none, only counted."""

    def __init__(self, budget: BodyBudget | None = None) -> None:
        self._budget = budget
        self.taken = 0

    def take(self, n: int) -> None:
        """Count `n` more bytes held; ServerBusyError when the budget has no room for them."""
        budget = self._budget
        if budget is not None:
            with budget._lock:
                if budget.held + n > budget.limit:
                    raise ServerBusyError()
                budget.held += n
        self.taken += n

    def give(self, n: int) -> None:
        """`n` of these bytes are no longer held."""
        n = min(n, self.taken)
        if self._budget is not None:
            with self._budget._lock:
                self._budget.held -= n
        self.taken -= n
