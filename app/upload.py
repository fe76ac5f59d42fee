"""Read one file field out of a multipart request, in memory, with hard limits.

Starlette's own form parsing spools uploads over 1 MB to a temporary file; X-rays must never
touch the disk, so the body is streamed through python-multipart here instead (a test makes
any temporary-file creation fail during a request, and fails if this is swapped back).
A declared Content-Length over the limit is refused before a single body byte is read, and
the stream is abandoned as soon as it passes the limit, so an oversized upload is never held
in memory.

This is the boundary for the request body: whatever python-multipart raises on hostile
framing (bad boundary, LF line endings, oversized or malformed part headers, ...) becomes
MalformedUploadError, and a client that goes away becomes ClientDisconnectedError.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect

from app.errors import (
    ClientDisconnectedError,
    MalformedUploadError,
    MissingFileError,
    TooManyFilesError,
    UploadError,
    UploadTooLargeError,
)

# Room for the multipart boundaries and part headers around the file itself.
_ENVELOPE_BYTES = 16 * 1024
# RFC 2046 caps a boundary at 70 characters; anything longer is not a real client.
_MAX_BOUNDARY = 70
# A form from the page or a client has a handful of parts; thousands of tiny ones are an
# attack on the parser, refused early.
_MAX_PARTS = 16


async def read_file_field(request: Request, max_bytes: int, field: str = "file") -> bytes:
    """The bytes of the form field `field` (a file part); raises UploadError subclasses."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise MissingFileError()
    if len(boundary) > _MAX_BOUNDARY:
        raise MalformedUploadError("boundary too long")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + _ENVELOPE_BYTES:
        raise UploadTooLargeError(max_bytes)

    part = _FilePart(field, max_bytes)
    received = 0
    try:
        parser = MultipartParser(boundary, part.callbacks())
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + _ENVELOPE_BYTES:
                raise UploadTooLargeError(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except ClientDisconnect as exc:
        raise ClientDisconnectedError() from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure is the body's fault
        raise MalformedUploadError(type(exc).__name__) from exc
    if parser.state != MultipartState.END:
        # Cut short: without the boundary after it, nothing proves the file is whole.
        raise MalformedUploadError("the body ends before its closing boundary")
    if part.data is None:
        raise MissingFileError()
    return bytes(part.data)


class _FilePart:
    """Collects the data of the part whose Content-Disposition names `field`."""

    def __init__(self, field: str, max_bytes: int) -> None:
        self.field = field.encode()
        self.max_bytes = max_bytes
        self.data: bytearray | None = None
        self._parts = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._collecting = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add("_header_name", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("_header_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _add(self, attribute: str, value: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + value)

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > _MAX_PARTS:
            raise MalformedUploadError("too many parts")
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._collecting = options.get(b"name") == self.field
        if self._collecting:
            if self.data is not None:
                raise TooManyFilesError()
            self.data = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._collecting and self.data is not None:
            if len(self.data) + (end - start) > self.max_bytes:
                raise UploadTooLargeError(self.max_bytes)
            self.data += data[start:end]

    def _part_end(self) -> None:
        self._collecting = False
