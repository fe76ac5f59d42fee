"""Security at the edge: response headers, a request id and a 500 for the unexpected (JSON,
or a page for a browser), and the optional access token.

`RequestGuard` is a plain ASGI middleware (not BaseHTTPMiddleware, which would buffer and
re-raise): every response leaves with the headers below, and an exception nobody expected
becomes a 500 carrying a request id (JSON, or a page for a browser), logged once with that id
and the traceback, never with the upload's name or bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import unicodedata
import uuid
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.deps import settings_of
from app.errors import CrossSiteFormError, ServerBusyError, UnauthorizedError
from app.http_errors import plain_answer

log = logging.getLogger("app.requests")

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
SESSION_COOKIE = "triage_session"


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
            log.exception("request %s failed with an unexpected error", request_id)
            if started:  # the status line is gone; the server closes the connection
                return
            response = plain_answer(
                scope, 500, "internal_error",
                f"Something went wrong on the server (request {request_id}).",
                request_id=request_id)
            await response(scope, receive, send_with_headers)


def _sign(token: str, payload: str) -> str:
    key = hmac.new(token.encode(), b"triage page session key", hashlib.sha256).digest()
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def new_session(token: str, now: float | None = None) -> str:
    """A login's cookie value: `issued.nonce.signature`, signed with a key derived from the
    token (never the token itself), different for every login."""
    payload = f"{int(time.time() if now is None else now)}.{secrets.token_hex(16)}"
    return f"{payload}.{_sign(token, payload)}"


def session_valid(cookie: str, token: str, max_age_seconds: float,
                  now: float | None = None) -> bool:
    """The cookie was signed for this token and is younger than `max_age_seconds`."""
    issued, _, rest = cookie.partition(".")
    nonce, _, signature = rest.partition(".")
    if not (issued.isdigit() and nonce and signature):
        return False
    if not hmac.compare_digest(signature.encode(), _sign(token, f"{issued}.{nonce}").encode()):
        return False
    age = (time.time() if now is None else now) - int(issued)
    return 0 <= age < max_age_seconds


def token_matches(request: Request, token: str, session_hours: float) -> bool:
    """A Bearer header or a live page session cookie, compared in constant time."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    bearer = scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return bearer or session_valid(cookie, token, session_hours * 3600)


async def require_token(request: Request) -> None:
    """Dependency of the scoring routes: a no-op unless PNEUMONIA_API_TOKEN is set."""
    settings = settings_of(request)
    if settings.api_token is None:
        return
    if not token_matches(request, settings.api_token.get_secret_value(),
                         settings.session_hours):
        raise UnauthorizedError()


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


TOKEN_HOLDER = "token holder"
ANONYMOUS = "anonymous"
_MAX_USER_NAME = 128


def acting_user(request: Request) -> str:
    """Who the worklist's audit trail names for this request.

    - PNEUMONIA_TRUSTED_USER_HEADER set (a reverse proxy that authenticates users and sets
      that header, e.g. X-Forwarded-User): the header's value, its control characters
      dropped and cut to 128 characters. Only safe when clients cannot reach the app except
      through that proxy: anyone who can, can claim any name.
    - otherwise, or when that header is missing or empty: "token holder" when an access
      token is configured (every holder of the one token is the same to the app), else
      "anonymous" (an open server cannot tell its users apart).
    """
    settings = settings_of(request)
    if settings.trusted_user_header:
        given = request.headers.get(settings.trusted_user_header, "")
        name = "".join(c for c in given if unicodedata.category(c)[0] != "C").strip()
        if name:
            return name[:_MAX_USER_NAME]
    return TOKEN_HOLDER if settings.api_token is not None else ANONYMOUS


async def get_acting_user(request: Request) -> str:
    return acting_user(request)


ActorDep = Annotated[str, Depends(get_acting_user)]


async def refuse_cross_site(request: Request) -> None:
    """Dependency of the POSTs that store or change something: a request that another site's
    page made the browser send (a form, or a fetch without CORS, which no preflight stops)
    is refused with 403, whatever cookie it carries. With a token, the SameSite=Strict
    session cookie already keeps it out; this also covers a server without one. Browsers
    say where a request comes from in Sec-Fetch-Site and Origin; an origin allowed in
    PNEUMONIA_CORS_ORIGINS may post; clients that send neither header (curl, scripts) are
    not a browser driven by another site."""
    origin = request.headers.get("origin")
    if origin is not None and origin in settings_of(request).cors_origins:
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise CrossSiteFormError()
        return
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise CrossSiteFormError()
