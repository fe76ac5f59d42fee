"""Connections before their association request (app/dicom/doorman.py), on the real
Storage SCP over loopback: raw sockets (tests/dicom/raw.py) for what an attacker sends,
pynetdicom as the PACS. Attackers connect from other loopback addresses (127.0.0.2 and up):
these tests are about who is calling. Every test here failed on the node before it had
these bounds (pynetdicom's ThreadedAssociationServer as AE.start_server makes it: a thread
and an association slot per connection, the allow-list checked after the slot count)."""

from __future__ import annotations

import threading
import time

from tests.builders.dicom import study_film
from tests.builders.images import xray_like
from tests.dicom import raw
from tests.dicom.nodes import PACS_AE, running_node, scoring_ingest, store
from tests.servers import poll

ATTACKER = "127.0.0.2"


def _film(seed: int = 0):
    return study_film(xray_like(96, 96, seed=seed))


def test_silent_sockets_take_no_thread_no_slot_and_are_closed_at_the_request_deadline():
    """8 sockets that never send, with 2 association slots and the allow-list set. Before:
    each took a slot and two threads at once, and the PACS was rejected."""
    ingest, _ = scoring_ingest()
    with running_node(ingest, allowed_aes=(PACS_AE,), max_associations=2,
                      request_seconds=3) as node:
        threads = threading.active_count()
        silent = [raw.connect(node.port, source) for source in (ATTACKER, "127.0.0.1") * 4]
        [status] = store(node.port, [_film()])
        added = threading.active_count() - threads
        started = time.monotonic()
        closed = [raw.closed_within(sock, 6) for sock in silent]
        took = time.monotonic() - started
    assert status.Status == 0x0000
    assert added < len(silent), f"{added} threads for {len(silent)} silent sockets"
    assert all(closed) and took < 5

def test_a_trickled_association_request_is_cut_off_and_holds_no_slot():
    """A request sent a byte every 0.2 s, even under an allowed calling AE title, against
    one association slot. Before: it held the slot, the PACS was rejected."""
    ingest, _ = scoring_ingest()
    stop = threading.Event()
    with running_node(ingest, allowed_aes=(PACS_AE,), max_associations=1,
                      request_seconds=1) as node:
        sock = raw.connect(node.port, ATTACKER)
        trickler = raw.trickle(sock, raw.association_request(PACS_AE), 0.2, stop)
        [status] = store(node.port, [_film()])
        closed = raw.closed_within(sock, 4)
        stop.set()
        trickler.join()
    assert status.Status == 0x0000
    assert closed

def test_a_flood_of_callers_not_on_the_allow_list_does_not_block_the_pacs():
    """Four threads opening associations as an unknown caller as fast as they are refused,
    from two addresses, while the PACS stores 5 films, each in its first association.
    Before: the flood held the slots, and the PACS was rejected."""
    ingest, recorder = scoring_ingest()
    stop = threading.Event()
    refused = [0]

    def flood(port: int, source: str) -> None:
        request = raw.association_request("INTRUDER")
        while not stop.is_set():
            try:
                with raw.connect(port, source, timeout=5) as sock:
                    sock.sendall(request)
                    answer = raw.read_pdu(sock)
                if answer is not None and answer[0] == raw.ASSOCIATE_RJ:
                    refused[0] += 1
            except OSError:
                pass

    films = [_film(seed) for seed in range(5)]
    with running_node(ingest, allowed_aes=(PACS_AE,), max_associations=2) as node:
        flooders = [threading.Thread(target=flood, args=(node.port, source), daemon=True)
                    for source in (ATTACKER, "127.0.0.3") * 2]
        for thread in flooders:
            thread.start()
        poll(lambda: refused[0] >= 50, 20, "the flood to be refused 50 times")
        statuses = [store(node.port, [film])[0] for film in films]
        stop.set()
        for thread in flooders:
            thread.join(timeout=10)
    assert [s.Status for s in statuses] == [0x0000] * 5
    assert len(recorder.committed) == 5

def test_past_the_per_address_cap_the_oldest_waiting_connection_of_that_address_goes():
    """Before: every connection stayed until its request timed out (30 s)."""
    ingest, _ = scoring_ingest()
    with running_node(ingest, max_connections_per_address=3, request_seconds=30) as node:
        first = [raw.connect(node.port, ATTACKER) for _ in range(3)]
        later = [raw.connect(node.port, ATTACKER) for _ in range(3)]
        pushed_out = [raw.closed_within(sock, 3) for sock in first]
        kept = [not raw.closed_within(sock, 0.2) for sock in later]
        [status] = store(node.port, [_film()])
    assert all(pushed_out) and all(kept)
    assert status.Status == 0x0000

def test_an_address_at_its_cap_in_associations_is_refused_while_others_are_served():
    """Two accepted associations from one address with a cap of 2: its third connection is
    closed at once, and the PACS, at another address, stores. Before: no per-address cap."""
    ingest, _ = scoring_ingest()
    with running_node(ingest, max_connections_per_address=2) as node:
        held = [raw.associate(node.port, PACS_AE, ATTACKER) for _ in range(2)]
        third = raw.connect(node.port, ATTACKER)
        refused = raw.closed_within(third, 2)
        [status] = store(node.port, [_film()])
        for sock in held:
            raw.release(sock)
    assert refused
    assert status.Status == 0x0000

def test_past_the_total_cap_the_oldest_waiting_connection_goes_first():
    """Four silent sockets from four addresses fill a cap of 4; the PACS still gets in, and
    the oldest silent one is closed for it. Before: no cap, and no thread to spare."""
    ingest, _ = scoring_ingest()
    with running_node(ingest, max_connections=4, request_seconds=30) as node:
        silent = [raw.connect(node.port, f"127.0.0.{k}") for k in range(2, 6)]
        [status] = store(node.port, [_film()])
        oldest_closed = raw.closed_within(silent[0], 3)
        others_open = [not raw.closed_within(sock, 0.2) for sock in silent[2:]]
    assert status.Status == 0x0000
    assert oldest_closed and all(others_open)
