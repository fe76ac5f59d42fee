"""The worklist's first page over HTTP with 100,000 stored studies: GET /worklist/entries
(JSON, 50 entries with their films) and the page's rows (/worklist/rows, what the page polls
every second), from the real server (`python -m app`), on embedded SQLite and on a
throw-away PostgreSQL (tests/pg.py).

    python -m benchmarks.worklist_api [--studies 100000] [--calls 50]

Run from the repository root. The store is filled in bulk as benchmarks/worklist_store.py
fills it; then each request is timed from a keep-alive client on the same machine and
printed as the median and 95th percentile in milliseconds (the store's own share of it is
in that benchmark's table).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from app.store import WorklistStore, upgrade
from benchmarks.worklist_store import databases, fill
from tests.servers import server_process

REQUESTS = {
    "GET /worklist/entries (JSON, first 50)": "/worklist/entries?limit=50",
    "GET /worklist/entries?status=new": "/worklist/entries?limit=50&status=new",
    "GET /worklist/rows (the page's poll, 100 rows)": "/worklist/rows",
}


def measure(url: str, studies: int, calls: int, folder: Path) -> dict[str, list[float]]:
    upgrade(url)
    store = WorklistStore(url)
    try:
        fill(store, studies)
    finally:
        store.close()
    sqlite = url.startswith("sqlite")
    # The bulk fill's studies arrived in March 2025: retention must not delete them on start.
    settings = {"decode_workers": "0", "offered_models": "[]",
                "worklist_retention_days": "36500"}
    if not sqlite:
        settings["database_url"] = url
    state = Path(url.removeprefix("sqlite:///")).parent if sqlite else folder / "state"
    results = {}
    folder.mkdir(parents=True, exist_ok=True)
    with server_process(folder / "server.log", state, **settings) as (base, _), \
            httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/worklist/entries?limit=1").json()["total"] == studies
        for name, path in REQUESTS.items():
            for _ in range(3):  # warm-up
                http.get(path).raise_for_status()
            times = []
            for _ in range(calls):
                started = time.perf_counter()
                http.get(path).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            results[name] = times
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50, help="timed calls of each request")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    with databases(args.backends) as urls, tempfile.TemporaryDirectory() as folder:
        results = {name: measure(url, args.studies, args.calls, Path(folder) / str(n))
                   for n, (name, url) in enumerate(urls.items())}
    names = list(results)
    print(f"\n{args.studies:,} studies; median / 95th percentile in ms, over HTTP\n")
    print(f"| request | {' | '.join(names)} |")
    print(f"|---|{'---:|' * len(names)}")
    for request in REQUESTS:
        cells = [f"{statistics.median(results[name][request]):.1f} / "
                 f"{np.percentile(results[name][request], 95):.1f}" for name in names]
        print(f"| {request} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
