"""The DICOM node as a PACS sees it: time to notification (from the C-STORE of a study to its
SR stored in the PACS) at fixed arrival rates, and the node's films/s at saturation beside
`/predict`'s requests/s, in one run.

    python -m benchmarks.dicom_node [--rates 1 2 5] [--seconds 30] [--clients 8]

Run from the repository root. Self-contained, loopback only: it starts Debian's Orthanc
(`/usr/sbin/Orthanc`, configured by tests/dicom/orthanc.py with the node as its one
modality) and the app as a user runs it (`python -m app`, its DICOM node on a free port,
PNEUMONIA_RESULTS_DESTINATION pointing at the Orthanc, its worklist in a temporary folder),
and builds CR films (8-bit, uncompressed, tests/builders/dicom.py) from test-split images.

- Time to notification, open loop: one single-film study per association at a fixed rate
  for `--seconds`; the clock of a study starts at its scheduled send time (a slow node
  does not slow the sender, nor hide its queue) and stops when a poller of Orthanc's change
  log (one REST request every 20 ms) sees that study's SR. A refused association or an Out
  of Resources status is retried after 200 ms, as a PACS would, inside the same clock.
- Saturation: `--clients` associations, each storing studies of 4 films back to back for
  `--seconds`; films/s answered Success, and films/s until the last of their SRs is in
  Orthanc (delivery runs behind the answers).
- The same saturation with the app restarted with PNEUMONIA_RESULTS_SECONDARY_CAPTURE=false
  (an SR only: no heatmap to draw, one object to send), unless `--skip-sr-only`.
- `/predict` at `--clients` keep-alive clients on the same films as the test split's JPEG
  files (benchmarks/load.py's `drive`), plain and with `?explain=true`: the node makes the
  heatmap for its secondary capture, so the second is the same model work per film.

Each phase waits for the previous one's results to be delivered. Orthanc and the load
generator run on the same cores as the app; the load average is printed per phase. The
server's CPU (the app's process and its decode workers, user and system time) is measured
through the saturation phase until its last SR is in Orthanc, per film stored, and through
`/predict`, per request answered: the node's CPU per film beside `/predict`'s.
A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import generate_uid
from pynetdicom import AE

from benchmarks.load import Server, drive, tree_cpu_seconds
from tests.builders.dicom import study_film
from tests.dicom.orthanc import Orthanc, running_orthanc
from tests.servers import DEFAULT_DATA_DIR, REPO, free_port

NODE_AE = "TRIAGE"
CALLING_AE = "MODALITY"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
POLL_SECONDS = 0.02
RETRY_SECONDS = 0.2
DELIVERY_TIMEOUT = 120.0  # after the last send of a phase
SUCCESS, WARNING, OUT_OF_RESOURCES = 0x0000, 0xB000, 0xA700


def films_from(data_dir: Path, count: int) -> tuple[list[pydicom.Dataset], list[bytes]]:
    """`count` test-split films spread over both classes: as CR data sets (grayscale,
    uncompressed), and as their JPEG files for /predict."""
    paths = sorted((data_dir / "test").glob("*/*.jpeg"))
    paths = paths[:: max(len(paths) // count, 1)][:count]
    films = [study_film(np.asarray(Image.open(p).convert("L"))) for p in paths]
    return films, [p.read_bytes() for p in paths]


def fresh(template: pydicom.Dataset) -> pydicom.Dataset:
    """The film as a new study: new Study, Series and SOP Instance UIDs. A deep copy:
    pydicom's `Dataset.copy()` shares the elements, so setting a UID on it sets the
    template's."""
    ds = copy.deepcopy(template)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


class Node:
    """The node as a sending modality reaches it: one association per study."""

    def __init__(self, port: int) -> None:
        self.port = port

    def store(self, datasets: list[pydicom.Dataset]) -> list[int] | None:
        """C-STORE the data sets in one association: their statuses, or None when the
        association was refused (the node's association limit) or dropped."""
        ae = AE(ae_title=CALLING_AE)
        for sop_class in {ds.SOPClassUID for ds in datasets}:
            ae.add_requested_context(sop_class, [ds.file_meta.TransferSyntaxUID
                                                 for ds in datasets][:1])
        assoc = ae.associate("127.0.0.1", self.port, ae_title=NODE_AE)
        if not assoc.is_established:
            return None
        try:
            return [int(getattr(assoc.send_c_store(ds), "Status", -1)) for ds in datasets]
        finally:
            if assoc.is_established:
                assoc.release()


