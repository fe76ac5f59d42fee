"""Read one file field out of a multipart request, in memory, with a hard byte limit.

Starlette's own form parsing spools uploads over 1 MB to a temporary file; X-rays must never
touch the disk, so the body is streamed through python-multipart here instead. A declared
Content-Length over the limit is refused before a single body byte is read, and the stream is
abandoned as soon as it passes the limit, so an oversized upload is never held in memory.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import MissingFileError, UploadTooLargeError

# Room for the multipart boundaries and part headers around the file itself.
_ENVELOPE_BYTES = 16 * 1024


async def read_file_field(request: Request, max_bytes: int, field: str = "file") -> bytes:
    """The bytes of the form field `field` (a file part); raises MissingFileError when absent."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise MissingFileError()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + _ENVELOPE_BYTES:
        raise UploadTooLargeError(max_bytes)

    part = _FilePart(field, max_bytes)
    parser = MultipartParser(boundary, part.callbacks())
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes + _ENVELOPE_BYTES:
            raise UploadTooLargeError(max_bytes)
        parser.write(chunk)
    parser.finalize()
    if part.data is None:
        raise MissingFileError()
    return bytes(part.data)


class _FilePart:
    """Collects the data of the first part whose Content-Disposition names `field`."""

    def __init__(self, field: str, max_bytes: int) -> None:
        self.field = field.encode()
        self.max_bytes = max_bytes
        self.data: bytearray | None = None
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
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._collecting = self.data is None and options.get(b"name") == self.field
        if self._collecting:
            self.data = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._collecting and self.data is not None:
            if len(self.data) + (end - start) > self.max_bytes:
                raise UploadTooLargeError(self.max_bytes)
            self.data += data[start:end]

    def _part_end(self) -> None:
        self._collecting = False
