"""Attack rows: normal films scored while someone attacks the server, beside a quiet run.

    .venv/bin/python benchmarks/attacks.py --data-dir ../shared/data [--seconds 20]
    (also run by benchmarks/load.py --attacks)

One app server (`python -m app`, the default settings, on loopback) and one normal workload
throughout: 8 clients posting 224x224 test-split JPEGs to /predict. Each row adds one attack
for the same time (issue 20's findings):

- **idle connections**: 1,000 sockets that never send a byte, and 100 that send one header
  byte every 2 s; each reopened 1 s after the server closes it; and the same reopened at
  once, a connection flood (thousands of connects a second from one address: beyond what
  any application server absorbs, a per-address connection rate limit at the network edge
  is the remedy; the row shows what is left without one);
- **trickled uploads**: 16 uploads to /predict sending their body at 17 KiB/s, just above the
  minimum rate, reopened when cut off;
- **explain loop**: 16 clients posting films to /predict?explain=true back to back;
- **batches**: 4 clients posting about 100 MB batches (16-bit PNGs of the samples) to
  /predict/batch back to back;
- **the DICOM node** (issue 27, benchmarks/dicom_attacks.py): an allowed PACS storing a film
  a second and waiting for its results, alone, then beside 8 silent sockets, 8 associations
  trickling their request, a flood of associations from a caller not on the allow-list,
  3 associations storing 300 MiB data sets (at a gigabit link's 125 MB/s between them, and
  as fast as loopback carries them), and the first four at once. The server then runs its
  DICOM node on a free port with `PNEUMONIA_DICOM_ALLOWED_AES='["PACS"]'` and the results
  sent to a storage SCP in this process; each row adds the PACS's films stored, its
  retries, the films it gave up on and the results (SRs) it got within 60 s of its last film.

Every row prints the normal films' throughput and its share of the quiet run's (the target
is at least half), their statuses, a /healthz probe's latency (a new connection every 0.2 s),
and the process tree's peak resident memory during the row and once settled (5 s after the
attack ends; the target is under 1 GiB with the default model). A benchmark, not a test: it
prints figures and asserts nothing; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.client
import io
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402
from load import REPO, Server, _body, _tree_rss_mib, drive  # noqa: E402
from memory_tree import free_port  # noqa: E402

sys.path.insert(0, str(REPO))  # dicom_attacks writes raw PDUs with tests/dicom/raw.py
from dicom_attacks import (  # noqa: E402
    PACS_AE,
    PacsLoop,
    ResultsPacs,
    Together,
    big_data_sets,
    closed,
    pacs_films,
    rejected_flood,
    silent_sockets,
    trickling_associations,
)

NORMAL_CLIENTS = 8
SETTLE_SECONDS = 5.0
PACS_ROWS = 6  # the rows from this one on are the DICOM node's, with the PACS storing
LINK_BYTES_PER_SECOND = 125e6  # what one client on a gigabit link can send


def _normal_films(data_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((data_dir / "chest_xray" / "test").glob(
        "*/*.jpeg"))[::31][:20]]


def _batch_body(data_dir: Path, megabytes: float) -> tuple[bytes, str]:
    """A multipart body of about `megabytes` MB: 16-bit PNGs of the samples, repeated."""
    pngs = []
    for path in sorted((data_dir / "samples").glob("*.jpeg")):
        gray = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 257
        buffer = io.BytesIO()
        Image.fromarray(gray).save(buffer, "PNG", compress_level=1)
        pngs.append(buffer.getvalue())
    boundary = uuid.uuid4().hex
    parts, size, i = [], 0, 0
    while size < megabytes * 1e6:
        data = pngs[i % len(pngs)]
        part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                f"filename=\"film{i}.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + \
            data + b"\r\n"
        parts.append(part)
        size += len(part)
        i += 1
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


class Attack:
    """Threads that attack until `stop()`; each counts what it did in `done`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.running = True
        self.done = 0
        self.statuses: dict[int, int] = {}
        self._threads: list[threading.Thread] = []

    def spawn(self, target: Callable[[], None], count: int = 1) -> None:
        for _ in range(count):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def connect(self) -> socket.socket | None:
        try:
            return socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return None

    def stop(self) -> None:
        self.running = False
        for thread in self._threads:
            thread.join(timeout=30)


def idle_connections(port: int, silent: int = 1000, trickling: int = 100,
                     reopen_after: float = 1.0) -> Attack:
    """`silent` sockets that send nothing and `trickling` that send one header byte every
    2 s; a socket the server closes is opened again `reopen_after` seconds later (0: at
    once, a connection flood) (done: sockets closed by the server)."""
    attack = Attack(port)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000

    def hold() -> None:
        socks: list[tuple[socket.socket | None, int]] = [(None, 0)] * (silent + trickling)
        closed_at = [0.0] * len(socks)
        last_byte = 0.0
        while attack.running:
            now = time.monotonic()
            send = now - last_byte >= 2.0
            if send:
                last_byte = now
            for k, (sock, sent) in enumerate(socks):
                if sock is not None and closed(sock):
                    sock.close()
                    sock, closed_at[k] = None, now
                    attack.done += 1
                if sock is None and now - closed_at[k] >= reopen_after:
                    sock, sent = attack.connect(), 0
                if sock is not None and k >= silent and send:
                    try:
                        sock.send(head[sent % len(head):sent % len(head) + 1])
                        sent += 1
                    except OSError:
                        sock.close()
                        sock = None
                socks[k] = (sock, sent)
            time.sleep(0.2)
        for sock, _ in socks:
            if sock is not None:
                sock.close()

    attack.spawn(hold)
    return attack


