"""Memory given back after a burst: glibc keeps the heap a large request grew (a worklist
of 100 films, a 200 MiB body) for the process's reuse, so the resident size stays at its
peak; `malloc_trim(0)` returns the free pages to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

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
