"""Connections to the DICOM node before their association request is in, and the caps on
them: the first half of the node's bounded transport (app/dicom/transport.py has the rest).

pynetdicom 3.0's AssociationServer (transport.py) starts a thread for every TCP connection,
and the association counts itself among the slots (acse.py) before it has read who is
calling: 8 silent sockets held every slot for the ACSE timeout, with or without the AE
allow-list, and a flood of callers not on the list blocked the allowed PACS. Here a
connection waits in one selector thread (`Doorman`), not a thread of its own, until its
whole A-ASSOCIATE-RQ is in; at most `max_connections` in total and `per_address` from one
address (past either, the oldest still waiting is closed, or the new one if none waits);
each must send its request within `request_seconds`. The calling AE title is checked against
the allow-list here, and the association slots (`max_associations`) are counted here, over
accepted associations only: a caller that is not allowed, and one past the slots (rejected
as transient, so it retries), is answered A-ASSOCIATE-RJ without a thread or a slot.

Worth proposing upstream: a per-address connection cap and a request deadline before the
association's thread, and the calling AE title checked before the slot is counted.
"""

from __future__ import annotations

import gc
import logging
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_RJ

log = logging.getLogger("app.dicom")

PDU_HEADER = 6  # PDU type, reserved, length (PS3.8 9.3.1)
_ASSOCIATE_RQ = 0x01
# An A-ASSOCIATE-RQ, and any PDU but P-DATA-TF, is small: 128 presentation contexts with
# four transfer syntaxes each are 16 KB.
MAX_REQUEST_BYTES = 64 * 1024
_MIN_REQUEST_BYTES = 68  # its fixed fields (PS3.8 Table 9-11)
_CALLING_AE = slice(26, 42)  # in the PDU, header included
_TICK = 0.5  # seconds: how often the doorman notices associations that ended


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    per_address: int = 16
    max_associations: int = 8
    request_seconds: float = 10.0
    pdu_seconds: float = 20.0
    max_pdu_bytes: int = 1024 * 1024
    max_data_set_bytes: int = 20 * 1024 * 1024
    allowed_aes: tuple[str, ...] = ()  # empty: any caller


def _rejection(result: int, source: int, reason: int) -> bytes:
    pdu = A_ASSOCIATE_RJ()
    pdu.result, pdu.source, pdu.reason_diagnostic = result, source, reason
    return pdu.encode()


# PS3.8 Table 9-21: rejected-permanent by the service user, calling AE title not recognised
# (what pynetdicom answers too); rejected-transient by the service provider (presentation),
# local limit exceeded: the sender tries again.
_NOT_ALLOWED = _rejection(1, 1, 3)
_BUSY = _rejection(2, 3, 2)


class _Quiet:
    """A line that a flood would repeat thousands of times a second: the first, then at most
    one a second with the count of those left out."""

    def __init__(self) -> None:
        self._next = 0.0
        self._left_out = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._left_out += 1
            return
        if self._left_out:
            message, args = message + " (and %d others in the last second)", \
                (*args, self._left_out)
        self._next, self._left_out = now + 1.0, 0
        log.warning(message, *args)


@dataclass(eq=False)
class _Waiting:
    """A connection that has not sent its whole A-ASSOCIATE-RQ yet."""

    sock: socket.socket
    host: str
    address: Any
    deadline: float
    need: int = PDU_HEADER  # bytes that must be in before it is looked at again


