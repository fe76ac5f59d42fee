"""The worklist store with 100,000 studies: the first page of the list and the cost of
storing one entry, on embedded SQLite and on a throw-away PostgreSQL (tests/pg.py).

    python -m benchmarks.worklist_store [--studies 100000] [--calls 50] [--stores 200]

Run from the repository root. The table is filled in bulk (the rows are what add_films
writes: one to three films per study, their summaries from app/store/priority.py), then
each measure is timed through WorklistStore, as the routes call it, and printed as the
median and 95th percentile in milliseconds. PostgreSQL runs with fsync on, and SQLite with
synchronous=FULL, as served.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, text

from app.store import FilmRecord, Status, WorklistStore, upgrade
from app.store.models import Film, Study
from app.store.priority import summarise
from tests.pg import throwaway_cluster

NOW = datetime(2025, 3, 31, tzinfo=UTC)
CHUNK = 5_000
_STATUSES = [Status.NEW] * 12 + [Status.OPENED] * 4 + [Status.REPORTED] * 3 + [Status.DISMISSED]


def _uid(rng: random.Random) -> str:
    return f"2.25.{rng.getrandbits(126)}"


def _film(rng: random.Random, study: str, received: datetime, frontal: bool) -> FilmRecord:
    refused = rng.random() < 0.03  # a CT, a damaged file: listed with its reason
    probability = None if refused else rng.betavariate(0.7, 1.3)
    assessable = not refused and rng.random() > 0.07
    return FilmRecord(
        study_instance_uid=study, sop_instance_uid=_uid(rng), series_instance_uid=_uid(rng),
        received_at=received, scored_at=received + timedelta(seconds=1),
        source=rng.choice(["upload", "dicom:CR_ROOM1", "dicom:DX_WARD3"]),
        modality="DX", view_position=rng.choice(["PA", "AP"]) if frontal else "LL",
        body_part="CHEST", model_name="pneumonia", model_version="3",
        probability=probability, threshold=0.5,
        flagged=None if probability is None else probability >= 0.5, assessable=assessable,
        reasons=() if assessable else ("rotated",), warnings=(),
        error_code="not_a_radiograph" if refused else None,
        error_detail="the file is a CT slice" if refused else None)


def _study_rows(rng: random.Random, study_id: int) -> tuple[dict[str, Any], list[dict]]:
    uid = _uid(rng)
    received = NOW - timedelta(seconds=rng.uniform(0, 30 * 86_400))
    films = [_film(rng, uid, received + timedelta(seconds=n), frontal=n == 0)
             for n in range(rng.choice([1, 1, 2, 3]))]
    summary = summarise(films)
    study = {"id": study_id, "study_instance_uid": uid, "accession_number": f"A{study_id}",
             "patient_age": f"{rng.randint(0, 17):03d}Y", "patient_sex": rng.choice("MF"),
             "study_date": received.date(), "study_time": received.time(),
             "source": films[0].source, "received_at": received,
             "last_received_at": films[-1].received_at, "status": rng.choice(_STATUSES),
             "priority": summary.priority, "triage_score": summary.triage_score,
             "flagged": summary.flagged, "film_count": summary.film_count,
             "sort_group": int(summary.group), "sort_rank": summary.rank}
    rows = []
    for record in films:
        row = asdict(record)
        for name in ("study_instance_uid", "accession_number", "patient_age", "patient_sex",
                     "study_date", "study_time"):
            del row[name]
        rows.append({**row, "study_id": study_id, "reasons": list(record.reasons),
                     "warnings": list(record.warnings)})
    return study, rows


def fill(store: WorklistStore, studies: int, seed: int = 18) -> None:
    """`studies` studies in bulk, in one transaction per CHUNK."""
    rng = random.Random(seed)
    for start in range(1, studies + 1, CHUNK):
        pairs = [_study_rows(rng, study_id)
                 for study_id in range(start, min(start + CHUNK, studies + 1))]
        with store.engine.begin() as connection:
            connection.execute(insert(Study), [study for study, _ in pairs])
            connection.execute(insert(Film), [row for _, rows in pairs for row in rows])
    with store.engine.connect() as connection:
        if connection.dialect.name == "postgresql":  # explicit ids: move the sequence on
            connection.execute(text("SELECT setval(pg_get_serial_sequence('studies', 'id'),"
                                    " (SELECT max(id) FROM studies))"))
            connection.commit()
            # autovacuum would do this within a minute of such a load
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE"))


def timed(function: Callable[[], object], calls: int, warm_up: int = 3) -> list[float]:
    """Milliseconds of each of `calls` calls, after `warm_up` untimed ones."""
    for _ in range(warm_up):
        function()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(url: str, studies: int, calls: int, stores: int) -> dict[str, list[float]]:
    upgrade(url)
    store = WorklistStore(url)
    try:
        started = time.perf_counter()
        fill(store, studies)
        results = {"fill (s, once)": [time.perf_counter() - started]}
        first = store.entries(limit=50)
        assert first.total == studies and len(first.entries) == 50
        results["entries(), first page of 50"] = timed(lambda: store.entries(limit=50), calls)
        results["entries(status=new), first page"] = timed(
            lambda: store.entries(status="new", limit=50), calls)
        results["entries(received in the last day), first page"] = timed(
            lambda: store.entries(received_from=NOW - timedelta(days=1), limit=50), calls)
        results["entries(), next page by cursor"] = timed(
            lambda: store.entries(limit=50, cursor=first.next_cursor), calls)
        rng = random.Random(7)
        results["add_films(), one study of 2 films"] = timed(lambda: store.add_films(
            [_film(rng, uid, NOW, frontal=n == 0) for uid in [_uid(rng)] for n in range(2)]),
            stores)
        return results
    finally:
        store.close()


@contextmanager
def databases(backends: list[str]) -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="worklist-bench-") as folder:
        urls = {"SQLite": f"sqlite:///{Path(folder) / 'worklist.db'}"}
        if "postgresql" not in backends:
            yield {name: url for name, url in urls.items() if "sqlite" in backends}
            return
        with throwaway_cluster(durable=True) as cluster:
            urls["PostgreSQL 15"] = cluster.create_database("worklist")
            yield {name: url for name, url in urls.items()
                   if name == "PostgreSQL 15" or "sqlite" in backends}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50, help="timed calls of each read")
    parser.add_argument("--stores", type=int, default=200, help="timed add_films calls")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    with databases(args.backends) as urls:
        results = {name: measure(url, args.studies, args.calls, args.stores)
                   for name, url in urls.items()}
    names = list(results)
    print(f"\n{args.studies:,} studies; median / 95th percentile in ms\n")
    print(f"| measure | {' | '.join(names)} |")
    print(f"|---|{'---|' * len(names)}")
    for measure_name in results[names[0]]:
        cells = []
        for name in names:
            values = results[name][measure_name]
            cells.append(f"{values[0]:.0f} s" if len(values) == 1 else
                         f"{statistics.median(values):.1f} / {np.percentile(values, 95):.1f}")
        print(f"| {measure_name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
