"""Read one file field out of a multipart request, in memory, with hard limits.

Starlette's own form parsing spools uploads over 1 MB to a temporary file; X-rays must never
touch the disk, so the body is parsed by python-multipart here instead (a test makes
any temporary-file creation fail during a request, and fails if this is swapped back).
A declared Content-Length over the limit is refused before a single body byte is read, and
the stream is abandoned as soon as it passes the limit, so an oversized upload is never held
in memory.

A single film (`read_file_upload`) is read on the event loop as it arrives and parsed by
the request's one thread call, the one that scores it (`FileUpload.data`): one hand-off
between the loop and a thread per request.

A worklist's files stream (`streamed_files`): each file is handed to the scoring thread as
soon as its closing boundary is in, while the event loop reads the rest of the body, and its
bytes leave the process once it is decoded; a few files at most are held at once, never the
whole body.

A STOW-RS body (multipart/related of DICOM instances) is split by the same parser
(`related_parts`): each part is handed over as it ends, with its Content-Type.

This is the boundary for the request body: whatever python-multipart raises on hostile
framing (bad boundary, LF line endings, oversized or malformed part headers, ...) becomes
MalformedUploadError, and a client that goes away becomes ClientDisconnectedError.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.contract.errors import FileTooLargeError
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
from app.memory import Held

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


class FileUpload:
    """One file field's multipart body as it arrived (`read_file_upload`), parsed by `data()`
    in the thread that calls it: the event loop only moves the bytes, and the request's one
    thread call (app/web/routes/predict.py) parses, scores and answers."""

    def __init__(self, chunks: list[bytes], boundary: bytes, field: str,
                 max_bytes: int) -> None:
        self._chunks = chunks
        self._boundary = boundary
        self._field = field
        self._max_bytes = max_bytes

    def data(self) -> bytes:
        """The bytes of the one file part named `field`; raises UploadError subclasses.
        Once: each chunk of the body is let go as soon as it is parsed."""
        parts = _FileParts(self._boundary, self._field, 1, self._max_bytes, self._max_bytes)
        chunks, self._chunks = self._chunks, []
        chunks.reverse()
        while chunks:
            parts.feed([chunks.pop()])
        parts.close()
        return _only_file(parts, self._field, self._max_bytes)


async def read_file_upload(request: Request, max_bytes: int, field: str = "file",
                           timeouts: tuple[float, float, float] = _NO_TIMEOUTS,
                           take: Callable[[int], None] = _unbounded) -> FileUpload:
    """The body of a form whose one file part is named `field`, read on the event loop
    within `max_bytes` of file (a declared Content-Length over it refused before a byte is
    read) and the uploads' time limits, each chunk counted by `take` (a BodyBudget
    reservation) before it is kept; parsed later, off the loop (`FileUpload.data`). Raises
    UploadError subclasses and ServerBusyError."""
    boundary = _boundary(request, field, 1, max_bytes)
    limit = max_bytes + _ENVELOPE_BYTES
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in _chunks(request, *timeouts):
            received += len(chunk)
            if received > limit:
                raise UploadTooLargeError(max_bytes)
            take(len(chunk))
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ClientDisconnectedError() from exc
    return FileUpload(chunks, boundary, field, max_bytes)


def _only_file(parts: _FileParts, field: str, max_bytes: int) -> bytes:
    """The one file the parts hold; MissingFileError without it, UploadTooLargeError for
    one over `max_bytes`."""
    if not parts.completed:
        raise MissingFileError(field)
    _, data = parts.completed[0]
    if not isinstance(data, bytes):  # a file over its limit
        raise UploadTooLargeError(max_bytes)
    return data


async def _chunks(request: Request, idle: float, total: float,
                  min_rate: float = 0.0) -> AsyncIterator[bytes]:
    """The body's chunks; UploadTimeoutError when one takes longer than `idle` seconds, the
    whole body longer than `total`, or (after a short grace) the average rate falls below
    `min_rate` bytes/s: a client trickling bytes holds its decode slot for seconds, not
    minutes. Only the client's time counts: while the reader is away (parsing, or waiting
    for the scoring thread to take a streamed file), the clocks stop, so the server's own
    pace is never blamed on the client."""
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
            # asyncio.timeout, not wait_for: no task of its own per chunk (Python 3.11's
            # wait_for makes one).
            async with asyncio.timeout(max(wait, 0.0)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise UploadTimeoutError() from exc
        received += len(chunk)
        away = loop.time()
        yield chunk
        away = loop.time() - away
        started += away
        deadline += away


async def body_chunks(request: Request,
                      timeouts: tuple[float, float, float] = _NO_TIMEOUTS,
                      ) -> AsyncIterator[bytes]:
    """A body that is not a multipart form (a small url-encoded one), chunk by chunk, under
    the uploads' time limits; ClientDisconnectedError when the client goes away."""
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


