"""The DICOM node's attack rows for benchmarks/attacks.py (issue 27): what one client tried
against the node, beside an allowed PACS that keeps storing films and waits for its results.

- **silent sockets**: 8 TCP connections that never send a byte, each reopened 1 s after the
  node closes it;
- **trickling associations**: 8 connections sending an A-ASSOCIATE-RQ (under the allowed
  calling AE title: a title is no password) one byte every 10 s, reopened when cut off;
- **a flood from a caller not on the allow-list**: 4 threads opening associations as
  `INTRUDER` as fast as they are answered;
- **300 MiB data sets**: 3 associations under the allowed title, each streaming a data set
  with a 300 MiB private element (the sender holds none of it), again and again: as fast as
  loopback carries them (about 200 MB/s here, where the sender's copies share the cores),
  and at 125 MB/s between them, what one client on a gigabit link can send.

Each attack comes from its own loopback address (127.0.0.2 to .5), the PACS from
127.0.0.1. The PACS (`PacsLoop`) sends one film a second, each in its own association, and
retries a refused association or an Out of Resources answer every 0.5 s as a PACS would;
its results (SR and secondary capture) come back to `ResultsPacs`, a storage SCP in this
process that counts the SRs by study. Raw PDUs are written by tests/dicom/raw.py, which the
node's tests use too. Loopback only, every loop bounded by `stop()`.
"""

from __future__ import annotations

import copy
import errno
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.dsutils import encode

from tests.builders.dicom import study_film
from tests.dicom import raw

PACS_AE = "PACS"
INTRUDER_AE = "INTRUDER"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
MIB = 1 << 20


class Threads:
    """Attack threads until `stop()`; `done` counts what they did, `statuses` by kind."""

    def __init__(self) -> None:
        self.running = True
        self.done = 0
        self.statuses: dict[object, int] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def spawn(self, target: Callable[[], None], count: int = 1) -> Threads:
        for _ in range(count):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def count(self, kind: object) -> None:
        with self._lock:
            self.done += 1
            self.statuses[kind] = self.statuses.get(kind, 0) + 1

    def stop(self) -> None:
        self.running = False
        for thread in self._threads:
            thread.join(timeout=60)


def closed(sock: socket.socket) -> bool:
    """Whether the server closed `sock` (a peek that neither blocks nor takes a byte)."""
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError as exc:
        return exc.errno != errno.EAGAIN


def _open(port: int, source: str) -> socket.socket | None:
    try:
        return raw.connect(port, source, timeout=5)
    except OSError:
        return None


def held_sockets(port: int, count: int, source: str, every: float = 0.0,
                 data: bytes = b"") -> Threads:
    """`count` connections from `source`, each sending the next byte of `data` every
    `every` s (none: silent) and reopened 1 s after the node closes it (done: closed by the
    node)."""
    attack = Threads()

    def hold() -> None:
        socks: list[socket.socket | None] = [None] * count
        sent, closed_at, last = [0] * count, [0.0] * count, 0.0
        while attack.running:
            now = time.monotonic()
            send = every > 0 and now - last >= every
            last = now if send else last
            for k, sock in enumerate(socks):
                if sock is not None and closed(sock):
                    sock.close()
                    sock, closed_at[k] = None, now
                    attack.count("closed by the node")
                if sock is None and now - closed_at[k] >= 1.0:
                    sock, sent[k] = _open(port, source), 0
                if sock is not None and send and sent[k] < len(data):
                    try:
                        sock.send(data[sent[k]:sent[k] + 1])
                        sent[k] += 1
                    except OSError:
                        sock.close()
                        sock = None
                socks[k] = sock
            time.sleep(0.1)
        for sock in socks:
            if sock is not None:
                sock.close()

    return attack.spawn(hold)


def silent_sockets(port: int, count: int = 8, source: str = "127.0.0.2") -> Threads:
    return held_sockets(port, count, source)


def trickling_associations(port: int, count: int = 8, every: float = 10.0,
                           source: str = "127.0.0.3") -> Threads:
    return held_sockets(port, count, source, every, raw.association_request(PACS_AE))


def rejected_flood(port: int, threads: int = 4, source: str = "127.0.0.4") -> Threads:
    """Associations as a caller not on the allow-list, back to back (done: answered)."""
    attack = Threads()
    request = raw.association_request(INTRUDER_AE)

    def flood() -> None:
        while attack.running:
            sock = _open(port, source)
            if sock is None:
                attack.count("connect failed")
                continue
            with sock:
                try:
                    sock.sendall(request)
                    answer = raw.read_pdu(sock)
                except OSError:
                    answer = None
            attack.count({raw.ASSOCIATE_RJ: "rejected", raw.ASSOCIATE_AC: "accepted"}.get(
                answer[0], "other") if answer else "closed")

    return attack.spawn(flood, threads)


