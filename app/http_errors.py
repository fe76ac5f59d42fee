"""The web layer's one table: each film or request error -> its HTTP status, and the
handlers that answer them.

Codes and messages live with the errors themselves (app/contract/errors.py,
app/errors.py); only the status and headers are HTTP's. Clients that ask for HTML (a browser
posting the upload form without JavaScript) get the message as a page; everybody else gets
JSON `{"error": code, "detail": message}`.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.contract.errors import (
    CorruptImageError,
    DecodeBudgetError,
    DicomNotScoredError,
    DicomRescaleError,
    EmptyImageError,
    ImageError,
    MissingFileMetaError,
    MultiFrameError,
    NotAnImageError,
    RequestBudgetError,
    TooManyPixelsError,
    UnsupportedFormatError,
    WorkerLostError,
)
from app.deps import catalog_of, templates_of
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
    StoreNotReadyError,
    TooManyFilesError,
    TooManyLoginsError,
    UnauthorizedError,
    UnknownEntryError,
    UnknownModelError,
    UploadError,
    UploadTimeoutError,
    UploadTooLargeError,
)
from app.logs import note_outcome

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
    (NoThumbnailError, 404),
    (InvalidCursorError, 400),
    (CrossSiteFormError, 403),
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
    (MultiFrameError, 415),
    (TooManyPixelsError, 413),
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
    return "text/html" in request.headers.get("accept", "")


def error_response(request: Request, exc: AppError | ImageError) -> Response:
    status, code, message = describe(exc)
    note_outcome(code)  # the access line's outcome (app/access.py)
    if isinstance(exc, ClientDisconnectedError):
        log.info("client disconnected during upload")
    if wants_html(request):
        catalog = catalog_of(request)
        card = catalog.default.card if catalog.default is not None else None
        page = "login.html" if isinstance(exc, UnauthorizedError) else "error.html"
        return templates_of(request).TemplateResponse(
            request, page, {"card": card, "message": message},
            status_code=status, headers=_headers(exc))
    return JSONResponse({"error": code, "detail": message}, status_code=status,
                        headers=_headers(exc))


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
        # 404, 405 and friends in the same JSON shape as every other error.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return JSONResponse({"error": code, "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=headers)

    async def handle_validation(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"error": "invalid_request",
                             "detail": "The request's parameters are not valid."},
                            status_code=422)

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