def _boundary(request: Request, field: str, max_files: int, max_total_bytes: int) -> bytes:
    """The body's multipart boundary, checked with its declared length before a byte of
    the body is read; raises UploadError subclasses."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise MissingFileError(field)
    if len(boundary) > _MAX_BOUNDARY:
        raise MalformedUploadError("boundary too long")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_total_bytes + _ENVELOPE_BYTES * max_files:
        raise UploadTooLargeError(max_total_bytes)
    return boundary


async def _parsed(request: Request, parts: _Parts, max_body_bytes: int, limit: int,
                  timeouts: tuple[float, float, float],
                  take: Callable[[int], None]) -> AsyncIterator[int]:
    """Feeds the body to python-multipart a piece at a time, yielding after each piece the
    raw bytes it no longer holds (parts.completed then has the parts that piece closed).
    Past `max_body_bytes` of body, UploadTooLargeError naming `limit`. Raises UploadError
    subclasses and ServerBusyError."""
    received = 0
    # A part ends at CRLF "--" boundary and the two bytes after it (python-multipart says so
    # only once it has them): the bytes in hand are parsed as soon as they may hold an end,
    # so that a file is handed over once it is in, not once a whole piece is.
    delimiter = parts.delimiter
    tail = b""
    try:
        # The body is read on the event loop and parsed in a worker thread, a piece at a
        # time: a body of many tiny parts costs the parser time, never the other requests.
        pending: list[bytes] = []
        size = 0
        async for chunk in _chunks(request, *timeouts):
            received += len(chunk)
            if received > max_body_bytes:
                raise UploadTooLargeError(limit)
            take(len(chunk))
            pending.append(chunk)
            size += len(chunk)
            near_end = delimiter in tail + chunk[:len(delimiter) + 2] or delimiter in chunk
            tail = (tail + chunk[-(len(delimiter) + 2):])[-(len(delimiter) + 2):]
            if size >= _PARSE_PIECE or near_end:
                await run_in_threadpool(parts.feed, pending)
                pending = []
                yield size
                size = 0
        if pending:  # a body whose end was parsed already costs no further thread call
            await run_in_threadpool(parts.feed, pending)
        yield size
    except (UploadError, ServerBusyError):
        raise
    except ClientDisconnect as exc:
        raise ClientDisconnectedError() from exc
    parts.close()


# A streamed file: its bytes, or (over the per-file limit) a function raising its error.
Source = bytes | Callable[[], bytes]
# Files handed to the scoring thread and not yet let go: one decoding, one waiting.
STREAM_DEPTH = 2


@dataclass(frozen=True)
class _End:
    error: BaseException | None


class FileStream:
    """The files of one multipart body as they complete: an iterator of (file name, bytes)
    for a worker thread (app/services/pipeline.py `score_films` reads lazily), filled by the
    event loop while the rest of the body arrives.

    At most `depth` files are handed over and not yet let go; the reader then waits, and
    so, through TCP, does the client. Asking for the next file lets the previous one go:
    its bytes are given back to the body budget (the scoring thread has decoded it by then
    and holds no reference). Iterating raises the body's error (UploadError subclasses,
    ServerBusyError) where it happened, after the files before it; what a partial result
    means is the caller's decision. Iterated once, from one thread that is not the loop's.
    """

    def __init__(self, depth: int, let_go: Callable[[int], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._items: queue.SimpleQueue[tuple[str, Source] | _End] = queue.SimpleQueue()
        self._room = asyncio.Semaphore(depth)
        self._let_go = let_go  # on the loop: bytes no longer held
        self._in_hand: int | None = None  # bytes of the file the consumer holds now
        self._started = asyncio.Event()
        self._early: BaseException | None = None  # the error of a body without any file
        self.handed = 0

    async def put(self, name: str, source: Source) -> None:
        """Hand over one file, once fewer than `depth` are held (on the loop)."""
        await self._room.acquire()
        self.handed += 1
        self._items.put((name, source))
        self._started.set()

    def end(self, error: BaseException | None = None) -> None:
        """No more files: the body ended, cleanly (None) or with `error` (on the loop)."""
        if self.handed == 0:
            self._early = error
        self._items.put(_End(error))
        self._started.set()

    async def started(self) -> None:
        """Returns once a file is in, or the body ended with a file or none; raises the
        body's error when it ended before any file."""
        await self._started.wait()
        if self._early is not None:
            raise self._early

    def _released(self, size: int) -> None:
        self._room.release()
        self._let_go(size)

    def __iter__(self) -> FileStream:
        return self

    def __next__(self) -> tuple[str, Source]:
        # A method, not a generator: a suspended generator's frame would keep the last file
        # alive while the next one is awaited.
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("a FileStream is read from a worker thread, never the loop")
        if self._in_hand is not None:
            self._loop.call_soon_threadsafe(self._released, self._in_hand)
            self._in_hand = None
        item = self._items.get()
        if isinstance(item, _End):
            self._items.put(item)  # asked again: the same end
            if item.error is not None:
                raise item.error
            raise StopIteration
        self._in_hand = len(item[1]) if isinstance(item[1], bytes) else 0
        return item


