"""The web layer's one table: each film or request error -> its HTTP status, and the
handlers that answer them.

Codes and messages live with the errors themselves (app/contract/errors.py,
app/errors.py); only the status and headers are HTTP's. Clients that ask for HTML (a browser
on any page, or posting the upload form without JavaScript) get the message as a page with
the same status, whatever failed: a film, the request's parameters (FastAPI's validation), an
address or method no route answers, the server itself; everybody else gets JSON
`{"error": code, "detail": message}`.
"""

from __future__ import annotations

import html
import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from app.contract.errors import (
    CorruptImageError,
    DecodeBudgetError,
    DicomNotScoredError,
    DicomRescaleError,
    EmptyImageError,
    FileTooLargeError,
    ImageError,
    MissingFileMetaError,
    MultiFrameError,
    NotAnImageError,
    RequestBudgetError,
    TooManyPixelsError,
    UnsupportedEncodingError,
    UnsupportedFormatError,
    WorkerLostError,
)
from app.dicom.ingest import NotStoredError
from app.dicom.stow import UnsupportedMediaTypeError
from app.errors import (
    AppError,
    ClientDisconnectedError,
    CrossSiteFormError,
    InvalidCursorError,
    MissingFileError,
    ModelNotReadyError,
    NoThumbnailError,
    ServerBusyError,
    ShadowModeError,
    StoreNotReadyError,
    TooManyFilesError,
    TooManyLoginsError,
    UnauthorizedError,
    UnknownEntryError,
    UnknownModelError,
    UnknownValidationError,
    UploadError,
    UploadTimeoutError,
    UploadTooLargeError,
)
from app.logs import note_outcome
from app.web.deps import catalog_of, templates_of

log = logging.getLogger("app.requests")

RETRY_AFTER_SECONDS = 5  # while the model loads; loading takes a few seconds

# Most specific class first; the first match decides. The class's base is the fallback.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ModelNotReadyError, 503),
    (ServerBusyError, 503),
    (StoreNotReadyError, 503),
    (NotStoredError, 503),
    (UnsupportedMediaTypeError, 415),
    (UnknownModelError, 404),
    (UnknownEntryError, 404),
    (UnknownValidationError, 404),
    (NoThumbnailError, 404),
    (InvalidCursorError, 400),
    (CrossSiteFormError, 403),
    (ShadowModeError, 403),
    (UploadTimeoutError, 408),
    (UnauthorizedError, 401),
    (TooManyLoginsError, 429),
    (MissingFileError, 422),
    (TooManyFilesError, 413),  # one file too many in /predict's field is 400, below
    (UploadTooLargeError, 413),
    (ClientDisconnectedError, 400),
    (UploadError, 400),
    (AppError, 400),
    (EmptyImageError, 400),
    (NotAnImageError, 415),
    (UnsupportedFormatError, 415),
    (UnsupportedEncodingError, 415),  # intact, in an encoding the decoder does not read
    (MultiFrameError, 415),
    (TooManyPixelsError, 413),
    (FileTooLargeError, 413),
    (DicomNotScoredError, 422),
    (DicomRescaleError, 422),
    (MissingFileMetaError, 422),
    (DecodeBudgetError, 413),
    (RequestBudgetError, 503),
    (WorkerLostError, 413),
    (CorruptImageError, 400),
    (ImageError, 400),
)


def http_status(exc: Exception) -> int:
    """The HTTP status of a film or request error (400 for anything not in the table)."""
    if isinstance(exc, TooManyFilesError) and exc.limit == 1:
        return 400  # a second file where one belongs: a malformed request, not a big one
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def describe(exc: AppError | ImageError) -> tuple[int, str, str]:
    """(HTTP status, code, message) of a film or request error."""
    return http_status(exc), exc.code, exc.message


def _headers(exc: Exception) -> dict[str, str]:
    if isinstance(exc, ModelNotReadyError) and not exc.failed:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(exc, UnauthorizedError):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, ServerBusyError | NotStoredError):
        return {"Retry-After": "1"}
    if isinstance(exc, TooManyLoginsError):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return {}


def wants_html(request: Request) -> bool:
    """The client asked for a page: a browser's Accept names text/html (its navigations and
    form posts do); API clients send application/json or */* and get JSON."""
    return "text/html" in request.headers.get("accept", "")


# The error page's heading, by what failed (the error's class, else the status); its
# message says why.
FILM_HEADING = "Could not score this file"
UNKNOWN_MODEL_HEADING = "No such model"
_HEADINGS = {404: "Not found", 405: "Not allowed here", 413: "Too large",
             422: "Not a valid request", 429: "Too many attempts",
             503: "Not available just now"}
