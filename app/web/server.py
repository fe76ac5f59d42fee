"""The HTTP server under the app: uvicorn's h11 protocol with the two guards it lacks.

uvicorn (0.54) closes a keep-alive connection that stays idle, but not a connection that
never completes its request head: 255 sockets that send nothing, or one header byte every
2 s, held every connection slot, and its `limit_concurrency` then answered 503 to every
request, /healthz and /readyz included (Kubernetes restarts the pod). So:

- a connection must complete each request head within `head_timeout` seconds of
  connecting (or of its previous response), or it is closed;
- past `max_connections`, a new connection closes the one that has waited longest for
  its request head, those that never sent a request first, so idle sockets can never crowd
  out a probe or a client; requests in flight are capped by the app (app/web/middleware.py
  `InFlightLimit`), which never counts the health routes. "Waited longest" counts from the
  start of the wait, not from the connection: a keep-alive client that has sent requests
  all along and is between two of them has waited milliseconds, and an attacker who
  reopens every closed socket at once must not push it out (it did, measured by
  benchmarks/attacks.py: 0 films/s under 1,100 idle sockets).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.config import Settings
from app.errors import StartupError

log = logging.getLogger("app.server")


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


def bind_http(host: str, port: int) -> socket.socket:
    """A socket bound as uvicorn binds it (SO_REUSEADDR; IPv6 for a host with a colon),
    before anything else starts, to find a taken port at once: StartupError, naming
    PNEUMONIA_PORT, when it is (uvicorn would find out only after the lifespan, and say it
    without the setting)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"The HTTP port {host}:{port} cannot be opened ({exc.strerror or exc}): free it "
            "or set PNEUMONIA_PORT to another port (PNEUMONIA_HOST: the address)",
            "PNEUMONIA_PORT") from exc
    return sock


def serve(settings: Settings) -> None:
    """Serve the app on `settings.host`:`settings.port` until stopped, with the guarded
    protocol, uvicorn's keep-alive and head limits, and no access line of uvicorn's own.
    Logging must be configured before (app/logs.py `configure`). Raises StartupError when
    the port cannot be opened; exits with status 3 (uvicorn's) when the lifespan fails,
    having logged why (one line for a StartupError: app/web/middleware.py)."""
    sock = bind_http(settings.host, settings.port)
    # log_config=None: uvicorn's loggers go to the app's handler; the access line is the
    # app's own (app/web/middleware.py: the route's template, never the path and its query).
    config = uvicorn.Config(
        "app.web.main:create_app", factory=True, host=settings.host, port=settings.port,
        http=guarded_protocol(settings.request_head_seconds, settings.max_connections),
        timeout_keep_alive=settings.keep_alive_seconds,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips,
        log_config=None, access_log=False)
    # The probe only: uvicorn binds the port itself. Serving from the probe's socket
    # (Server.run(sockets=...)) cost small films 30% of their requests/s at 8 clients
    # (benchmarks/compare_commits.py, 224 px JPEGs: 131 against 174 req/s).
    sock.close()
    uvicorn.Server(config).run()