@asynccontextmanager
async def streamed_files(request: Request, field: str, max_files: int, max_file_bytes: int,
                         max_total_bytes: int,
                         timeouts: tuple[float, float, float] = _NO_TIMEOUTS,
                         held: Held | None = None,
                         on_first: Callable[[], None] | None = None,
                         ) -> AsyncIterator[FileStream]:
    """The files of the parts named `field` as they complete (FileStream), read on the event
    loop for the life of the block. A file over `max_file_bytes` is read past, never held,
    and handed over as a function raising FileTooLargeError: that file's answer. Past
    `max_files` files (TooManyFilesError), past `max_total_bytes` of file data
    (UploadTooLargeError), a malformed body (MalformedUploadError), a slow one
    (UploadTimeoutError) or a full body budget (ServerBusyError) end the stream with that
    error. `on_first()` runs when the first file is in, before it is handed over (the
    request's admission: it may raise ServerBusyError). Entering the block waits for the
    first file, and raises the body's error when it ends before one; so a request holds no
    worker thread and no admission while its first file arrives."""
    boundary = _boundary(request, field, max_files, max_total_bytes)
    held = held or Held()
    stream = FileStream(STREAM_DEPTH, held.give)
    parts = _FileParts(boundary, field, max_files, max_file_bytes, max_total_bytes)
    reader = asyncio.create_task(_read_into(stream, request, parts, timeouts, held,
                                            on_first))
    try:
        await stream.started()
        yield stream
    finally:
        reader.cancel()
        with suppress(asyncio.CancelledError):
            await reader


async def _read_into(stream: FileStream, request: Request, parts: _FileParts,
                     timeouts: tuple[float, float, float], held: Held,
                     on_first: Callable[[], None] | None) -> None:
    """The body into `stream`: each piece parsed, then the files it closed handed over."""
    in_parser = 0  # file bytes the parser holds: counted in the budget until handed over
    error: BaseException | None = None
    envelope = _ENVELOPE_BYTES * parts.max_files
    try:
        async with aclosing(_parsed(request, parts, parts.max_total_bytes + envelope,
                                    parts.max_total_bytes, timeouts, held.take)) as pieces:
            async for fed in pieces:
                # The raw piece is gone; what it added to the files is still held.
                held.give(fed - (parts.held - in_parser))
                while parts.completed:
                    name, source = parts.completed.popleft()
                    parts.held -= len(source) if isinstance(source, bytes) else 0
                    if stream.handed == 0 and on_first is not None:
                        on_first()
                    await stream.put(name, source)
                    del source
                in_parser = parts.held
        if stream.handed == 0:
            raise MissingFileError(parts.field.decode())
    except asyncio.CancelledError:
        error = ClientDisconnectedError()  # nobody reads the stream any more
        raise
    except Exception as exc:  # noqa: BLE001 - the body's error (or a bug: a 500) is the reader's
        error = exc
    finally:
        stream.end(error)