def big_data_sets(port: int, count: int = 3, size: int = 300 * MIB, rate: float = 0.0,
                  source: str = "127.0.0.5") -> Threads:
    """`count` associations under the allowed title, each storing a data set of `size`
    bytes (a private element) again and again, at `rate` bytes/s between them (0: as fast
    as the node reads) (done: answered, by status)."""
    attack = Threads()
    film = study_film(np.zeros((64, 64), dtype=np.uint8))
    header = encode(film, False, True)

    def paced() -> Iterator[bytes]:
        for chunk in raw.with_private_element(header, size):
            if rate:
                time.sleep(len(chunk) * count / rate)
            yield chunk

    def store() -> None:
        while attack.running:
            try:
                sock = raw.associate(port, PACS_AE, source)
            except (OSError, AssertionError):
                attack.count("refused")
                time.sleep(0.5)
                continue
            try:
                raw.send_store(sock, generate_uid(), paced())
                answer = raw.store_response(sock)
                attack.count(f"0x{answer.Status:04X}" if answer is not None else "aborted")
            except OSError:
                attack.count("cut off")
            finally:
                sock.close()

    return attack.spawn(store, count)


class ResultsPacs:
    """The results' destination: a storage SCP that counts the SRs it is sent, by study."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.studies: set[str] = set()
        self._lock = threading.Lock()
        ae = AE(ae_title=PACS_AE)
        ae.supported_contexts = StoragePresentationContexts
        self._server = ae.start_server(("127.0.0.1", port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store)])

    def _on_store(self, event) -> int:
        ds = event.dataset
        if str(ds.SOPClassUID) == COMPREHENSIVE_SR:
            with self._lock:
                self.studies.add(str(ds.StudyInstanceUID))
        return 0x0000

    def has(self, study_uid: str) -> bool:
        with self._lock:
            return study_uid in self.studies

    def stop(self) -> None:
        self._server.shutdown()


def pacs_films(data_dir: Path, count: int = 10) -> list[pydicom.Dataset]:
    """CR films (8-bit, uncompressed) of `count` test-split images."""
    paths = sorted((data_dir / "chest_xray" / "test").glob("*/*.jpeg"))[::29][:count]
    return [study_film(np.asarray(Image.open(p).convert("L"))) for p in paths]


class PacsLoop:
    """The allowed PACS: one film every `interval` s, each a new study in its own
    association, retried every 0.5 s (for at most 30 s) while refused or answered Out of
    Resources. `stored` holds the study UIDs answered Success, `retries` counts the
    retries, `lost` the films given up on or answered a final failure."""

    def __init__(self, port: int, films: list[pydicom.Dataset], interval: float = 1.0) -> None:
        self.port, self.films, self.interval = port, films, interval
        self.stored: list[str] = []
        self.retries = self.lost = 0
        self.running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        k = 0
        next_at = time.monotonic()
        while self.running:
            ds = copy.deepcopy(self.films[k % len(self.films)])
            k += 1
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            status = self._send(ds)
            if status == 0x0000:
                self.stored.append(str(ds.StudyInstanceUID))
            else:
                self.lost += 1
            next_at += self.interval
            time.sleep(max(next_at - time.monotonic(), 0))

    def _send(self, ds: pydicom.Dataset) -> int | None:
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            ae = AE(ae_title=PACS_AE)
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", self.port, ae_title="TRIAGE")
            status = None
            if assoc.is_established:
                answer = assoc.send_c_store(ds)
                status = int(getattr(answer, "Status", -1))
                if assoc.is_established:
                    assoc.release()
            if status is not None and status != 0xA700:
                return status
            self.retries += 1
            time.sleep(0.5)
        return None

    def stop(self, results: ResultsPacs, wait: float = 60.0) -> dict:
        """Stops sending; waits up to `wait` s for the stored films' SRs; the figures."""
        self.running = False
        self._thread.join(timeout=60)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not all(map(results.has, self.stored)):
            time.sleep(0.2)
        return {"stored": len(self.stored), "lost": self.lost, "retries": self.retries,
                "results": sum(map(results.has, self.stored))}


class Together:
    """Several attacks as one row."""

    def __init__(self, *attacks: Threads) -> None:
        self._attacks = attacks

    @property
    def done(self) -> int:
        return sum(attack.done for attack in self._attacks)

    @property
    def statuses(self) -> dict[object, int]:
        merged: dict[object, int] = {}
        for attack in self._attacks:
            for kind, n in attack.statuses.items():
                merged[kind] = merged.get(kind, 0) + n
        return merged

    def stop(self) -> None:
        for attack in self._attacks:
            attack.running = False
        for attack in self._attacks:
            attack.stop()