def trickled_uploads(port: int, uploads: int = 16, rate: float = 17 * 1024) -> Attack:
    """`uploads` POST /predict whose 2 MB bodies arrive at `rate` bytes/s; each is begun
    again when the server answers or cuts it off (done: uploads cut off or answered)."""
    attack = Attack(port)
    size = 2 * 1024 * 1024

    def trickle() -> None:
        while attack.running:
            sock = attack.connect()
            if sock is None:
                time.sleep(0.1)
                continue
            try:
                sock.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                             f"multipart/form-data; boundary=x\r\nContent-Length: {size}"
                             f"\r\n\r\n--x\r\nContent-Disposition: form-data; name=\"file\"; "
                             f"filename=\"x.jpeg\"\r\n\r\n".encode())
                chunk = int(rate / 10)
                while attack.running and not closed(sock):
                    sock.send(b"\xff" * chunk)
                    time.sleep(0.1)
            except OSError:
                pass
            finally:
                sock.close()
                attack.done += 1

    attack.spawn(trickle, uploads)
    return attack


def looping_posts(port: int, body: tuple[bytes, str], clients: int, path: str) -> Attack:
    """`clients` keep-alive clients posting `body` to `path` back to back (done: answers)."""
    attack = Attack(port)
    data, boundary = body

    def loop() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while attack.running:
            try:
                connection.request("POST", path, data, {
                    "Content-Type": f"multipart/form-data; boundary={boundary}"})
                response = connection.getresponse()
                response.read()
                attack.done += 1
                attack.statuses[response.status] = attack.statuses.get(response.status, 0) + 1
            except OSError:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                time.sleep(0.05)

    attack.spawn(loop, clients)
    return attack


class HealthProbe(load.HealthProbe):
    """load.py's /healthz probe, every 0.2 s from its creation until `stop`."""

    def __init__(self, port: int) -> None:
        super().__init__(port, interval=0.2)
        self.__enter__()

    def stop(self) -> dict:
        self.__exit__()
        ms = sorted(self.ms) or [float("nan")]
        return {"p50": statistics.median(ms), "max": ms[-1], "failed": self.failed,
                "probes": len(self.ms) + self.failed}


