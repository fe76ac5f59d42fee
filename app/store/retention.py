"""Retention on a schedule: a daemon thread that runs WorklistStore.purge every few minutes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from app.store.records import PurgeCounts
from app.store.service import WorklistStore

log = logging.getLogger(__name__)


class RetentionThread:
    """Purges `store` at start, then every `every_minutes`, until stop().

    stop() returns as soon as a running pass ends (the wait between passes is an Event, so
    shutdown never waits out an interval). A failing pass is logged by exception type only
    (its message could quote stored values) and retried at the next interval.
    """

    def __init__(self, store: WorklistStore, *, retention_days: float,
                 audit_retention_days: float, every_minutes: float = 60.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if every_minutes <= 0:
            raise ValueError("every_minutes must be positive")
        self._store = store
        self._retention_days = retention_days
        self._audit_retention_days = audit_retention_days
        self._interval_s = every_minutes * 60.0
        self._clock = clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0  # completed passes, for tests and metrics

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the retention thread runs already")
        self._thread = threading.Thread(target=self._run, name="worklist-retention",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop and join; returns within `timeout` s unless a purge is mid-transaction."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> PurgeCounts:
        """One purge pass now."""
        counts = self._store.purge(self._clock(), self._retention_days,
                                   self._audit_retention_days)
        if counts.entries or counts.audit_records:
            log.info("worklist retention deleted %d entries (%d films) and %d audit records",
                     counts.entries, counts.films, counts.audit_records)
        return counts

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the thread must survive a database outage
                log.error("worklist retention failed (%s); next try in %.0f min",
                          type(exc).__name__, self._interval_s / 60)
            self.passes += 1
            self._stopping.wait(self._interval_s)
