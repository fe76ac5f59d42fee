"""Failed logins per client, for the page's login (app/routes/pages.py)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque


class LoginThrottle:
    """Failed logins per client address in a sliding window; over the limit, the address
    waits (429 with Retry-After) until its oldest failure leaves the window. Per process:
    with several replicas an attacker gets the limit once per replica, still far from a
    brute force of a 16-character token."""

    def __init__(self, limit: int, window_seconds: float, max_clients: int = 10_000) -> None:
        self.limit, self.window = limit, window_seconds
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._max_clients = max_clients
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds this client must wait before its next try; 0 = it may try now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.get(client)
            while failures and now - failures[0] >= self.window:
                failures.popleft()
            if not failures or len(failures) < self.limit:
                return 0.0
            return self.window - (now - failures[0])

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._failures.setdefault(client, deque()).append(now)
            self._failures.move_to_end(client)
            while len(self._failures) > self._max_clients:  # bounded memory under a spray
                self._failures.popitem(last=False)