def run(data_dir: Path, seconds: float, port: int | None = None,
        only: list[int] | None = None, python: str = sys.executable,
        env: dict[str, str] | None = None) -> list[dict]:
    """Every row (or the quiet row and those numbered in `only`, from 1) against one server
    (`port`, or a new `python -m app`, whose DICOM node the DICOM rows need); returns the
    rows."""
    films = _normal_films(data_dir)
    batch = None
    if not only or 5 in only:
        print("building a 100 MB batch body ...", flush=True)
        batch = _batch_body(data_dir, 100)
    explain_body = _body(films[0])
    own = results = None
    node_port, results_port = free_port(), free_port()
    if port is None:
        port = free_port()
        # The DICOM node on a free port, one caller allowed, results to ResultsPacs; its
        # worklist in a folder of its own.
        own = Server([python, "-m", "app"],
                     {"PNEUMONIA_PORT": str(port), "PNEUMONIA_HOST": "127.0.0.1",
                      "PNEUMONIA_STATE_DIR": tempfile.mkdtemp(prefix="attacks-state-"),
                      "PNEUMONIA_DICOM_PORT": str(node_port),
                      "PNEUMONIA_DICOM_ALLOWED_AES": f'["{PACS_AE}"]',
                      "PNEUMONIA_RESULTS_DESTINATION": f"{PACS_AE}@127.0.0.1:{results_port}",
                      **(env or {})}, port)
        print(f"app: ready {own.ready_seconds:.1f} s after start", flush=True)
    attacks: dict[str, Callable[[], Attack | None]] = {
        "quiet (no attack)": lambda: None,
        "1,000 idle + 100 one-byte-every-2-s connections": lambda: idle_connections(port),
        "the same, each reopened at once (a connection flood)": lambda: idle_connections(
            port, reopen_after=0.0),
        "16 uploads trickling at 17 KiB/s": lambda: trickled_uploads(port),
        "16 clients looping ?explain=true": lambda: looping_posts(
            port, explain_body, 16, "/predict?explain=true"),
        f"4 clients looping {len(batch[0]) / 1e6 if batch else 100:.0f} MB batches":
            lambda: looping_posts(port, batch, 4, "/predict/batch"),
        # The DICOM node's rows: the PACS storing films beside each (PACS_ROWS).
        "DICOM: the PACS storing a film a second (no attack)": lambda: None,
        "DICOM: 8 silent sockets": lambda: silent_sockets(node_port),
        "DICOM: 8 associations sending their request a byte every 10 s":
            lambda: trickling_associations(node_port),
        "DICOM: a flood of associations from a caller not on the allow-list":
            lambda: rejected_flood(node_port),
        "DICOM: 3 associations storing 300 MiB data sets, 125 MB/s between them":
            lambda: big_data_sets(node_port, rate=LINK_BYTES_PER_SECOND),
        "DICOM: the same as fast as loopback carries them": lambda: big_data_sets(node_port),
        "DICOM: silent, trickling, flood and 300 MiB at 125 MB/s at once": lambda: Together(
            silent_sockets(node_port), trickling_associations(node_port),
            rejected_flood(node_port), big_data_sets(node_port, rate=LINK_BYTES_PER_SECOND)),
    }
    pacs_rows = set(list(attacks)[PACS_ROWS:]) if own is not None else set()
    if only:
        attacks = {name: start for k, (name, start) in enumerate(attacks.items())
                   if k == 0 or k in only}
    pacs_films_ = pacs_films(data_dir) if pacs_rows & set(attacks) else []
    if pacs_films_:
        results = ResultsPacs(results_port)
    rows = []
    try:
        for name, start in attacks.items():
            if own is not None:
                own.reset_peak()
            attack = start()
            time.sleep(1.0 if attack else 0)  # let the attack take hold first
            pacs = PacsLoop(node_port, pacs_films_) if name in pacs_rows else None
            probe = HealthProbe(port)
            normal = drive(port, films, NORMAL_CLIENTS, seconds)
            health = probe.stop()
            # Its results waited for with the attack still on: they must come through it.
            pacs_figures = pacs.stop(results) if pacs is not None and results else None
            peak = own.peak if own is not None else float("nan")
            if attack:
                attack.stop()
            time.sleep(SETTLE_SECONDS)
            settled = _tree_rss_mib(own.process.pid) if own is not None else float("nan")
            row = {"attack": name, "normal": normal, "health": health, "peak": peak,
                   "settled": settled, "attack_done": attack.done if attack else 0,
                   "attack_statuses": attack.statuses if attack else {},
                   "pacs": pacs_figures}
            rows.append(row)
            print(f"  {name:<52} normal {normal['rps']:6.1f} req/s, statuses "
                  f"{normal['statuses']}; /healthz p50 {health['p50']:.1f} ms, max "
                  f"{health['max']:.0f} ms, {health['failed']}/{health['probes']} failed; "
                  f"tree peak {peak:.0f} MiB, settled {settled:.0f} MiB; the attack's own "
                  f"count {row['attack_done']} {row['attack_statuses'] or ''}"
                  + (f"; PACS {pacs_figures}" if pacs_figures else ""), flush=True)
    finally:
        if own is not None:
            own.stop()
        if results is not None:
            results.stop()
    quiet = rows[0]["normal"]["rps"]
    print("\n| attack | normal films req/s | share of quiet | normal non-200 | /healthz p50 / "
          "max ms (failed) | tree peak MiB | settled MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        normal, health = row["normal"], row["health"]
        print(f"| {row['attack']} | {normal['rps']:.1f} | {normal['rps'] / quiet:.0%} | "
              f"{normal['failed']} | {health['p50']:.1f} / {health['max']:.0f} "
              f"({health['failed']}/{health['probes']}) | {row['peak']:.0f} | "
              f"{row['settled']:.0f} |")
    pacs_table(rows)
    return rows


def pacs_table(rows: list[dict]) -> None:
    """The PACS's side of the DICOM rows."""
    rows = [row for row in rows if row["pacs"]]
    if not rows:
        return
    # The PACS's films cost /predict too: each row against the PACS alone as well.
    alone = rows[0]["normal"]["rps"]
    print("\n| attack | PACS films stored (Success) | retried (refused or A700) | given up | "
          "results (SR) received | /predict against the PACS alone | the attack's own count |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        pacs = row["pacs"]
        print(f"| {row['attack']} | {pacs['stored']} | {pacs['retries']} | {pacs['lost']} | "
              f"{pacs['results']} of {pacs['stored']} | {row['normal']['rps'] / alone:.0%} | "
              f"{row['attack_done']} {row['attack_statuses'] or ''} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--seconds", type=float, default=20.0, help="per row")
    parser.add_argument("--only", type=int, nargs="*",
                        help="attack rows to run (1-5 HTTP, 6-12 the DICOM node)")
    parser.add_argument("--python", default=sys.executable,
                        help="the server's interpreter: a serving-only install (what `make "
                             "run` and the Docker image have) imports less than the dev "
                             "environment, whose Keras also loads scikit-learn and matplotlib")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a server setting, e.g. PNEUMONIA_OFFERED_MODELS=[] to serve "
                             "the default model only")
    args = parser.parse_args()
    run(args.data_dir, args.seconds, only=args.only, python=args.python,
        env=dict(item.split("=", 1) for item in args.set))


if __name__ == "__main__":
    main()
