"""The node's bounds on accepted associations (app/dicom/transport.py), on the real Storage
SCP over loopback: raw sockets (tests/dicom/raw.py) for what an attacker sends, pynetdicom
as the PACS. Every test here failed on the node before it had these bounds (pynetdicom's
PDU reader and DIMSE provider as they are: a PDU read whole whatever its length, no
deadline within a PDU, a data set of any size held, several times over)."""

from __future__ import annotations

import struct
import threading
import time

import psutil
from pynetdicom.dsutils import encode

from app.memory import BodyBudget
from tests.builders.dicom import study_film
from tests.builders.images import xray_like
from tests.dicom import raw
from tests.dicom.nodes import PACS_AE, can_associate, running_node, scoring_ingest, store

MIB = 1 << 20


def _film(seed: int = 0, side: int = 96):
    return study_film(xray_like(side, side, seed=seed))


class PeakRss:
    """This process's resident memory, sampled every 10 ms while in the block: `growth`
    is its peak over what it was on entry."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def test_a_pdu_over_the_negotiated_maximum_is_aborted_unread():
    """Before: pynetdicom read the 512 MiB it declared, so the node waited for it."""
    ingest, recorder = scoring_ingest()
    with running_node(ingest, max_pdu_bytes=64 * 1024) as node:
        sock = raw.associate(node.port, PACS_AE)
        sock.sendall(struct.pack(">BBL", raw.P_DATA_TF, 0, 512 * MIB) + bytes(64 * 1024))
        answer = raw.read_pdu(sock)
        assert raw.closed_within(sock, 5)
        assert can_associate(node.port)
    assert answer is not None and answer[0] == raw.ABORT
    assert recorder.committed == []


def test_a_data_set_over_the_byte_limit_is_refused_finally_and_never_held():
    """300 MiB in a private element, against a 20 MiB limit: read past, answered with a final
    failure (C000: a PACS does not send it again), and the process does not grow by it.
    Before: Success, after the node had held it several times over (+1.5 GB)."""
    film = _film()
    ingest, recorder = scoring_ingest()
    budget = BodyBudget(256 * MIB)
    with running_node(ingest, budget=budget, max_data_set_bytes=20 * MIB) as node, \
            PeakRss() as rss:
        sock = raw.associate(node.port, PACS_AE)
        raw.send_store(sock, film.SOPInstanceUID, raw.with_private_element(
            encode(film, False, True), 300 * MIB))
        answer = raw.store_response(sock)
        raw.release(sock)
    assert rss.growth < 64 * MIB, f"grew {rss.growth / MIB:.0f} MiB"
    assert answer is not None
    assert answer.Status == 0xC000 and answer.ErrorComment.startswith("file_too_large")
    assert recorder.committed == [] and budget.held == 0


def test_data_sets_in_flight_count_in_the_memory_budget_and_a_full_one_is_retried():
    """The budget the HTTP bodies share: a data set's bytes are in it until it is answered,
    and with no room one is refused Out of Resources (the PACS sends it again). Before: the
    node's data sets counted nowhere."""
    ingest, recorder = scoring_ingest()
    budget = BodyBudget(2 * MIB)
    held_while_scored = []

    def spy(received, source):
        held_while_scored.append(budget.held)
        return ingest(received, source)

    film, crowded, later = _film(1, 512), _film(2, 512), _film(3, 512)
    with running_node(spy, budget=budget) as node:
        [stored] = store(node.port, [film])
        with budget.reservation() as uploads_in_flight:
            uploads_in_flight.take(budget.limit - 100 * 1024)
            [busy] = store(node.port, [crowded])
        [stored_later] = store(node.port, [later])
    assert stored.Status == 0x0000 and held_while_scored[0] >= len(film.PixelData)
    assert busy.Status == 0xA700 and busy.ErrorComment.startswith("busy")
    assert stored_later.Status == 0x0000
    assert budget.held == 0
    assert [r.facts.sop_instance_uid for r in recorder.committed] == [
        film.SOPInstanceUID, later.SOPInstanceUID]


def test_a_trickling_pdu_is_cut_off_at_its_deadline():
    """An accepted association sending its P-DATA a byte every 0.2 s, with a 1 s deadline
    per PDU. Before: the node waited for it (its idle timeout did not run during a read)."""
    ingest, _ = scoring_ingest()
    stop = threading.Event()
    with running_node(ingest, pdu_seconds=1) as node:
        sock = raw.associate(node.port, PACS_AE)
        started = time.monotonic()
        trickler = raw.trickle(sock, raw.p_data(bytes(200), 0x00), 0.2, stop)
        closed = raw.closed_within(sock, 5)
        took = time.monotonic() - started
        stop.set()
        trickler.join()
        assert can_associate(node.port)
    assert closed and took < 3