class _Parts:
    """python-multipart's MultipartParser over one body, with a subclass's callbacks; what
    they collect goes to `completed`. Runs in the parser's thread."""

    def __init__(self, boundary: bytes) -> None:
        self.delimiter = b"\r\n--" + boundary
        self._header_name = self._header_value = b""
        self._headers: dict[bytes, bytes] = {}  # the part's headers, names in lower case
        self._parser = MultipartParser(boundary, self.callbacks())

    def callbacks(self) -> dict:
        """python-multipart's callbacks: the headers are collected here, a subclass takes
        the parts (`_part_begin`, `_part_data`, `_part_end`, `_headers_finished`)."""
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

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        """A part's headers are all in `_headers`."""

    def _part_begin(self) -> None:
        raise NotImplementedError

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        raise NotImplementedError

    def _part_end(self) -> None:
        raise NotImplementedError

    def feed(self, chunks: list[bytes]) -> None:
        """Parse `chunks`; MalformedUploadError for whatever python-multipart raises on
        hostile framing, the callbacks' UploadError subclasses as they are."""
        try:
            for chunk in chunks:
                self._parser.write(chunk)
        except UploadError:
            raise
        except Exception as exc:  # noqa: BLE001 - any parser failure is the body's fault
            raise MalformedUploadError(type(exc).__name__) from exc

    def close(self) -> None:
        """The body has ended: MalformedUploadError unless with its closing boundary."""
        self._parser.finalize()
        if self._parser.state != MultipartState.END:
            # Cut short: without the boundary after it, nothing proves the part is whole.
            raise MalformedUploadError("the body ends before its closing boundary")


class _FileParts(_Parts):
    """Collects the data of every part whose Content-Disposition names `field`; each file
    goes to `completed` when its part ends."""

    def __init__(self, boundary: bytes, field: str, max_files: int, max_file_bytes: int,
                 max_total_bytes: int) -> None:
        self.field = field.encode()
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.completed: deque[tuple[str, Source]] = deque()
        self.held = 0  # bytes of file data in the current part and in `completed`
        self._files = 0
        self._total = 0
        self._parts = 0
        self._name = ""
        self._current: list[bytes] | None = None  # the data of a file part being read
        self._size = 0
        self._too_large = False
        self._maybe_unused_input = False
        super().__init__(boundary)

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > self.max_files + _EXTRA_PARTS:
            raise MalformedUploadError("too many parts")
        self._headers = {}

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") != self.field:
            return
        if self._files >= self.max_files:
            raise TooManyFilesError(self.max_files)
        self._files += 1
        filename = options.get(b"filename")
        # A browser posts an empty file input as a part with filename="" and no bytes.
        self._maybe_unused_input = filename == b""
        self._name = (filename or b"").decode("utf-8", "replace") or f"file {self._files}"
        self._current, self._size, self._too_large = [], 0, False

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None:
            return
        size = end - start
        self._total += size
        if self._total > self.max_total_bytes:
            raise UploadTooLargeError(self.max_total_bytes)
        self._size += size
        if self._too_large:
            return
        if self._size > self.max_file_bytes:  # read past from here on, never held
            self._too_large = True
            self.held -= self._size - size
            self._current.clear()
            return
        self._current.append(data[start:end])
        self.held += size

    def _part_end(self) -> None:
        current, self._current = self._current, None
        if current is None:
            return
        if self._too_large:
            self.completed.append((self._name, _refusal(self.max_file_bytes)))
        elif self._maybe_unused_input and not self._size:
            self._files -= 1  # an input the user left empty, not an empty file
        else:
            self.completed.append((self._name, b"".join(current)))
        self._maybe_unused_input = False


