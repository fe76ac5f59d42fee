"""Load harness: the app against a naive baseline and a decode-bound ceiling, in one run.

    .venv/bin/python benchmarks/load.py --data-dir ../shared/data [--seconds 8]

On loopback it starts the app (`python -m app`) and the naive baseline
(`benchmarks/naive_app.py`: Starlette form parsing, full Pillow decode, resize,
one model call per request), each alone, and drives them with 1, 8 and 32 concurrent
clients sending three kinds of upload: the full-size samples, 224x224 test-split JPEGs and
16-bit PNGs made from the samples. It prints requests/s, p50/p95/p99, the answers that were
not 200 (503s among them), the CPU each answer cost the server (the server process and its
decode workers together, user and system time over the level, divided by the requests
answered), a /healthz probe's p99 and worst latency through the level (a new connection
every 50 ms), the 1-minute load average before each level, the server's peak resident
memory (the server process and its decode workers together, sampled every 20 ms) and its
time from process start to ready; then a decode-bound ceiling (a bare loop decoding the same
uploads at reduced scale on every core) and the ratios. For the app alone it also measures
the server-side time of a 2-megapixel JPEG (the `elapsed_ms` it reports, one client) and its
memory through 8 concurrent uploads of a 49-megapixel 16-bit PNG (the naive baseline is not
sent those: it needs about 1.2 GB per upload).
A benchmark, not a test: it prints figures and asserts nothing. Every loop is bounded by
its time budget; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_tree import free_port, tree_memory  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CLIENTS = (1, 8, 32)


def inputs(data_dir: Path) -> dict[str, list[bytes]]:
    samples = [p.read_bytes() for p in sorted((data_dir / "samples").glob("*.jpeg"))]
    small = [p.read_bytes() for p in sorted((data_dir / "chest_xray" / "test").glob(
        "*/*.jpeg"))[::31][:20]]
    wide = []
    for data in samples:
        gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.uint16) * 257
        buffer = io.BytesIO()
        Image.fromarray(gray).save(buffer, "PNG")
        wide.append(buffer.getvalue())
    return {"full-size samples (JPEG, 1.1-6.4 MP)": samples,
            "224x224 test-split JPEGs": small,
            "16-bit PNGs of the samples": wide}


def _tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, MiB (memory_tree.tree_memory)."""
    return tree_memory(pid).tree / 2**20


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process, of its children it has reaped (a decode
    worker replaced), and of its descendants alive now."""
    process = psutil.Process(pid)
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        with suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


def load_average() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


class HealthProbe:
    """GET /healthz on a new connection every `interval` s while in its block: the
    latencies (ms) and the probes that failed."""

    def __init__(self, port: int, interval: float = 0.05) -> None:
        self.port, self.interval = port, interval
        self.ms: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("GET", "/healthz")
                # The naive baseline has no /healthz: its 404 still times the answer.
                ok = connection.getresponse().status in (200, 404)
                connection.close()
            except OSError:
                ok = False
            if ok:
                self.ms.append((time.perf_counter() - started) * 1000)
            else:
                self.failed += 1
            self._stop.wait(self.interval)

    def figures(self) -> dict:
        ms = sorted(self.ms) or [float("nan")]
        return {"health_p99": ms[int(0.99 * (len(ms) - 1))], "health_max": ms[-1],
                "health_failed": self.failed}


def measured(server: Server, uploads: list[bytes], clients: int, seconds: float,
             path: str = "/predict") -> dict:
    """`drive`, with the server tree's CPU per request answered (ms), /healthz's latency
    through it and the load average before it."""
    load = load_average()
    cpu = tree_cpu_seconds(server.process.pid)
    with HealthProbe(server.port) as probe:
        result = drive(server.port, uploads, clients, seconds, path)
    cpu = tree_cpu_seconds(server.process.pid) - cpu
    answered = sum(result["statuses"].values())
    return {**result, **probe.figures(), "load": load,
            "cpu_ms": 1000 * cpu / answered if answered else float("nan"),
            "refused": result["statuses"].get(503, 0)}


class Server:
    """A server process on loopback; the peak resident memory of it and its children."""

    def __init__(self, command: list[str], env: dict[str, str], port: int,
                 cwd: Path = REPO) -> None:
        self.port = port
        started = time.perf_counter()
        self.process = subprocess.Popen(command, env={**os.environ, **env}, cwd=cwd,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not become ready")
            time.sleep(0.05)
        self.ready_seconds = time.perf_counter() - started
        self.peak = 0.0
        self._generation = 0
        self._lock = threading.Lock()
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        """Every 50 ms; a sample taken across a reset does not count for the new phase."""
        while self._sampling:
            generation = self._generation
            value = _tree_rss_mib(self.process.pid)
            with self._lock:
                if generation == self._generation:
                    self.peak = max(self.peak, value)
            time.sleep(0.05)

    def reset_peak(self) -> None:
        with self._lock:
            self._generation += 1
            self.peak = 0.0

    def _ready(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self._sampling = False
        self.process.terminate()
        self.process.wait(timeout=30)


def _body(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"x\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def drive(port: int, uploads: list[bytes], clients: int, seconds: float,
          path: str = "/predict") -> dict:
    """`clients` threads, each with its own keep-alive connection, posting to `path` for
    `seconds`."""
    bodies = [_body(u) for u in uploads]
    latencies: list[float] = []
    server_ms: list[float] = []
    statuses: dict[int, int] = {}
    failures = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = offset
        while time.perf_counter() < stop_at:
            body, boundary = bodies[i % len(bodies)]
            i += 1
            started = time.perf_counter()
            try:
                connection.request("POST", path, body, {
                    "Content-Type": f"multipart/form-data; boundary={boundary}"})
                response = connection.getresponse()
                payload = response.read()
                status = response.status
            except OSError:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = 0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                    elapsed = json.loads(payload).get("elapsed_ms")
                    if elapsed is not None:
                        server_ms.append(elapsed)
                else:
                    failures[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies) or [float("nan")]
    return {"rps": len(latencies) / elapsed, "p50": statistics.median(ms),
            "p95": ms[int(0.95 * (len(ms) - 1))], "p99": ms[int(0.99 * (len(ms) - 1))],
            "ok": len(latencies), "failed": failures[0], "statuses": statuses,
            "server_p50": statistics.median(server_ms) if server_ms else float("nan")}


def decode_reduced(data: bytes) -> int:
    """One image decoded at reduced scale and resized; returns 1 (a count). Top level, so
    that it pickles into the worker processes."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("L", (64, 64))  # DCT scaling: decode at 1/2, 1/4 or 1/8
    image.load()
    image.resize((64, 64))
    return 1


