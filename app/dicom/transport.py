"""The node's transport: pynetdicom's association server with the bounds a node that is left
connected needs, each a small subclass or wrapper of a pynetdicom part (none patches it).

pynetdicom 3.0 (transport.py, dul.py, dimse.py) starts a thread for every TCP connection,
reads a PDU's whole declared length into memory, blocks without a deadline while a PDU
trickles in, and buffers a data set of any size. Here:

- `GuardedServer`: its accept loop hands each connection to the Doorman
  (app/dicom/doorman.py: connection caps, the request deadline, the allow-list and the
  association slots, all before a thread), which hands an accepted one to `_Handler`.
- `PduGuard`: around each accepted association's socket, a PDU longer than the negotiated
  maximum is refused on its header, unread, and a PDU must arrive whole within
  `pdu_seconds` of its first byte; either is an A-ABORT.
- `BoundedDimse` / `ReceivedDataSet`: a data set's bytes are counted in the memory budget
  (app/memory.py BodyBudget, shared with the HTTP door) as they arrive; past the byte limit
  (final) or with the budget full (retry) the rest is read past, never kept, and the C-STORE
  is answered with its refusal (app/dicom/scp.py).
- `QuietDul` (and `BoundedDimse.get_msg`): the association's two reactors wait for their
  socket, a PDU to send or a message instead of waking every millisecond to look (dul.py's
  own TODO), and the connection has TCP_NODELAY and answers with quick ACKs, so neither
  side's small PDUs wait for the other's delayed ACK.

Each is worth proposing upstream (the PDU length check in
`DULServiceProvider._read_pdu_data`, a per-PDU deadline, a data set size limit): the code
says where.
"""

from __future__ import annotations

import copy
import logging
import queue
import select
import socket
import socketserver
import struct
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import suppress
from io import BytesIO
from typing import Any

from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationServer, RequestHandler

from app.contract.errors import FileTooLargeError
from app.dicom.doorman import MAX_REQUEST_BYTES, PDU_HEADER, Doorman, Limits
from app.errors import ServerBusyError
from app.memory import BodyBudget, Held, give_back_memory

log = logging.getLogger("app.dicom")

