"""DICOM written by hand on a raw socket: what an attacker (or a broken sender) does that a
well-behaved SCU library never would. An association request, PDUs of any declared length,
a C-STORE whose data set is streamed from a generator (so the sender holds none of it), and
the C-STORE response read back. Used by the transport's tests and benchmarks/attacks.py.

PS3.8 9.3 gives the PDU layouts; pynetdicom encodes the association request and the command
set, so only the framing is written here."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from io import BytesIO

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import ComputedRadiographyImageStorage

ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, ABORT = 0x02, 0x03, 0x04, 0x07
CONTEXT_ID = 1
PRIVATE_GROUP = 0x7FE1  # after Pixel Data (7FE0,0010), so the data set stays in tag order


def association_request(calling: str, called: str = "TRIAGE",
                        sop_class: str = ComputedRadiographyImageStorage) -> bytes:
    """An A-ASSOCIATE-RQ proposing `sop_class` in Explicit VR Little Endian as context 1."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title, primitive.called_ae_title = calling, called
    context = build_context(sop_class, [ExplicitVRLittleEndian])
    context.context_id = CONTEXT_ID
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 1 << 20
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.8.498.1"
    primitive.user_information = [length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    """A TCP connection to the node on loopback, from `source` (any 127.x address)."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))


def read_pdu(sock: socket.socket) -> tuple[int, bytes] | None:
    """The next PDU (type, body), or None when the connection closed first."""
    header = _read(sock, 6)
    if header is None:
        return None
    kind, _, length = struct.unpack(">BBL", header)
    body = _read(sock, length)
    return None if body is None else (kind, body)


def _read(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def associate(port: int, calling: str, source: str = "127.0.0.1") -> socket.socket:
    """An accepted association (AssertionError otherwise), its socket ready for P-DATA."""
    sock = connect(port, source)
    sock.sendall(association_request(calling))
    answer = read_pdu(sock)
    assert answer is not None and answer[0] == ASSOCIATE_AC, f"not accepted: {answer}"
    return sock


def p_data(data: bytes, control: int) -> bytes:
    """One P-DATA-TF PDU of one PDV: `control` is its message control header (bit 0:
    command, bit 1: last fragment)."""
    item = struct.pack(">LBB", len(data) + 2, CONTEXT_ID, control) + data
    return struct.pack(">BBL", P_DATA_TF, 0, len(item)) + item


def store_command(sop_instance_uid: str, message_id: int = 1) -> bytes:
    """A C-STORE-RQ command set, encoded, for a CR."""
    request = C_STORE()
    request.MessageID, request.Priority = message_id, 0
    request.AffectedSOPClassUID = ComputedRadiographyImageStorage
    request.AffectedSOPInstanceUID = sop_instance_uid
    request.DataSet = BytesIO(b"\0")  # present: the command says a data set follows
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    return encode(message.command_set, True, True)


FRAGMENT = (1 << 20) - 6  # data set bytes in a P-DATA-TF of 1 MiB (the node's maximum)


def with_private_element(header: bytes, size: int, piece: int = FRAGMENT) -> Iterator[bytes]:
    """`header` (an encoded data set, Explicit VR Little Endian) followed by a private OB
    element of `size` zero bytes, produced `piece` bytes at a time (the same object each
    time): a data set as large as wanted that the sender never holds."""
    creator = b"ATTACK"
    yield header + struct.pack("<HH2sH", PRIVATE_GROUP, 0x0010, b"LO", len(creator)) + \
        creator + struct.pack("<HH2s2xL", PRIVATE_GROUP, 0x1010, b"OB", size)
    zeros = bytes(piece)
    while size > 0:
        yield zeros if size >= piece else zeros[:size]
        size -= piece


def send_store(sock: socket.socket, sop_instance_uid: str, data_set: Iterable[bytes],
               max_pdu: int = 1 << 20) -> None:
    """The C-STORE-RQ, then its data set, each chunk of `data_set` one fragment in a
    P-DATA-TF PDU of at most `max_pdu` bytes (the node's maximum). A chunk that is the same
    object as the one before is sent as the same PDU, built once: the sender's cost is the
    socket's."""
    sock.sendall(p_data(store_command(sop_instance_uid), 0x03))
    previous, pdu = None, b""
    chunks = iter(data_set)
    chunk = next(chunks)
    for following in chunks:
        assert len(chunk) <= max_pdu - 6, "a chunk is one fragment"
        if chunk is not previous:
            previous, pdu = chunk, p_data(chunk, 0x00)
        sock.sendall(pdu)
        chunk = following
    sock.sendall(p_data(chunk, 0x02))


def store_response(sock: socket.socket) -> Dataset | None:
    """The C-STORE-RSP command set (Status, ErrorComment), or None when the node aborted or
    closed instead."""
    command = b""
    while True:
        pdu = read_pdu(sock)
        if pdu is None or pdu[0] != P_DATA_TF:
            return None
        body = pdu[1]
        while body:
            (length,) = struct.unpack(">L", body[:4])
            control, fragment = body[5], body[6:4 + length]
            body = body[4 + length:]
            if control & 1:
                command += fragment
                if control & 2:
                    return decode(BytesIO(command), True, True)


def release(sock: socket.socket) -> None:
    """A-RELEASE-RQ, its answer read, then closed."""
    try:
        sock.sendall(struct.pack(">BBLL", 0x05, 0, 4, 0))
        read_pdu(sock)
    finally:
        sock.close()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the node closes the connection within `seconds`, whatever it sends first (an
    A-ABORT, a rejection) being read and dropped."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def trickle(sock: socket.socket, data: bytes, every: float,
            stop: threading.Event) -> threading.Thread:
    """A thread sending `data` a byte every `every` seconds until done, closed or `stop`."""
    def run() -> None:
        for byte in data:
            if stop.wait(every):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
