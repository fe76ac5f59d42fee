"""The app's errors: one table of HTTP status and user-facing message, one JSON handler.

Messages are written for the person who uploaded the file; tests assert them.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from training.preprocessing import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedFormatError,
)


class UploadError(Exception):
    """Problems with the request itself, before any image decoding."""


class MissingFileError(UploadError):
    pass


class UploadTooLargeError(UploadError):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def describe(exc: Exception) -> tuple[int, str, str]:
    """(HTTP status, short code, message) for an upload or image error."""
    match exc:
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


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status, code, message = describe(exc)
        return JSONResponse({"error": code, "detail": message}, status_code=status)

    app.add_exception_handler(UploadError, handle)
    app.add_exception_handler(ImageError, handle)