def ceiling(uploads: list[bytes], seconds: float) -> float:
    """Images/s of a bare reduced-scale decode on every core: what decoding alone allows."""
    workers = os.cpu_count() or 1
    done = 0
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        while time.perf_counter() - started < seconds:
            done += sum(pool.map(decode_reduced, uploads * workers, chunksize=1))
    return done / (time.perf_counter() - started)


def _jpeg_of_megapixels(data_dir: Path, megapixels: float) -> bytes:
    film = Image.open(sorted((data_dir / "samples").glob("*.jpeg"))[0]).convert("L")
    side = int((megapixels * 1e6) ** 0.5)
    buffer = io.BytesIO()
    film.resize((side, side), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _png16_of_megapixels(data_dir: Path, megapixels: float) -> bytes:
    film = Image.open(sorted((data_dir / "samples").glob("*.jpeg"))[0]).convert("L")
    side = int((megapixels * 1e6) ** 0.5)
    wide = np.asarray(film.resize((side, side), Image.Resampling.BILINEAR),
                      dtype=np.uint16) * 257
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def app_only(port: int, server: Server, data_dir: Path, seconds: float) -> dict:
    """Server-side time of a 2 MP JPEG; memory through 8 concurrent 49 MP 16-bit PNGs."""
    two = drive(port, [_jpeg_of_megapixels(data_dir, 2.0)], 1, seconds)
    print(f"  2-megapixel JPEG, 1 client: server-side median {two['server_p50']:.1f} ms, "
          f"round trip p50 {two['p50']:.1f} ms", flush=True)
    huge = _png16_of_megapixels(data_dir, 49.0)
    server.reset_peak()
    burst = measured(server, [huge], 8, seconds)
    print(f"  49-megapixel 16-bit PNG ({len(huge) / 2**20:.0f} MiB), 8 clients: "
          f"{burst['ok']} answered 200, statuses {burst['statuses']}, p50 {burst['p50']:.0f} ms; "
          f"peak resident memory {server.peak:.0f} MiB; CPU {burst['cpu_ms']:.0f} ms a film; "
          f"/healthz p99 {burst['health_p99']:.0f} ms; load {burst['load']:.1f}", flush=True)
    return {"two_mp": two, "huge": burst, "huge_peak": server.peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--seconds", type=float, default=8.0, help="per client level")
    parser.add_argument("--model-path", type=Path, default=None,
                        help="SavedModel for the naive baseline (default: newest served)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from app.services.saved_model import find_model

    model_path = args.model_path or find_model(REPO / "models", "pneumonia")
    sets = inputs(args.data_dir)
    rows, peaks, ready, extra = [], {}, {}, {}
    for name, command, env in (
        ("app", [sys.executable, "-m", "app"], {}),
        ("naive", [sys.executable, "-m", "uvicorn", "benchmarks.naive_app:app"],
         {"PNEUMONIA_MODEL_PATH": str(model_path)}),
    ):
        port = free_port()
        if name == "app":
            env = {"PNEUMONIA_PORT": str(port), "PNEUMONIA_HOST": "127.0.0.1"}
        else:
            command = [*command, "--port", str(port), "--log-level", "warning"]
        server = Server(command, env, port)
        print(f"{name}: ready {server.ready_seconds:.1f} s after start", flush=True)
        for set_name, uploads in sets.items():
            for clients in CLIENTS:
                result = measured(server, uploads, clients, args.seconds)
                rows.append((name, set_name, clients, result))
                print(f"  {set_name:<38} {clients:>2} clients: {result['rps']:7.1f} req/s  "
                      f"p50 {result['p50']:7.1f}  p95 {result['p95']:7.1f}  "
                      f"p99 {result['p99']:7.1f} ms  ({result['failed']} failed, "
                      f"{result['refused']} of them 503)  CPU {result['cpu_ms']:5.2f} ms a "
                      f"film  /healthz p99 {result['health_p99']:.0f} ms (max "
                      f"{result['health_max']:.0f}, {result['health_failed']} failed)  "
                      f"load {result['load']:.1f}", flush=True)
        print(f"{name}: peak resident memory {server.peak:.0f} MiB (with its children)",
              flush=True)
        peaks[name], ready[name] = server.peak, server.ready_seconds
        if name == "app":
            extra = app_only(port, server, args.data_dir, args.seconds)
        server.stop()

    print("\ndecode-bound ceiling (reduced-scale decode, every core):")
    ceilings = {set_name: ceiling(uploads, args.seconds / 2) for set_name, uploads in
                sets.items()}
    for set_name, value in ceilings.items():
        print(f"  {set_name:<38} {value:7.1f} images/s")

    print("\n| upload | clients | app req/s | p50 / p99 ms | app 503s | app CPU ms/film | "
          "naive req/s | naive CPU ms/film | app / naive | app / ceiling | /healthz p99 ms | "
          "load (app, naive) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    table = {(n, s, c): r for n, s, c, r in rows}
    for set_name in sets:
        for clients in CLIENTS:
            app_r, naive_r = table["app", set_name, clients], table["naive", set_name, clients]
            print(f"| {set_name} | {clients} | {app_r['rps']:.1f} | {app_r['p50']:.0f} / "
                  f"{app_r['p99']:.0f} | {app_r['refused']} | {app_r['cpu_ms']:.2f} | "
                  f"{naive_r['rps']:.1f} | {naive_r['cpu_ms']:.2f} | "
                  f"{app_r['rps'] / naive_r['rps']:.2f}x | "
                  f"{app_r['rps'] / ceilings[set_name]:.0%} | {app_r['health_p99']:.0f} | "
                  f"{app_r['load']:.1f}, {naive_r['load']:.1f} |")

    print("\ntargets:")
    for set_name, target in zip(sets, (3.0, 1.0, 1.0)):
        app8, naive8 = table["app", set_name, 8], table["naive", set_name, 8]
        ratio, spread = app8["rps"] / naive8["rps"], app8["p99"] / app8["p50"]
        print(f"  {set_name}, 8 clients: {ratio:.2f}x naive (at least {target:g}x: "
              f"{'met' if ratio >= target else 'missed'}), p99 / p50 {spread:.1f} (at most 3: "
              f"{'met' if spread <= 3 else 'missed'})")
    for set_name in sets:
        app32, naive32 = table["app", set_name, 32], table["naive", set_name, 32]
        ratio = app32["rps"] / naive32["rps"]
        print(f"  {set_name}, 32 clients: {app32['refused']} answered 503 (none: "
              f"{'met' if not app32['refused'] else 'missed'}), {ratio:.2f}x naive's "
              f"successful req/s (at least 1: {'met' if ratio >= 1 else 'missed'}), /healthz "
              f"p99 {app32['health_p99']:.0f} ms (under 100: "
              f"{'met' if app32['health_p99'] < 100 else 'missed'})")
    print(f"  8 x 49 MP 16-bit PNG: process tree peak {extra['huge_peak']:.0f} MiB (under 1024: "
          f"{'met' if extra['huge_peak'] < 1024 else 'missed'})")

    full = next(iter(sets))
    app8, naive8 = table["app", full, 8], table["naive", full, 8]
    print(f"\nsummary: {full}, 8 clients: {app8['rps'] / naive8['rps']:.2f}x the naive "
          f"baseline, {app8['rps'] / ceilings[full]:.0%} of the ceiling, p99 / p50 "
          f"{app8['p99'] / app8['p50']:.1f}; 2 MP JPEG server-side median "
          f"{extra['two_mp']['server_p50']:.1f} ms; peak resident memory through all client "
          f"levels {peaks['app']:.0f} MiB (naive {peaks['naive']:.0f} MiB), through 8 x 49 MP "
          f"16-bit PNG {extra['huge_peak']:.0f} MiB; ready {ready['app']:.1f} s after start")


if __name__ == "__main__":
    main()
