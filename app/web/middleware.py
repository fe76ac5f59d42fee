"""The access line and the HTTP latency histogram: a plain ASGI middleware, outermost, so it
times every response (the 431s, 503s and JSON 500s of the guards inside it included) and
reads the request id RequestGuard put on it.

Requests are labelled by their route's template (`/worklist/entries/{entry_id}`), never by
the path: a path can carry identifiers, and a label per path would grow without bound. A
request no route matched is `unmatched`.
"""

from __future__ import annotations

import logging
import time

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import CURRENT_REQUEST, RequestFacts
from app.metrics import Metrics

log = logging.getLogger("app.access")
UNMATCHED = "unmatched"
# Probes and scrapes come every few seconds: their lines are DEBUG, the rest INFO.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def route_template(scope: Scope, path: str) -> str:
    """The matched route's path template, else the prefix of the app's mount that `path`
    (as asked) falls under (the router sets no route for a mount), else UNMATCHED."""
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str) and template:
        return template
    for mount in getattr(scope.get("app"), "routes", ()):
        if isinstance(mount, Mount) and mount.path and (
                path == mount.path or path.startswith(mount.path + "/")):
            return mount.path
    return UNMATCHED


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, path = time.perf_counter(), scope["path"]
        facts = RequestFacts(method=scope["method"])
        token = CURRENT_REQUEST.set(facts)
        status, request_id = 500, None  # what a client sees when nothing is sent

        async def send_and_note(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                request_id = dict(message.get("headers", [])).get(b"x-request-id", b"").decode()
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            CURRENT_REQUEST.reset(token)
            seconds = time.perf_counter() - started
            route = route_template(scope, path)
            self.metrics.requests.labels(route, facts.method, f"{status // 100}xx").observe(
                seconds)
            _log(facts, route, status, request_id or None, seconds)


def _log(facts: RequestFacts, route: str, status: int, request_id: str | None,
         seconds: float) -> None:
    level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
    if not log.isEnabledFor(level):
        return
    extra = {"request_id": request_id, "route": route, "method": facts.method,
             "status": status, "duration_ms": round(seconds * 1000, 2), "model": facts.model,
             "outcome": facts.outcome or ("ok" if status < 400 else "error"),
             "films": facts.films if facts.outcome == "batch" else None}
    shown = " ".join(f"{name}={value}" for name in ("model", "outcome", "request_id")
                     if (value := extra[name]) is not None)
    log.log(level, "%s %s %d %.1f ms %s", facts.method, route, status, seconds * 1000, shown,
            extra=extra)