_P_DATA_TF = 0x04
# Linux's TCP_QUICKACK (not sticky: the kernel may go back to delayed ACKs, so it is set
# again after each read); None where there is none.
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class PduGuard:
    """An accepted association's socket as pynetdicom's AssociationSocket wraps it, with the
    limits that pynetdicom's PDU reader lacks (DULServiceProvider._read_pdu_data reads the
    6-byte header, then blocks, with no timeout, until the whole length it declares is in
    memory): a PDU longer than the limit (P-DATA-TF: the maximum length we advertised; any
    other: MAX_REQUEST_BYTES) is refused on its header, unread; and a PDU must be whole
    within `seconds` of its first byte, so a sender trickling bytes is cut off. Either sends
    an A-ABORT and then reads as a closed connection, which pynetdicom ends as an abort.

    Once a data set is refused (`read_past`), the rest of its fragments are read here, a
    whole PDU at a time into one buffer, and pynetdicom gets each P-DATA-TF with those
    fragments emptied (their message control headers kept, so the message still ends where
    it ends and is answered): 300 MiB read past cost the interpreter a few hundred large
    reads instead of 77,000 small ones, decoded and copied.

    It follows the PDU framing in the bytes it passes on, so it needs nothing from
    pynetdicom but that it reads through `recv`. Upstream, the checks belong in
    `_read_pdu_data`: the length against `assoc.acceptor.maximum_length`, and a deadline
    on the `recv` of the body."""

    def __init__(self, sock: socket.socket, host: str, max_pdu_bytes: int,
                 seconds: float) -> None:
        self._sock = sock
        self._host = host
        self._max_pdu = max_pdu_bytes
        self._seconds = seconds
        self._header = b""
        self._left = 0  # body bytes of the current PDU still to come
        self._deadline: float | None = None
        self._skipping: ReceivedDataSet | None = None  # a refused data set, read past
        self._ready = b""  # a PDU read whole here, for pynetdicom to take
        self._buffer: bytearray | None = None
        self.cut: str | None = None

    def __getattr__(self, name: str) -> Any:  # fileno, shutdown, close: the socket's own
        return getattr(self._sock, name)

    def read_past(self, data_set: ReceivedDataSet) -> None:
        """The rest of `data_set`'s fragments are read past (its `size` still counts them)."""
        self._skipping = data_set

    def recv(self, size: int) -> bytes:
        if self.cut is None and not self._ready and self._skipping is not None \
                and not self._header:  # between two PDUs
            self._ready = self._whole_pdu()
        if self.cut is not None:
            return b""
        if self._ready:
            data, self._ready = self._ready[:size], self._ready[size:]
            return data
        if not self._timed():
            return b""
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            return self._too_slow()
        if _QUICKACK is not None:  # an ACK now: a sender's next small PDU need not wait
            with suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return self._follow(data)

    def send(self, data: bytes, *flags: int) -> int:
        self._sock.settimeout(self._seconds)  # a peer that does not read is cut off too
        return self._sock.send(data, *flags)

    def _timed(self) -> bool:
        """The socket's timeout set to what is left of the PDU's deadline, which starts with
        its first read (pynetdicom reads once the socket is readable); False (and cut off)
        when nothing is left."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._seconds
        if now >= self._deadline:
            self._too_slow()
            return False
        self._sock.settimeout(self._deadline - now)
        return True

    def _too_slow(self) -> bytes:
        return self._cut(f"a PDU not whole within {self._seconds:g} s", 0)

    def _over(self, kind: int, length: int) -> bool:
        limit = self._max_pdu if kind == _P_DATA_TF else MAX_REQUEST_BYTES
        if length > limit:
            # 6: invalid PDU parameter value (PS3.8 Table 9-26)
            self._cut(f"a PDU of {length} bytes, over the {limit}-byte maximum", 6)
        return length > limit

    def _follow(self, data: bytes) -> bytes:
        pos = 0
        while pos < len(data):
            if len(self._header) < PDU_HEADER:
                n = min(PDU_HEADER - len(self._header), len(data) - pos)
                self._header += data[pos:pos + n]
                pos += n
                if len(self._header) < PDU_HEADER:
                    break
                kind, _, self._left = struct.unpack(">BBL", self._header)
                if self._over(kind, self._left):
                    return b""
            else:
                n = min(self._left, len(data) - pos)
                pos += n
                self._left -= n
            if len(self._header) == PDU_HEADER and self._left == 0:  # this PDU is whole
                self._header, self._deadline = b"", None
        return data

    def _whole_pdu(self) -> bytes:
        """The next PDU, read whole (a P-DATA-TF with the refused data set's fragments
        emptied); b"" when it was cut off or the peer closed."""
        header = self._read(PDU_HEADER)
        if header is None:
            return b""
        kind, _, length = struct.unpack(">BBL", header)
        if self._over(kind, length):
            return b""
        body = self._read(length)
        if body is None:
            return b""
        self._deadline = None
        if kind == _P_DATA_TF:
            body = self._emptied(body)
        return struct.pack(">BBL", kind, 0, len(body)) + body

    def _read(self, n: int) -> memoryview | None:
        """`n` bytes, in as few reads as the kernel allows: with SO_RCVLOWAT at what is
        still missing, the wait for the socket (poll, outside the interpreter's lock) ends
        only once it is all in, so a PDU read past costs a wake-up or two, not one per
        64 KiB (each a turn of the lock that the scoring threads wait for)."""
        if self._buffer is None or len(self._buffer) < n:
            self._buffer = bytearray(max(n, PDU_HEADER))
        view, got = memoryview(self._buffer)[:n], 0
        try:
            while got < n:
                if not self._timed():
                    return None
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n - got)
                k = self._sock.recv_into(view[got:])
                if k == 0:
                    self.cut = "closed by the peer"
                    return None
                got += k
        except TimeoutError:
            self._too_slow()
            return None
        except OSError:
            self.cut = "closed by the peer"
            return None
        finally:
            with suppress(OSError):  # pynetdicom's select needs a single byte to wake
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        return view

    def _emptied(self, body: memoryview) -> bytes:
        """A P-DATA-TF's items (PS3.8 9.3.5.1: length, context, control header, fragment)
        with the refused data set's fragments left empty; as it came if malformed
        (pynetdicom then refuses it)."""
        items, pos = [], 0
        while pos < len(body):
            if pos + 6 > len(body):
                return bytes(body)
            (length,) = struct.unpack_from(">L", body, pos)
            if length < 2 or pos + 4 + length > len(body):
                return bytes(body)
            context, control = body[pos + 4], body[pos + 5]
            if self._skipping is not None and not control & 1:  # a data set fragment
                items.append(struct.pack(">LBB", 2, context, control))
                self._skipping.size += length - 2
                if control & 2:  # its last: the data set has been read past
                    self._skipping = None
            else:
                items.append(bytes(body[pos:pos + 4 + length]))
            pos += 4 + length
        return b"".join(items)

    def _cut(self, why: str, reason: int) -> bytes:
        log.warning("DICOM association from %s aborted: %s", self._host, why)
        self.cut = why
        abort = A_ABORT_RQ()
        abort.source, abort.reason_diagnostic = 2, reason  # 2: the service provider
        try:
            self._sock.settimeout(1.0)
            self._sock.send(abort.encode())
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return b""


class ReceivedDataSet(BytesIO):
    """A C-STORE's data set as it arrives (pynetdicom writes each fragment here): its bytes
    counted in the memory budget, or, once past `max_bytes` (FileTooLargeError: final) or
    with the budget full (ServerBusyError: retry), none of them kept and `refusal` saying
    why; the rest is read past. The budget is given back by `release()` (once answered), or
    when the buffer is let go."""

    def __init__(self, max_bytes: int, budget: BodyBudget | None) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.size = 0
        self.refusal: FileTooLargeError | ServerBusyError | None = None
        self._held = Held(budget)
        weakref.finalize(self, _give_all, self._held)

    def write(self, data: Any) -> int:
        n = len(data)
        self.size += n
        if self.refusal is None:
            try:
                if self.size > self.max_bytes:
                    raise FileTooLargeError(self.max_bytes)
                self._held.take(n)
            except (FileTooLargeError, ServerBusyError) as exc:
                self.refusal = exc
                self.release()
                give_back_memory()  # what holding it grew (glibc keeps freed heap)
        if self.refusal is not None:
            return n
        return super().write(data)

    def release(self) -> None:
        """Its bytes dropped and given back to the budget."""
        self.seek(0)
        self.truncate()
        _give_all(self._held)


def _give_all(held: Held) -> None:
    held.give(held.taken)


class BoundedDimse(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, receiving each message's data set into a
    ReceivedDataSet instead of an unbounded BytesIO (upstream: a data set size limit, or a
    factory for the message's buffer)."""

    def __init__(self, assoc: Association, max_bytes: int,
                 budget: BodyBudget | None) -> None:
        super().__init__(assoc)
        self._max_bytes = max_bytes
        self._budget = budget

    def get_msg(self, block: bool = False) -> Any:
        """As pynetdicom's; asked without blocking (only the association's reactor does,
        every millisecond, between its other checks), it waits up to _REACTOR_WAIT for a
        message: the reactor then loops some 50 times a second while the association is
        quiet, and still takes a message the moment it is whole (a release or an abort
        is seen within _REACTOR_WAIT)."""
        if block:
            return super().get_msg(block=True)
        try:
            return self.msg_queue.get(timeout=_REACTOR_WAIT)
        except queue.Empty:
            return None, None

    def receive_primitive(self, primitive: P_DATA) -> None:
        if self.message is None:
            self.message = DIMSEMessage()
            self.message.data_set = ReceivedDataSet(self._max_bytes, self._budget)
        super().receive_primitive(primitive)
        message, guard = self.message, getattr(self.assoc.dul.socket, "socket", None)
        if message is not None and isinstance(guard, PduGuard):  # a message still arriving
            data_set = message.data_set
            if isinstance(data_set, ReceivedDataSet) and data_set.refusal is not None:
                guard.read_past(data_set)

    def release(self) -> None:
        """The message being received, if any, let go (its association has ended)."""
        message, self.message = self.message, None
        if message is not None and isinstance(message.data_set, ReceivedDataSet):
            message.data_set.release()


# The longest a quiet association's DUL reactor waits before looking at its timers and its
# kill flag again (its socket and a PDU to send wake it at once), and its association's
# reactor for a message before looking for a release or an abort.
_IDLE_WAIT = 0.05
_REACTOR_WAIT = 0.02


class QuietDul(DULServiceProvider):
    """pynetdicom's DUL reactor, which loops every `_run_loop_delay` (1 ms) checking its
    socket and its queue of PDUs to send, waiting instead in `_is_transport_event` until
    the socket is readable or `send_pdu` signals a PDU to send (at most _IDLE_WAIT): an
    open association cost 3.5-5% of a core doing nothing, 8 of them a third of a core
    while the node scored. Upstream, the reactor itself would select on the socket and a
    wake-up pipe (dul.py: "TODO: try and make this event based")."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self._run_loop_delay = 0.0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._signal()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._signal()

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            self._wake_r.close()
            self._wake_w.close()

    def _signal(self) -> None:
        with suppress(OSError):
            self._wake_w.send(b"\0")

    def _is_transport_event(self) -> bool:
        if super()._is_transport_event():
            return True
        if self._kill_thread or not self.event_queue.empty() \
                or not self.to_provider_queue.empty():
            return False
        conn = getattr(self.socket, "socket", None)
        watched = [self._wake_r] + ([conn] if conn is not None else [])
        with suppress(OSError, ValueError):  # a socket closed meanwhile: pynetdicom's turn
            select.select(watched, [], [], _IDLE_WAIT)
        with suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        return False


class _Handler(RequestHandler):
    """pynetdicom's request handler, on the PduGuard, with the BoundedDimse and the
    QuietDul, its connection without Nagle's delay."""

    server: GuardedServer

    def setup(self) -> None:
        limits = self.server.limits
        with suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = PduGuard(self.request, str(self.client_address[0]),
                                limits.max_pdu_bytes, limits.pdu_seconds)

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        server = self.server
        made, quiet = assoc.dul, QuietDul(assoc)
        # The socket, and the connection's event it queued (Evt5), to the DUL that runs.
        quiet.socket, quiet.event_queue = made.socket, made.event_queue
        assoc.dul = quiet
        # The timers the association set on the DUL it made, set on this one.
        assoc.acse_timeout, assoc.network_timeout = assoc.acse_timeout, assoc.network_timeout
        assoc.dimse = BoundedDimse(assoc, server.data_set_limit, server.budget)
        self.assoc = assoc
        return assoc


class SupportedContexts(list):
    """The server's supported presentation contexts, which pynetdicom deep-copies for every
    association it accepts (RequestHandler._create_association), so that negotiation never
    changes the server's own: copied here context by context, the UIDs (immutable) shared.
    `copy.deepcopy` of the 171 contexts and 9,084 transfer syntaxes the node offers built and
    validated every UID again: 57 ms of CPU an association (upstream: copy the contexts as
    here, or negotiate against them without changing them)."""

    def __deepcopy__(self, memo: dict) -> list[PresentationContext]:
        copies = []
        for context in self:
            twin = copy.copy(context)
            twin._transfer_syntax = list(context._transfer_syntax)
            copies.append(twin)
        return copies


class GuardedServer(AssociationServer):
    """pynetdicom's AssociationServer (made by `AE.make_server(..., server_class=...)`)
    whose accept loop hands each connection to the Doorman instead of a thread."""

    # socketserver's 5: a connection flood filled the queue, and the PACS's connect then
    # waited for a SYN retry (1 s, then 3 s).
    request_queue_size = 128

    def __init__(self, *args: Any, limits: Limits, budget: BodyBudget | None = None,
                 on_rejected: Callable[[], None] = lambda: None, **kwargs: Any) -> None:
        self.limits = limits
        self.budget = budget
        # A data set larger than the whole budget could never be taken: final, not retry.
        self.data_set_limit = min(limits.max_data_set_bytes,
                                  budget.limit if budget else limits.max_data_set_bytes)
        super().__init__(*args, request_handler=_Handler, **kwargs)
        self.contexts = SupportedContexts(self.contexts)
        self.doorman = Doorman(limits, self._hand_over, on_rejected, _released)

    def serve(self) -> GuardedServer:
        """Accept (in a thread of its own) and hand over (the doorman's)."""
        self.doorman.start()
        threading.Thread(target=self.serve_forever, name="dicom-accept", daemon=True).start()
        return self

    def process_request(self, request: Any, client_address: Any) -> None:
        self.doorman.arrive(request, client_address)

    def service_actions(self) -> None:
        pass  # the garbage collection it did per 60 accept loops: Doorman._accept

    def _hand_over(self, sock: socket.socket, address: Any) -> Association:
        return _Handler(sock, address, self).assoc

    def shutdown(self) -> None:
        """Stop accepting and close the port and the waiting connections (AE.make_server
        does not list the server in its AE, whose shutdown the parent class's updates)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()
        self.doorman.stop()


def _released(assoc: Association) -> None:
    """An ended association's data set still arriving, if any, let go."""
    if isinstance(assoc.dimse, BoundedDimse):
        assoc.dimse.release()
