"""The app's errors: one table of HTTP status and user-facing message, one handler.

Messages are written for the person who uploaded the file; tests assert them. Clients that
ask for HTML (a browser posting the upload form without JavaScript) get the message as a
page; everybody else gets JSON `{"error": code, "detail": message}`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.contract.preprocessing import (
    CorruptImageError,
    DicomNotScoredError,
    EmptyImageError,
    ImageError,
    MultiFrameError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedFormatError,
)

log = logging.getLogger("app.requests")

RETRY_AFTER_SECONDS = 5  # while the model loads; loading takes a few seconds


class AppError(Exception):
    """Problems with the request or the server's state, before any image decoding."""


class ModelNotReadyError(AppError):
    def __init__(self, failed: bool) -> None:
        super().__init__("failed" if failed else "loading")
        self.failed = failed


class UnauthorizedError(AppError):
    pass


class UnknownModelError(AppError):
    """The request asked for a model this server does not offer."""

    def __init__(self, asked: str, offered: list[str]) -> None:
        super().__init__(asked, offered)
        self.asked = asked
        self.offered = offered


class ServerBusyError(AppError):
    """Every decode slot is taken: refused at once rather than queued."""


class UploadError(AppError):
    pass


class DecodeBudgetError(ImageError):
    """The film took longer than the per-image decode budget: stopped, never scored."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)  # every argument: it must pickle
        self.seconds = seconds


class WorkerLostError(ImageError):
    """The worker decoding the film died (killed for memory, or crashed): not scored."""


class MissingFileError(UploadError):
    pass


class TooManyFilesError(UploadError):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class MalformedUploadError(UploadError):
    """The multipart body cannot be parsed (framing, boundary, headers, part count)."""


class UploadTimeoutError(UploadError):
    """The client sent its upload too slowly."""


class ClientDisconnectedError(UploadError):
    """The client went away mid-upload: nobody reads the answer, one INFO line is enough."""


class UploadTooLargeError(UploadError):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def size_text(n_bytes: int) -> str:
    """A byte limit for people, never rounded to 0: '20 MiB', '4 KiB', '512 bytes'."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g} {unit}"
    return f"{n_bytes} bytes"


def pixels_text(pixels: int) -> str:
    """'50 million pixels', '10,000 pixels': never '0 million'."""
    if pixels >= 1_000_000:
        return f"{pixels / 1e6:.3g} million pixels"
    return f"{pixels:,} pixels"


def describe(exc: Exception) -> tuple[int, str, str]:
    """(HTTP status, short code, message) for an app or image error."""
    match exc:
        case ModelNotReadyError(failed=True):
            return 503, "model_unavailable", (
                "The model could not be loaded; the server log says why.")
        case ModelNotReadyError():
            return 503, "model_loading", "The model is still loading. Try again in a moment."
        case ServerBusyError():
            return 503, "busy", "The server is scoring as many films as it can. Try again in a "\
                "moment."
        case UnknownModelError(offered=offered):
            return 404, "unknown_model", (
                "This server offers the models " + ", ".join(repr(n) for n in offered)
                + "; ask for one of them with ?model=NAME, or leave it out for the default.")
        case UploadTimeoutError():
            return 408, "upload_too_slow", "The upload was too slow and was stopped. Try again."
        case UnauthorizedError():
            return 401, "unauthorized", (
                "This server needs an access token: send 'Authorization: Bearer <token>'.")
        case MissingFileError():
            return 422, "missing_file", (
                "No file was uploaded. Send the X-ray as multipart/form-data in a field "
                "named 'file'.")
        case TooManyFilesError(limit=1):
            return 400, "too_many_files", (
                "More than one file was sent in the field 'file'. Send one X-ray per request, "
                "or many to /predict/batch.")
        case TooManyFilesError(limit=limit):
            return 413, "too_many_files", f"More than {limit} files in one request."
        case MalformedUploadError():
            return 400, "malformed_upload", (
                "The upload could not be read: the multipart/form-data body is malformed.")
        case ClientDisconnectedError():
            return 400, "client_disconnected", "The upload was interrupted."
        case UploadTooLargeError(limit=limit):
            return 413, "file_too_large", (
                f"The file is larger than the {size_text(limit)} upload limit.")
        case EmptyImageError():
            return 400, "empty_file", "The uploaded file is empty."
        case NotAnImageError():
            return 415, "not_an_image", (
                "The file is not an image we can read. Upload a chest X-ray as JPEG, PNG or "
                "DICOM.")
        case UnsupportedFormatError(image_format=fmt):
            return 415, "unsupported_format", (
                f"{fmt or 'This'} images are not supported. Upload a JPEG, PNG or DICOM.")
        case MultiFrameError(frames=frames):
            return 415, "multi_frame", (
                f"The image has {frames} frames (an animation). Upload a single X-ray.")
        case TooManyPixelsError(pixels=pixels, limit=limit):
            size = f"has {pixels_text(pixels)}" if pixels else "is too large to decode"
            limit_text = f"; the limit is {pixels_text(limit)}" if limit else ""
            return 413, "image_too_large", f"The image {size}{limit_text}."
        case DicomNotScoredError(reason=reason, message=message):
            return 422, f"dicom_{reason}", message
        case DecodeBudgetError(seconds=seconds):
            return 413, "decode_too_slow", (
                f"The image took longer than {seconds:g} s to decode and was stopped. Export "
                "the film again as a plain JPEG or PNG.")
        case WorkerLostError():
            return 413, "image_too_large", (
                "The image needed more memory to decode than the server allows per film.")
        case CorruptImageError():
            return 400, "corrupt_image", (
                "The image is damaged or truncated and was not scored: part of the film is "
                "missing or unreadable. Upload the complete original file.")
    return 400, "bad_image", "The image could not be processed."


def _headers(exc: Exception) -> dict[str, str]:
    if isinstance(exc, ModelNotReadyError) and not exc.failed:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(exc, UnauthorizedError):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, ServerBusyError):
        return {"Retry-After": "1"}
    return {}


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def error_response(request: Request, exc: Exception) -> Response:
    status, code, message = describe(exc)
    if isinstance(exc, ClientDisconnectedError):
        log.info("client disconnected during upload")
    if wants_html(request):
        slot = request.app.state.slot
        card = slot.model.card if slot.model is not None else None
        page = "login.html" if isinstance(exc, UnauthorizedError) else "error.html"
        return request.app.state.templates.TemplateResponse(
            request, page, {"card": card, "message": message},
            status_code=status, headers=_headers(exc))
    return JSONResponse({"error": code, "detail": message}, status_code=status,
                        headers=_headers(exc))


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(request, exc)

    async def handle_http(request: Request, exc: StarletteHTTPException) -> Response:
        # 404, 405 and friends in the same JSON shape as every other error.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=exc.headers)

    async def handle_validation(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"error": "invalid_request",
                             "detail": "The request's parameters are not valid."},
                            status_code=422)

    app.add_exception_handler(AppError, handle)
    app.add_exception_handler(ImageError, handle)
    app.add_exception_handler(StarletteHTTPException, handle_http)
    app.add_exception_handler(RequestValidationError, handle_validation)
