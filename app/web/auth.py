"""Who may ask, and who is asking: the optional access token (a Bearer header or the page's
signed session cookie), the login's throttle, the audit trail's user, and the refusal of
forms another site's page made a browser send."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict, deque
from typing import Annotated

from fastapi import Depends, Request

from app.errors import CrossSiteFormError, UnauthorizedError
from app.web.deps import settings_of

SESSION_COOKIE = "triage_session"


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



TOKEN_HOLDER = "token holder"
ANONYMOUS = "anonymous"
_MAX_USER_NAME = 128  # characters, after decoding


def acting_user(request: Request) -> str:
    """Who the worklist's audit trail names for this request.

    - PNEUMONIA_TRUSTED_USER_HEADER set (a reverse proxy that authenticates users and sets
      that header, e.g. X-Forwarded-User): the header's value (`trusted_user_name`). Only
      safe when clients cannot reach the app except through that proxy: anyone who can,
      can claim any name.
    - otherwise, or when that header is missing or empty: "token holder" when an access
      token is configured (every holder of the one token is the same to the app), else
      "anonymous" (an open server cannot tell its users apart).
    """
    settings = settings_of(request)
    if settings.trusted_user_header:
        name = trusted_user_name(request.headers.getlist(settings.trusted_user_header))
        if name:
            return name
    return TOKEN_HOLDER if settings.api_token is not None else ANONYMOUS


def trusted_user_name(values: list[str]) -> str:
    """The user name the trusted proxy gave, from the header's field lines in the order
    received ("" when none): the LAST line only, as UTF-8, its control and format characters
    dropped (no line breaks or bidi overrides in the trail), NFC, cut to 128 characters.

    Why the last: a proxy that appends its header (rather than replacing the client's)
    leaves a client's own `X-Forwarded-User: someone-else` in front of it, and Starlette's
    `headers.get` returns the first line, so the client's name won; the line the proxy
    added is the one nearest the app, the last (field lines keep their order, RFC 9110
    section 5.3; as with X-Forwarded-For, whose entry to trust is the rightmost: MDN's
    X-Forwarded-For, "Security and privacy concerns"). A proxy that merges lines into one
    with commas is not undone: a user name may hold a comma. Configure the proxy to drop
    the client's header where it can.

    Why re-decoded: HTTP carries header bytes and Starlette reads them as Latin-1 (RFC 9110
    section 5.5 leaves other bytes opaque), so "José" sent as UTF-8 arrived as "JosÃ©". The
    Latin-1 text is turned back into its bytes and read as UTF-8; bytes that are not UTF-8
    keep their Latin-1 reading (a proxy that sends Latin-1 names).
    """
    if not values:
        return ""
    raw = values[-1].encode("latin-1", errors="replace")  # Starlette's str: always Latin-1
    try:
        given = raw.decode("utf-8")
    except UnicodeDecodeError:
        given = values[-1]
    name = "".join(c for c in given if unicodedata.category(c)[0] != "C").strip()
    return unicodedata.normalize("NFC", name)[:_MAX_USER_NAME]


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


async def get_login_throttle(request: Request) -> LoginThrottle:
    return request.app.state.login_throttle


LoginThrottleDep = Annotated[LoginThrottle, Depends(get_login_throttle)]
