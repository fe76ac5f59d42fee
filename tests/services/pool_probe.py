"""Questions for a DecodePool's worker processes, asked from the tests through the pool's one
generic hook (`DecodePool.ask`: a function run in an idle worker): which process a worker is,
and what it has imported. Imports nothing but the standard library, since a worker that
answers imports this module."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.services.decode_pool import DecodePool


def _modules() -> list[str]:
    return sorted(sys.modules)


def worker_modules(pool: DecodePool) -> list[str]:
    """The names in one idle worker's `sys.modules` (this module's own among them): what a
    decode worker carries (tests/test_architecture.py: no web framework, no TensorFlow)."""
    return pool.ask(_modules)  # type: ignore[return-value]


def worker_pids(pool: DecodePool, workers: int = 1) -> list[int]:
    """The pids of the pool's `workers` idle workers, sorted: each asked in turn (the pool
    hands out its idle workers oldest first, and takes each back behind the others)."""
    return sorted(pool.ask(os.getpid) for _ in range(workers))  # type: ignore[misc]
