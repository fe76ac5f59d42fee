"""The app's errors: one table of HTTP status and user-facing message, one handler.

Messages are written for the person who uploaded the file; tests assert them. Clients that
ask for HTML (a browser posting the upload form without JavaScript) get the message as a
page; everybody else gets JSON `{"error": code, "detail": message}`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from app.contract.preprocessing import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedFormatError,
)

RETRY_AFTER_SECONDS = 5  # while the model loads; loading takes a few seconds


class AppError(Exception):
    """Problems with the request or the server's state, before any image decoding."""


class ModelNotReadyError(AppError):
    def __init__(self, failed: bool) -> None:
        super().__init__("failed" if failed else "loading")
        self.failed = failed


class UploadError(AppError):
    pass


class MissingFileError(UploadError):
    pass


class UploadTooLargeError(UploadError):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def describe(exc: Exception) -> tuple[int, str, str]:
    """(HTTP status, short code, message) for an app or image error."""
    match exc:
        case ModelNotReadyError(failed=True):
            return 503, "model_unavailable", (
                "The model could not be loaded; the server log says why.")
        case ModelNotReadyError():
            return 503, "model_loading", "The model is still loading. Try again in a moment."
        case MissingFileError():
            return 422, "missing_file", (
                "No file was uploaded. Send the X-ray as multipart/form-data in a field "
                "named 'file'.")
        case UploadTooLargeError(limit=limit):
            return 413, "file_too_large", (
                f"The file is larger than the {limit / 1024 / 1024:.0f} MiB upload limit.")
        case EmptyImageError():
            return 400, "empty_file", "The uploaded file is empty."
        case NotAnImageError():
            return 415, "not_an_image", (
                "The file is not an image we can read. Upload a chest X-ray as JPEG or PNG.")
        case UnsupportedFormatError(image_format=fmt):
            return 415, "unsupported_format", (
                f"{fmt or 'This'} images are not supported. Upload a JPEG or PNG.")
        case TooManyPixelsError(pixels=pixels, limit=limit):
            size = f"{pixels / 1e6:.1f} million pixels" if pixels else "too many pixels"
            return 413, "image_too_large", (
                f"The image has {size}; the limit is {limit / 1e6:.0f} million.")
        case CorruptImageError():
            return 400, "corrupt_image", (
                "The image could not be decoded: the file looks truncated or damaged.")
    return 400, "bad_image", "The image could not be processed."


def _headers(exc: Exception) -> dict[str, str]:
    if isinstance(exc, ModelNotReadyError) and not exc.failed:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return {}


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def error_response(request: Request, exc: Exception) -> Response:
    status, code, message = describe(exc)
    if wants_html(request):
        slot = request.app.state.slot
        card = slot.model.card if slot.model is not None else None
        return request.app.state.templates.TemplateResponse(
            request, "error.html", {"card": card, "message": message},
            status_code=status, headers=_headers(exc))
    return JSONResponse({"error": code, "detail": message}, status_code=status,
                        headers=_headers(exc))


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(request, exc)

    app.add_exception_handler(AppError, handle)
    app.add_exception_handler(ImageError, handle)