class SrWatcher:
    """Orthanc's change log, polled by one thread: the time each study's SR was first seen
    (time.perf_counter()), by Study Instance UID."""

    def __init__(self, pacs: Orthanc) -> None:
        self._pacs = pacs
        self._since = pacs.rest("GET", "/changes?last")["Last"]
        self.arrived: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = self._pacs.rest("GET", f"/changes?since={self._since}&limit=1000")
            seen = time.perf_counter()
            for change in answer["Changes"]:
                if change["ChangeType"] != "NewInstance":
                    continue
                tags = self._pacs.rest("GET", f"/instances/{change['ID']}/simplified-tags")
                if tags.get("SOPClassUID") == COMPREHENSIVE_SR:
                    with self._lock:
                        self.arrived.setdefault(tags["StudyInstanceUID"], seen)
            self._since = answer["Last"]
            if answer["Done"]:
                self._stop.wait(POLL_SECONDS)

    def when(self, study_uid: str) -> float | None:
        with self._lock:
            return self.arrived.get(study_uid)

    def wait_for(self, study_uids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(self.when(uid) is None for uid in study_uids) \
                and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class Phase:
    """One open-loop rate: per study its scheduled start, its answer and when the answer
    came."""

    rate: float
    scheduled: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    refused: int = 0  # associations refused (the node's limit), each retried
    busy: int = 0  # Out of Resources answers, each retried
    lock: threading.Lock = field(default_factory=threading.Lock)


def open_loop(node: Node, watcher: SrWatcher, films: list[pydicom.Dataset], rate: float,
              seconds: float) -> Phase:
    """`rate` single-film studies per second for `seconds`, each in its own association,
    sent at its scheduled time whatever the node's answers to the earlier ones."""
    phase = Phase(rate)
    give_up = [float("inf")]

    def one(ds: pydicom.Dataset, scheduled: float) -> None:
        uid = ds.StudyInstanceUID
        while True:
            statuses = node.store([ds])
            status = statuses[0] if statuses else None
            if status not in (None, OUT_OF_RESOURCES) or time.perf_counter() > give_up[0]:
                break
            with phase.lock:
                if status is None:
                    phase.refused += 1
                else:
                    phase.busy += 1
            time.sleep(RETRY_SECONDS)
        with phase.lock:
            phase.answered[uid] = time.perf_counter() - scheduled
            phase.statuses[uid] = -1 if status is None else status

    threads = []
    start = time.perf_counter() + 0.1
    for index in range(int(rate * seconds)):
        ds = fresh(films[index % len(films)])
        scheduled = start + index / rate
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        phase.scheduled[ds.StudyInstanceUID] = scheduled
        thread = threading.Thread(target=one, args=(ds, scheduled), daemon=True)
        thread.start()
        threads.append(thread)
    give_up[0] = time.perf_counter() + DELIVERY_TIMEOUT
    for thread in threads:
        thread.join()
    stored = [uid for uid, status in phase.statuses.items() if status == SUCCESS]
    watcher.wait_for(stored, DELIVERY_TIMEOUT)
    return phase


def notification_seconds(phase: Phase, watcher: SrWatcher) -> list[float]:
    found = []
    for uid, scheduled in phase.scheduled.items():
        arrived = watcher.when(uid)
        if phase.statuses.get(uid) == SUCCESS and arrived is not None:
            found.append(arrived - scheduled)
    return found


def saturation(node: Node, watcher: SrWatcher, films: list[pydicom.Dataset], clients: int,
               seconds: float, per_association: int = 4, server: Server | None = None
               ) -> dict:
    """`clients` associations storing back to back: films/s answered Success, films/s
    until their last SR was in Orthanc, and `server`'s CPU per film stored (ms) through
    both."""
    stored: list[str] = []
    refused = [0]
    lock = threading.Lock()
    cpu = tree_cpu_seconds(server.process.pid) if server is not None else 0.0
    started = time.perf_counter()
    stop = started + seconds

    def client(slot: int) -> None:
        index = slot
        while time.perf_counter() < stop:
            batch = [fresh(films[(index + i) % len(films)]) for i in range(per_association)]
            index += per_association * clients
            statuses = node.store(batch)
            with lock:
                if statuses is None:
                    refused[0] += 1
                    continue
                stored.extend(ds.StudyInstanceUID for ds, status in zip(batch, statuses)
                              if status == SUCCESS)

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answered = time.perf_counter() - started
    watcher.wait_for(stored, DELIVERY_TIMEOUT)
    cpu = tree_cpu_seconds(server.process.pid) - cpu if server is not None else float("nan")
    arrivals = [watcher.when(uid) for uid in stored]
    delivered = [t for t in arrivals if t is not None]
    last = max(delivered, default=started + answered) - started
    return {"stored": len(stored), "answered_per_s": len(stored) / answered,
            "delivered": len(delivered), "delivered_per_s": len(delivered) / last,
            "refused_associations": refused[0], "seconds": answered,
            "cpu_ms": 1000 * cpu / len(stored) if stored else float("nan")}


def predict_cpu(server: Server, jpegs: list[bytes], clients: int, seconds: float,
                path: str = "/predict") -> dict:
    """`drive`, with the server's CPU per request answered (ms)."""
    cpu = tree_cpu_seconds(server.process.pid)
    result = drive(server.port, jpegs, clients, seconds, path=path)
    answered = sum(result["statuses"].values())
    cpu = tree_cpu_seconds(server.process.pid) - cpu
    return {**result, "cpu_ms": 1000 * cpu / answered if answered else float("nan")}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def app_server(pacs: Orthanc, state: Path, node_port: int, http_port: int,
               **settings: str) -> Server:
    """The app as a user runs it (`python -m app`), ready, its results going to `pacs`."""
    env = {"PNEUMONIA_HOST": "127.0.0.1", "PNEUMONIA_PORT": str(http_port),
           "PNEUMONIA_DICOM_PORT": str(node_port), "PNEUMONIA_DICOM_AE_TITLE": NODE_AE,
           "PNEUMONIA_RESULTS_DESTINATION": f"{pacs.ae_title}@127.0.0.1:{pacs.dicom_port}",
           "PNEUMONIA_STATE_DIR": str(state), **settings}
    return Server([sys.executable, "-m", "app"], env, http_port, cwd=REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--films", type=int, default=20, help="distinct test-split films")
    parser.add_argument("--rates", nargs="+", type=float, default=[1.0, 2.0, 5.0],
                        help="studies per second, each for --seconds")
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase")
    parser.add_argument("--clients", type=int, default=8,
                        help="associations at saturation, and /predict's clients")
    parser.add_argument("--skip-sr-only", action="store_true",
                        help="skip the saturation of a node sending its SR only")
    args = parser.parse_args()

    films, jpegs = films_from(args.data_dir, args.films)
    work = Path(tempfile.mkdtemp(prefix="bench-dicom-node-"))
    node_port, http_port = free_port(), free_port()
    with running_orthanc(work / "orthanc", {"triage": (NODE_AE, "127.0.0.1", node_port)}
                         ) as pacs:
        server = app_server(pacs, work / "state", node_port, http_port)
        watcher = SrWatcher(pacs)
        node = Node(node_port)
        try:
            print(f"app ready {server.ready_seconds:.1f} s after start; Orthanc "
                  f"{pacs.rest('GET', '/system')['Version']}; {os.cpu_count()} cores; "
                  f"{len(films)} films of {films[0].Columns}x{films[0].Rows}", flush=True)
            warm = open_loop(node, watcher, films, 2.0, 2.0)  # first explain, highdicom
            print(f"warm-up: {len(notification_seconds(warm, watcher))} of "
                  f"{len(warm.scheduled)} SRs back", flush=True)
            rows = []
            for rate in args.rates:
                before = load()
                phase = open_loop(node, watcher, films, rate, args.seconds)
                latencies = notification_seconds(phase, watcher)
                answers = [phase.answered[uid] for uid in phase.scheduled
                           if uid in phase.answered]
                others = len(phase.scheduled) - sum(s == SUCCESS
                                                    for s in phase.statuses.values())
                rows.append((rate, phase, latencies, answers, others, before))
                print(f"  {rate:g} studies/s: {len(latencies)}/{len(phase.scheduled)} SRs, "
                      f"p50 {statistics.median(latencies or [float('nan')]):.2f} s, "
                      f"p95 {percentile(latencies, 95):.2f} s, {phase.refused} associations "
                      f"refused, {phase.busy} Out of Resources, "
                      f"load {before}", flush=True)
            before_saturation = load()
            full = saturation(node, watcher, films, args.clients, args.seconds,
                              server=server)
            print(f"  saturation: {full}, load {before_saturation}", flush=True)
            before_predict = load()
            plain = predict_cpu(server, jpegs, args.clients, args.seconds)
            explained = predict_cpu(server, jpegs, args.clients, args.seconds,
                                    path="/predict?explain=true")
            print(f"  /predict: {plain['rps']:.1f} req/s {plain['statuses']}, CPU "
                  f"{plain['cpu_ms']:.1f} ms a request; ?explain=true: "
                  f"{explained['rps']:.1f} req/s {explained['statuses']}, CPU "
                  f"{explained['cpu_ms']:.1f} ms a request; load {before_predict}",
                  flush=True)
        finally:
            server.stop()
        sr_only = None
        if not args.skip_sr_only:
            # The same node without its secondary capture: no heatmap, one object to send.
            node_port, http_port = free_port(), free_port()
            server = app_server(pacs, work / "state-sr-only", node_port, http_port,
                                PNEUMONIA_RESULTS_SECONDARY_CAPTURE="false")
            node = Node(node_port)
            try:
                open_loop(node, watcher, films, 2.0, 2.0)
                before_sr_only = load()
                sr_only = saturation(node, watcher, films, args.clients, args.seconds,
                                     server=server)
                print(f"  saturation, SR only: {sr_only}, load {before_sr_only}", flush=True)
            finally:
                server.stop()
        watcher.stop()

    print("\n| measure | figure | n | load avg 1/5/15 min |\n|---|---:|---:|---|")
    for rate, phase, latencies, answers, others, before in rows:
        print(f"| {rate:g} studies/s: C-STORE to SR in Orthanc, p50 / p95 | "
              f"{statistics.median(latencies or [float('nan')]):.2f} / "
              f"{percentile(latencies, 95):.2f} s | {len(latencies)} of "
              f"{len(phase.scheduled)} | {before} |")
        print(f"| {rate:g} studies/s: C-STORE answered, p50 / p95 | "
              f"{statistics.median(answers or [float('nan')]):.2f} / "
              f"{percentile(answers, 95):.2f} s | {others} not Success; retried: "
              f"{phase.refused} refused associations, {phase.busy} Out of Resources | |")
    ratio = full["answered_per_s"] / plain["rps"]
    print(f"| node at saturation, {args.clients} associations: films/s answered Success | "
          f"{full['answered_per_s']:.1f} | {full['stored']} | {before_saturation} |")
    print(f"| node at saturation: films/s until their last SR was in Orthanc | "
          f"{full['delivered_per_s']:.1f} | {full['delivered']} | |")
    print(f"| node at saturation: server CPU per film stored, until its SR was in Orthanc | "
          f"{full['cpu_ms']:.1f} ms | {full['stored']} | |")
    print(f"| `/predict`: server CPU per request | {plain['cpu_ms']:.1f} ms | {plain['ok']} | "
          f"|")
    if sr_only is not None:
        print(f"| node at saturation, SR only (no secondary capture): films/s answered "
              f"Success / until their last SR was in Orthanc | "
              f"{sr_only['answered_per_s']:.1f} / {sr_only['delivered_per_s']:.1f} | "
              f"{sr_only['stored']} | {before_sr_only} |")
        print(f"| node at saturation, SR only: server CPU per film | "
              f"{sr_only['cpu_ms']:.1f} ms | | |")
    print(f"| `/predict`, {args.clients} clients, same films as JPEG: req/s answered 200 | "
          f"{plain['rps']:.1f} | {plain['ok']} ({plain['failed']} others) | "
          f"{before_predict} |")
    print(f"| `/predict?explain=true`, {args.clients} clients: req/s answered 200 | "
          f"{explained['rps']:.1f} | {explained['ok']} ({explained['failed']} others) | |")
    print(f"| node / `/predict` | {ratio:.0%} | | |")
    print(f"| node / `/predict?explain=true` | "
          f"{full['answered_per_s'] / explained['rps']:.0%} | | |")
    if sr_only is not None:
        print(f"| node, SR only / `/predict` | "
              f"{sr_only['answered_per_s'] / plain['rps']:.0%} | | |")
    cpu_ratio = full["cpu_ms"] / plain["cpu_ms"]
    print(f"| node CPU per film / `/predict`'s | {cpu_ratio:.1f}x | | |")
    two = next((latencies for rate, _, latencies, *_ in rows if rate == 2.0), None)
    p95 = percentile(two, 95) if two else float("nan")
    print(f"\ntargets: p95 at 2 studies/s {p95:.2f} s (under 1 s: "
          f"{'met' if p95 < 1 else 'missed'}); answered at {args.clients} associations "
          f"{ratio:.0%} of /predict (at least 25%: {'met' if ratio >= 0.25 else 'missed'}); "
          f"delivered {full['delivered_per_s']:.1f} films/s (at least 10: "
          f"{'met' if full['delivered_per_s'] >= 10 else 'missed'}); CPU per film "
          f"{cpu_ratio:.1f}x /predict's (at most 10x: {'met' if cpu_ratio <= 10 else 'missed'})")


if __name__ == "__main__":
    main()