OTHER_HEADING = "Could not answer this request"
# The texts of the errors FastAPI and Starlette raise themselves.
NOT_FOUND_MESSAGE = "There is no page at this address."
NOT_ALLOWED_MESSAGE = "This address does not answer {method} requests."
INVALID_MESSAGE = "The request's parameters are not valid."


def _answer(request: Request, status: int, code: str, message: str,
            headers: dict[str, str] | None = None, *, heading: str | None = None,
            login: bool = False) -> Response:
    """JSON {"error": code, "detail": message}, or for a client that wants HTML the error
    page (templates/error.html; the login page for a missing token) with the same status
    and headers."""
    if not wants_html(request):
        return JSONResponse({"error": code, "detail": message}, status_code=status,
                            headers=headers)
    catalog = catalog_of(request)
    card = catalog.default.card if catalog.default is not None else None
    heading = heading or _HEADINGS.get(status, OTHER_HEADING)
    return templates_of(request).TemplateResponse(
        request, "login.html" if login else "error.html",
        {"card": card, "message": message, "heading": heading, "status": status,
         "code": code}, status_code=status, headers=headers)


def error_response(request: Request, exc: AppError | ImageError) -> Response:
    status, code, message = describe(exc)
    note_outcome(code)  # the access line's outcome (app/web/middleware.py)
    if isinstance(exc, ClientDisconnectedError):
        log.info("client disconnected during upload")
    heading = (FILM_HEADING if isinstance(exc, ImageError) else
               UNKNOWN_MODEL_HEADING if isinstance(exc, UnknownModelError) else None)
    return _answer(request, status, code, message, _headers(exc), heading=heading,
                   login=isinstance(exc, UnauthorizedError))


_PLAIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{heading} · Pneumonia triage</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><main><h1>{heading}</h1><p id="error" class="error">{message}</p>
<p class="small aid">HTTP {status} · {code}</p><p><a href="/">Back to the upload page</a></p>
</main></body></html>
"""


def plain_answer(scope: Scope, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None, **extra: str) -> Response:
    """The middleware's own answers (server busy, head too large, the unexpected 500) as
    `_answer` gives them, JSON with `extra` fields or a page, but without the templates:
    the failure may be theirs, and these run outside the app's exception handlers."""
    if wants_html(Request(scope)):
        page = _PLAIN_PAGE.format(heading=html.escape(_HEADINGS.get(status, OTHER_HEADING)),
                                  message=html.escape(message), status=status, code=code)
        return HTMLResponse(page, status_code=status, headers=headers)
    return JSONResponse({"error": code, **extra, "detail": message}, status_code=status,
                        headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method the path answers. Starlette's own 405 names those of the first route
    whose path matches, not of all of them (GET and PATCH /worklist/entries/{id} are two)."""
    routes = request.app.router.routes
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
                   for route in routes)]


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(request, exc)  # type: ignore[arg-type]

    async def handle_http(request: Request, exc: StarletteHTTPException) -> Response:
        # 404, 405 and friends in the same shape as every other error. JSON keeps
        # Starlette's detail ("Not Found"); a page says it in a sentence.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        message = str(exc.detail)
        if wants_html(request):
            message = {404: NOT_FOUND_MESSAGE,
                       405: NOT_ALLOWED_MESSAGE.format(method=request.method)}.get(
                exc.status_code, message)
        return _answer(request, exc.status_code, code, message, headers)

    async def handle_validation(request: Request, exc: RequestValidationError) -> Response:
        message = INVALID_MESSAGE
        if wants_html(request):  # a person can fix what is named (the value is not echoed)
            names = sorted({".".join(map(str, error["loc"][1:])) or str(error["loc"][0])
                            for error in exc.errors() if error["loc"]})
            message += f" Check: {', '.join(names)}." if names else ""
        return _answer(request, 422, "invalid_request", message)

    async def handle_database(request: Request, exc: OperationalError) -> Response:
        # The database went away or is locked: the worklist is not ready, as /readyz says.
        # The error's type only: its text may quote the database's host.
        log.warning("worklist database error: %s", type(exc.orig or exc).__name__)
        return error_response(request, StoreNotReadyError("the database did not answer"))

    app.add_exception_handler(AppError, handle)
    app.add_exception_handler(OperationalError, handle_database)
    app.add_exception_handler(ImageError, handle)
    app.add_exception_handler(StarletteHTTPException, handle_http)
    app.add_exception_handler(RequestValidationError, handle_validation)