class Doorman:
    """Connections until their association request is in: one thread and one selector for
    all of them. `arrive` is called by the server's accept loop; an allowed request within
    the slots goes to `hand_over(sock, address) -> Association`, which starts the
    association's own threads. `on_rejected()` is told of each rejection (for /metrics),
    `on_ended(assoc)` of each association once its thread has ended."""

    def __init__(self, limits: Limits, hand_over: Callable[[socket.socket, Any], Association],
                 on_rejected: Callable[[], None] = lambda: None,
                 on_ended: Callable[[Association], None] = lambda assoc: None) -> None:
        self.limits = limits
        self._hand_over = hand_over
        self._on_rejected = on_rejected
        self._on_ended = on_ended
        self._selector = selectors.DefaultSelector()
        self._wake, self._waker = socket.socketpair()
        self._wake.setblocking(False)
        self._waker.setblocking(False)
        self._selector.register(self._wake, selectors.EVENT_READ)
        self._arrivals: deque[tuple[socket.socket, Any]] = deque()
        self._waiting: dict[socket.socket, _Waiting] = {}  # oldest first
        self._associations: list[tuple[str, Association]] = []
        self._handed = 0
        self._quiet = _Quiet()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dicom-doorman", daemon=True)

    def start(self) -> Doorman:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._wake_up()
        self._thread.join(timeout=10)

    def arrive(self, sock: socket.socket, address: Any) -> None:
        """A new connection (from the accept loop's thread)."""
        self._arrivals.append((sock, address))
        self._wake_up()

    def _wake_up(self) -> None:
        with suppress(OSError):  # full: it is awake already; closed: stopping
            self._waker.send(b"\0")

    def _run(self) -> None:
        try:
            while not self._stopping:
                timeout = _TICK
                if self._waiting:
                    first = next(iter(self._waiting.values()))
                    timeout = min(timeout, max(first.deadline - time.monotonic(), 0.0))
                for key, _ in self._selector.select(timeout):
                    if key.data is None:
                        self._take_arrivals()
                    elif key.fileobj in self._waiting:
                        self._examine(key.data)
                self._expire(time.monotonic())
                self._ended()
        finally:
            for waiting in list(self._waiting.values()):
                self._drop(waiting)
            self._selector.close()
            self._wake.close()
            self._waker.close()

    def _take_arrivals(self) -> None:
        try:
            while self._wake.recv(4096):
                pass
        except OSError:
            pass
        self._ended()
        while self._arrivals:
            self._admit(*self._arrivals.popleft())

    def _admit(self, sock: socket.socket, address: Any) -> None:
        """Within the caps, by closing the oldest connection still waiting for its request
        in the same scope (the address, or all), or else the new one: sockets that never
        ask for an association are pushed out by those that do, while established
        associations keep theirs."""
        host = str(address[0])
        limits = self.limits
        if self._count(host) >= limits.per_address and \
                not self._evict(lambda w: w.host == host):
            return self._refuse(sock, host, f"{limits.per_address} connections from it")
        if len(self._waiting) + len(self._associations) >= limits.max_connections and \
                not self._evict(lambda w: True):
            return self._refuse(sock, host, f"{limits.max_connections} connections in all")
        waiting = _Waiting(sock, host, address, time.monotonic() + limits.request_seconds)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, waiting.need)
        self._waiting[sock] = waiting
        self._selector.register(sock, selectors.EVENT_READ, waiting)
        return None

    def _count(self, host: str) -> int:
        return sum(w.host == host for w in self._waiting.values()) + \
            sum(h == host for h, _ in self._associations)

    def _evict(self, match: Callable[[_Waiting], bool]) -> bool:
        for waiting in self._waiting.values():
            if match(waiting):
                self._quiet.warning("DICOM connection from %s closed: a newer one needs its "
                                    "place before it asked for an association", waiting.host)
                self._drop(waiting)
                return True
        return False

    def _refuse(self, sock: socket.socket, host: str, why: str) -> None:
        self._quiet.warning("DICOM connection from %s closed at once: %s, all in use", host,
                            why)
        sock.close()

    def _examine(self, waiting: _Waiting, woken: bool = True) -> None:
        """Its request once whole; until then the kernel holds its bytes (peeked, not
        read): SO_RCVLOWAT makes the selector wake (`woken`) only once `need` bytes are in,
        or the peer has closed, so a request trickling in costs no wake-up per byte, and
        pynetdicom later reads it from the socket as it would have."""
        sock = waiting.sock
        try:
            seen = sock.recv(waiting.need, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            return self._drop(waiting)
        if len(seen) < waiting.need:  # woken with less than the low mark: closed
            return self._drop(waiting) if woken else None
        if waiting.need == PDU_HEADER:
            kind, _, length = struct.unpack(">BBL", seen)
            if kind != _ASSOCIATE_RQ or not _MIN_REQUEST_BYTES <= length <= MAX_REQUEST_BYTES:
                self._quiet.warning("DICOM connection from %s closed: not an association "
                                    "request of at most %d bytes", waiting.host,
                                    MAX_REQUEST_BYTES)
                return self._drop(waiting)
            waiting.need = PDU_HEADER + length
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, waiting.need)
            return self._examine(waiting, woken=False)
        calling = seen[_CALLING_AE].decode("ascii", "replace").strip()
        allowed = self.limits.allowed_aes
        if allowed and calling not in allowed:
            return self._reject(waiting, _NOT_ALLOWED, f"calling AE title {calling!r} is "
                                                       "not on the allow-list")
        self._ended()
        if len(self._associations) >= self.limits.max_associations:
            return self._reject(waiting, _BUSY, f"all {self.limits.max_associations} "
                                                "associations in use (transient)")
        return self._accept(waiting)

    def _reject(self, waiting: _Waiting, answer: bytes, why: str) -> None:
        """Answered A-ASSOCIATE-RJ from here, without a thread. The request is read first,
        so that closing sends a FIN, not the reset that unread bytes cause (and that can
        lose the answer on its way)."""
        self._quiet.warning("DICOM association from %s rejected: %s", waiting.host, why)
        self._on_rejected()
        try:
            waiting.sock.recv(waiting.need, socket.MSG_DONTWAIT)
            waiting.sock.send(answer, socket.MSG_DONTWAIT)
            waiting.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._drop(waiting)

    def _accept(self, waiting: _Waiting) -> None:
        self._forget(waiting)
        sock = waiting.sock
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)  # pynetdicom's select
            assoc = self._hand_over(sock, waiting.address)
        except Exception:  # noqa: BLE001 - one connection's failure is its own
            log.exception("DICOM connection from %s could not be handed over", waiting.host)
            sock.close()
            return
        self._associations.append((waiting.host, assoc))
        # pynetdicom's server collects garbage every 60 passes of its accept loop (its
        # ended associations sit in reference cycles): here every 60 associations, so that
        # a connection flood does not cost a full collection every 60 connects.
        self._handed += 1
        if self._handed % 60 == 0:
            gc.collect()

    def _expire(self, now: float) -> None:
        for waiting in list(self._waiting.values()):
            if waiting.deadline > now:
                break  # oldest first: the rest are younger
            self._quiet.warning("DICOM connection from %s closed: no association request "
                                "within %g s", waiting.host, self.limits.request_seconds)
            self._drop(waiting)

    def _ended(self) -> None:
        """Forget the associations whose thread has ended, each told to `on_ended` (which
        gives back the memory a data set cut off with its association still held)."""
        live = []
        for host, assoc in self._associations:
            if assoc.is_alive():
                live.append((host, assoc))
            else:
                self._on_ended(assoc)
        self._associations = live

    def _forget(self, waiting: _Waiting) -> None:
        self._waiting.pop(waiting.sock, None)
        with suppress(KeyError, ValueError):
            self._selector.unregister(waiting.sock)

    def _drop(self, waiting: _Waiting) -> None:
        self._forget(waiting)
        waiting.sock.close()