def _refusal(limit: int) -> Callable[[], bytes]:
    def refuse() -> bytes:
        raise FileTooLargeError(limit)
    return refuse


@dataclass(frozen=True)
class Part:
    """One part of a multipart/related body: its Content-Type header (None: none) and its
    bytes, as they arrived."""

    content_type: str | None
    data: bytes


class RelatedParts(_Parts):
    """A multipart/related body (RFC 2387: a STOW-RS request) split into its parts: `feed`
    chunks, then take the parts that ended from `completed`, then `close()`. Raises
    UploadTooLargeError for a part over `max_part_bytes`, TooManyFilesError past
    `max_parts`, MalformedUploadError for broken framing. Holds at most the part being read
    and those completed and not yet taken."""

    def __init__(self, boundary: str, max_part_bytes: int, max_parts: int) -> None:
        self.max_part_bytes = max_part_bytes
        self.max_parts = max_parts
        self.completed: deque[Part] = deque()
        self.held = 0  # bytes of part data in the current part and in `completed`
        self.parts = 0
        self._current: list[bytes] = []
        self._size = 0
        # RFC 2046 allows a preamble before the first boundary, which python-multipart
        # refuses: skipped here, keeping only the bytes a boundary may start in (None once
        # it is found). The CRLF makes a boundary at the very start look like the others.
        self._preamble: bytes | None = b"\r\n"
        super().__init__(boundary.encode("latin-1"))

    def feed(self, chunks: list[bytes]) -> None:
        if self._preamble is not None:
            chunks = [self._after_preamble(self._preamble + b"".join(chunks))]
        super().feed(chunks)

    def _after_preamble(self, seen: bytes) -> bytes:
        """`seen` from its first boundary on, or nothing while none has come."""
        start = seen.find(self.delimiter)
        if start < 0:
            self._preamble = seen[-(len(self.delimiter) - 1):]
            return b""
        self._preamble = None
        return seen[start + 2:]  # from "--boundary": python-multipart's start

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise TooManyFilesError(self.max_parts)
        self._headers, self._current, self._size = {}, [], 0

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._size > self.max_part_bytes:
            raise UploadTooLargeError(self.max_part_bytes)
        self._current.append(data[start:end])
        self.held += end - start

    def _part_end(self) -> None:
        content_type = self._headers.get(b"content-type")
        self.completed.append(Part(
            None if content_type is None else content_type.decode("latin-1").strip(),
            b"".join(self._current)))
        self._current = []


async def related_parts(request: Request, boundary: str, max_part_bytes: int,
                        max_parts: int, max_body_bytes: int,
                        timeouts: tuple[float, float, float] = _NO_TIMEOUTS,
                        held: Held | None = None) -> AsyncIterator[Part]:
    """Each part of a multipart/related body (STOW-RS) as soon as it has ended, read and
    parsed as `streamed_files` reads a form: within `max_part_bytes` a part, `max_parts`
    parts and `max_body_bytes` of body (a declared Content-Length over it refused before a
    byte is read), under the uploads' time limits. The body's bytes are counted in `held`
    (a BodyBudget reservation) as they arrive and given back as the parser lets go of them,
    a part's once the next one is asked for. Raises UploadError subclasses and
    ServerBusyError where they happen, after the parts before."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body_bytes:
        raise UploadTooLargeError(max_body_bytes)
    held = held or Held()
    parts = RelatedParts(boundary, max_part_bytes, max_parts)
    in_parser = 0  # part bytes the parser holds: counted in the budget until let go
    async with aclosing(_parsed(request, parts, max_body_bytes, max_body_bytes, timeouts,
                                held.take)) as pieces:
        async for fed in pieces:
            # The raw piece is gone; what it added to the parts is still held.
            held.give(max(fed - (parts.held - in_parser), 0))
            while parts.completed:
                part = parts.completed.popleft()
                parts.held -= len(part.data)
                yield part
                held.give(len(part.data))
                del part
            in_parser = parts.held
