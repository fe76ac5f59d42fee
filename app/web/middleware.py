"""The HTTP middleware, outermost first: the access line and latency histogram
(`AccessLog`), security headers with a request id, a 500 for the unexpected and the head's
size limit (`RequestGuard`), and the cap on requests in flight (`InFlightLimit`); and, for
the lifespan, a start-up failure's one line (`StartupMessage`).

All are plain ASGI middleware (not BaseHTTPMiddleware, which would buffer and re-raise).
`AccessLog` is outermost, so it times every response (the 431s, 503s and JSON 500s of the
guards inside it included) and reads the request id RequestGuard put on it. Requests are
labelled by their route's template (`/worklist/entries/{entry_id}`), never by the path: a path
can carry identifiers, and a label per path would grow without bound. A request no route
matched is `unmatched`. Every label comes from a fixed set: the route from the app's own
templates and mounts, the method from METHODS (else `other`), the status class from 1xx-5xx;
nothing a client sends becomes a label as sent. An exception nobody expected becomes a 500
carrying a request id (JSON, or a page for a browser), logged once with that id and the
traceback, never with the upload's name or bytes.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ServerBusyError, StartupError
from app.logs import CURRENT_REQUEST, RequestFacts
from app.metrics import Metrics
from app.web.errors import plain_answer

log = logging.getLogger("app.access")
UNMATCHED = "unmatched"
# The methods a label names (RFC 9110 section 9 and RFC 5789's PATCH; the app serves GET,
# HEAD, POST, PATCH and CORS' OPTIONS); any other is OTHER_METHOD. A client chooses the
# method (any token, h11 checks no more), so a label per method sent grew /metrics without
# bound: 3,000 invented ones took it from 7 KB to 187 MB.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
# Probes and scrapes come every few seconds: their lines are DEBUG, the rest INFO.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def method_label(method: str) -> str:
    """The request's method as a label and in the access line: one of METHODS (as sent:
    methods are case-sensitive, "get" is not GET) or OTHER_METHOD."""
    return method if method in METHODS else OTHER_METHOD


def status_class(status: int) -> str:
    """'1xx' to '5xx'; 'other' for a status outside 100-599 (none the app sends)."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


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
        facts = RequestFacts(method=method_label(scope["method"]))
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
            self.metrics.requests.labels(route, facts.method, status_class(status)).observe(
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


requests_log = logging.getLogger("app.requests")

# No inline script or style anywhere (the bar is SVG attributes, the script a file), no
# framing, no plugins; blob: for the upload preview.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Assets may be cached; everything else may carry a result, which is patient data.
_CACHEABLE_PREFIXES = ("/static/", "/report/figures/", "/docs/assets/", "/favicon.ico")


class RequestGuard:
    """Security headers, a request id, a 500 for the unexpected, and the request head's size
    limit (uvicorn's h11 limit binds only a head that arrives in several pieces)."""

    def __init__(self, app: ASGIApp, max_header_bytes: int = 16 * 1024) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + sum(
            len(name) + len(value) + 4 for name, value in scope["headers"])
        started = False
        cacheable = scope["path"].startswith(_CACHEABLE_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)  # a route may set a stricter one
                headers["X-Request-ID"] = request_id
                if not cacheable:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        if head > self.max_header_bytes:
            response = plain_answer(
                scope, 431, "headers_too_large",
                f"The request's headers are larger than the {self.max_header_bytes}-byte "
                "limit.")
            await response(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            requests_log.exception("request %s failed with an unexpected error", request_id)
            if started:  # the status line is gone; the server closes the connection
                return
            response = plain_answer(
                scope, 500, "internal_error",
                f"Something went wrong on the server (request {request_id}).",
                request_id=request_id)
            await response(scope, receive, send_with_headers)



# Kubernetes' probes: answered whatever else is in flight (they cost microseconds); and
# Prometheus' scrape, one per 15 s or so, whose figures are wanted most under load.
HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class InFlightLimit:
    """At most `limit` HTTP requests in flight; one more is answered 503 at once, except the
    health routes, which are never counted nor refused (a probe that fails under load
    would get the pod restarted, which only adds load)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            response = plain_answer(scope, 503, "busy", ServerBusyError.message,
                                    headers={"Retry-After": "1"})
            await response(scope, receive, send)
            return
        self.in_flight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class StartupMessage:
    """A StartupError in the lifespan (a port in use, a state folder not writable) as the
    start-up failure's message, its one line, instead of Starlette's traceback: Starlette
    sends `lifespan.startup.failed` with `traceback.format_exc()` and then re-raises, and
    uvicorn logs that message (80 lines for a port in use) and exits with status 3. The
    failure message is held until the exception shows what it was; any other exception
    keeps its traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold_failure(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, hold_failure)
        except StartupError as exc:
            if held:
                held = [{**held[0], "message": exc.message}]
            raise
        finally:
            for message in held:
                await send(message)
