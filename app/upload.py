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

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs

from fastapi import Request
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.errors import (
    ClientDisconnectedError,
    MalformedUploadError,
    MissingFileError,
    ServerBusyError,
    TooManyFilesError,
    UploadError,
    UploadTimeoutError,
    UploadTooLargeError,
)

# Room for the multipart boundaries and part headers around the file itself.
_ENVELOPE_BYTES = 16 * 1024
# RFC 2046 caps a boundary at 70 characters; anything longer is not a real client.
_MAX_BOUNDARY = 70
# Parts a form may carry beside its files; thousands of tiny ones are an attack on the parser.
_EXTRA_PARTS = 15


_NO_TIMEOUTS = (3600.0, 3600.0, 0.0)


def _unbounded(n: int) -> None:
    """No budget: tools and tests that read one body."""
# Seconds an upload may take before its average rate is held to the minimum.
_RATE_GRACE_SECONDS = 2.0
# Bytes of body handed to the parser's thread at once: one thread hop per piece.
_PARSE_PIECE = 1 << 20


class BodyBudget:
    """The bytes of every request body in flight, together, within `limit`: one more chunk
    that would pass it is refused at once (ServerBusyError, 503), so many slow or large
    uploads cannot take the server's memory. Used on the event loop only: no lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    @contextmanager
    def reservation(self) -> Iterator[Callable[[int], None]]:
        """A `take(n)` for one request's bytes; all of them given back when it ends."""
        taken = 0

        def take(n: int) -> None:
            nonlocal taken
            if self.held + n > self.limit:
                raise ServerBusyError()
            self.held += n
            taken += n

        try:
            yield take
        finally:
            self.held -= taken


async def read_file_field(request: Request, max_bytes: int, field: str = "file",
                          timeouts: tuple[float, float, float] = _NO_TIMEOUTS,
                          take: Callable[[int], None] = _unbounded) -> bytes:
    """The bytes of the one file part named `field`; raises UploadError subclasses."""
    files = await read_files(request, field, max_files=1, max_file_bytes=max_bytes,
                             max_total_bytes=max_bytes, timeouts=timeouts, take=take)
    return files[0][1]


async def _chunks(request: Request, idle: float, total: float,
                  min_rate: float = 0.0) -> AsyncIterator[bytes]:
    """The body's chunks; UploadTimeoutError when one takes longer than `idle` seconds, the
    whole body longer than `total`, or (after a short grace) the average rate falls below
    `min_rate` bytes/s: a client trickling bytes holds its decode slot for seconds, not
    minutes."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + total
    stream = request.stream().__aiter__()
    received = 0
    while True:
        now = loop.time()
        wait = min(idle, deadline - now)
        if min_rate:
            wait = min(wait, started + _RATE_GRACE_SECONDS + received / min_rate - now)
        try:
            chunk = await asyncio.wait_for(anext(stream), timeout=max(wait, 0.0))
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise UploadTimeoutError() from exc
        received += len(chunk)
        yield chunk


async def body_chunks(request: Request,
                      timeouts: tuple[float, float, float] = _NO_TIMEOUTS,
                      ) -> AsyncIterator[bytes]:
    """A body that is not a form (DICOMweb STOW-RS), chunk by chunk, under the uploads'
    time limits; ClientDisconnectedError when the client goes away."""
    try:
        async for chunk in _chunks(request, *timeouts):
            yield chunk
    except ClientDisconnect as exc:
        raise ClientDisconnectedError() from exc


SMALL_FORM_BYTES = 4096


async def read_small_form(request: Request, max_bytes: int = SMALL_FORM_BYTES,
                          timeouts: tuple[float, float, float] = _NO_TIMEOUTS,
                          ) -> dict[str, str]:
    """The fields of a small url-encoded form (the login, a status button), each field's
    first value; MalformedUploadError past `max_bytes`."""
    body = b""
    async for chunk in body_chunks(request, timeouts):
        body += chunk
        if len(body) > max_bytes:
            raise MalformedUploadError("form too large")
    fields = parse_qs(body.decode("utf-8", "replace"))
    return {name: values[0] for name, values in fields.items()}


async def read_files(request: Request, field: str, max_files: int, max_file_bytes: int,
                     max_total_bytes: int,
                     timeouts: tuple[float, float, float] = _NO_TIMEOUTS,
                     take: Callable[[int], None] = _unbounded,
                     ) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every part named `field`, in upload order, within the limits;
    each chunk's bytes counted by `take` (a BodyBudget reservation) before it is kept."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise MissingFileError(field)
    if len(boundary) > _MAX_BOUNDARY:
        raise MalformedUploadError("boundary too long")
    envelope = _ENVELOPE_BYTES * max_files
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_total_bytes + envelope:
        raise UploadTooLargeError(max_total_bytes)

    parts = _FileParts(field, max_files, max_file_bytes, max_total_bytes)
    received = 0
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        # The body is read on the event loop and parsed in a worker thread, a piece at a
        # time: a body of many tiny parts costs the parser time, never the other requests.
        pending: list[bytes] = []
        async for chunk in _chunks(request, *timeouts):
            received += len(chunk)
            if received > max_total_bytes + envelope:
                raise UploadTooLargeError(max_total_bytes)
            take(len(chunk))
            pending.append(chunk)
            if sum(map(len, pending)) >= _PARSE_PIECE:
                await run_in_threadpool(_feed, parser, pending)
                pending = []
        await run_in_threadpool(_feed, parser, pending, True)
    except (UploadError, ServerBusyError):
        raise
    except ClientDisconnect as exc:
        raise ClientDisconnectedError() from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure is the body's fault
        raise MalformedUploadError(type(exc).__name__) from exc
    if parser.state != MultipartState.END:
        # Cut short: without the boundary after it, nothing proves the file is whole.
        raise MalformedUploadError("the body ends before its closing boundary")
    if not parts.files:
        raise MissingFileError(field)
    return [(name, bytes(data)) for name, data in parts.files]


def _feed(parser: MultipartParser, chunks: list[bytes], last: bool = False) -> None:
    for chunk in chunks:
        parser.write(chunk)
    if last:
        parser.finalize()


class _FileParts:
    """Collects the data of every part whose Content-Disposition names `field`."""

    def __init__(self, field: str, max_files: int, max_file_bytes: int,
                 max_total_bytes: int) -> None:
        self.field = field.encode()
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.files: list[tuple[str, bytearray]] = []
        self._total = 0
        self._parts = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._current: bytearray | None = None
        self._maybe_unused_input = False

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
        if self._parts > self.max_files + _EXTRA_PARTS:
            raise MalformedUploadError("too many parts")
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") != self.field:
            return
        if len(self.files) >= self.max_files:
            raise TooManyFilesError(self.max_files)
        filename = options.get(b"filename")
        # A browser posts an empty file input as a part with filename="" and no bytes.
        self._maybe_unused_input = filename == b""
        name = (filename or b"").decode("utf-8", "replace") or f"file {len(self.files) + 1}"
        self._current = bytearray()
        self.files.append((name, self._current))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None:
            return
        size = end - start
        self._total += size
        if len(self._current) + size > self.max_file_bytes:
            raise UploadTooLargeError(self.max_file_bytes)
        if self._total > self.max_total_bytes:
            raise UploadTooLargeError(self.max_total_bytes)
        self._current += data[start:end]

    def _part_end(self) -> None:
        if self._current is not None and self._maybe_unused_input and not self._current:
            self.files.pop()  # an input the user left empty, not an empty file
        self._current = None
        self._maybe_unused_input = False
