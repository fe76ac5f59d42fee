"""The HTTP server under the app: uvicorn's h11 protocol with the two guards it lacks.

uvicorn (0.54) closes a keep-alive connection that stays idle, but not a connection that
never completes its request head: 255 sockets that send nothing, or one header byte every
2 s, held every connection slot, and its `limit_concurrency` then answered 503 to every
request, /healthz and /readyz included (Kubernetes restarts the pod). So:

- a connection must complete each request head within `head_timeout` seconds of
  connecting (or of its previous response), or it is closed;
- past `max_connections`, a new connection closes the one that has waited longest for
  its request head, those that never sent a request first, so idle sockets can never crowd
  out a probe or a client; requests in flight are capped by the app (app/security.py
  `InFlightLimit`), which never counts the health routes. "Waited longest" counts from the
  start of the wait, not from the connection: a keep-alive client that has sent requests
  all along and is between two of them has waited milliseconds, and an attacker who
  reopens every closed socket at once must not push it out (it did, measured by
  benchmarks/attacks.py: 0 films/s under 1,100 idle sockets).
"""

from __future__ import annotations

import asyncio
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def guarded_protocol(head_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's `http=` protocol class with these limits."""

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.waiting_since = time.monotonic()
            self.served = False  # a request head of its own has been read
            self._head_timer: asyncio.TimerHandle | None = None
            self._arm()
            if len(self.connections) > max_connections:
                self._evict_oldest_waiting()

        def data_received(self, data: bytes) -> None:
            self._arm()  # a keep-alive connection starting its next request head
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is complete
                self.served = True
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.waiting_since = time.monotonic()  # now waiting for its next request
            self._disarm()  # uvicorn's keep-alive timeout watches the idle connection now

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def waiting_for_head(self) -> bool:
            return self.conn.their_state is h11.IDLE and (
                self.cycle is None or self.cycle.response_complete)

        def _arm(self) -> None:
            if self._head_timer is None and self.waiting_for_head():
                self.waiting_since = time.monotonic()
                self._head_timer = self.loop.call_later(head_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.waiting_for_head() and not self.transport.is_closing():
                self.transport.close()

        def _evict_oldest_waiting(self) -> None:
            waiting = [c for c in self.connections if c is not self
                       and isinstance(c, GuardedH11Protocol) and c.waiting_for_head()
                       and not c.transport.is_closing()]
            if waiting:
                min(waiting, key=lambda c: (c.served, c.waiting_since)).transport.close()

    return GuardedH11Protocol
