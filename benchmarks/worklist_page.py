"""The worklist page in a real browser with 2,000 studies (issue 31): how long headless
Chromium takes from navigating to /worklist until the first page's rows are on the screen,
its times localised, and the keyboard ready.

    python -m benchmarks.worklist_page [--studies 2000] [--loads 30]

Run from the repository root (Debian's chromium, Playwright). The embedded SQLite store is
filled in bulk as benchmarks/worklist_store.py fills it (one to three films per study), half
the studies with a radiologist's read; then the real server (`python -m app`) serves the
page and Chromium loads it `--loads` times, each in a fresh page, after three untimed
loads. Printed: the median and 95th percentile, in ms, of the server's answer (request to
last byte, the browser's navigation timing), DOMContentLoaded, the load event, and the
wall clock from `goto` until the first page's last row is rendered with its time in the
browser's zone and a row holds the keyboard's place.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select

from app.store import WorklistStore, upgrade
from app.store.models import Study, StudyRead
from app.store.priority import Group
from benchmarks.worklist_store import NOW, fill
from tests.servers import server_process
from tests.web.conftest import CHROMIUM_FLAGS

PAGE_SIZE = 100  # app/web/routes/worklist_pages.py PAGE_SIZE: the page's first rows
_FINDINGS = ["pneumonia", "no_pneumonia", "no_pneumonia", "indeterminate"]
# The first page is rendered: its last row is there, its time localised, a row selected.
_RENDERED = (f"document.querySelectorAll('#worklist-table tr.entry').length >= {PAGE_SIZE}"
             " && document.querySelector('#worklist-table tr.entry:last-of-type time.local')"
             "?.dataset.localised && document.querySelector('tr.entry.selected') !== null")


def fill_reads(store: WorklistStore, share: float = 0.5, seed: int = 31) -> int:
    """A read for `share` of the studies, as set_read would store it; how many."""
    rng = random.Random(seed)
    with store.engine.begin() as connection:
        studies = connection.execute(select(Study.id, Study.sort_group, Study.received_at)).all()
        rows = [{"study_id": s.id, "finding": rng.choice(_FINDINGS), "read_by": "dr.bench",
                 "read_at": s.received_at + timedelta(hours=rng.uniform(0.1, 8)),
                 "model_group": Group(s.sort_group).label, "model_name": "pneumonia",
                 "model_version": "3", "threshold": 0.5}
                for s in studies if rng.random() < share]
        connection.execute(insert(StudyRead), rows)
    return len(rows)


def measure(studies: int, loads: int, folder: Path) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    state = folder / "state"
    state.mkdir(parents=True)
    url = f"sqlite:///{state / 'worklist.db'}"
    upgrade(url)
    store = WorklistStore(url)
    try:
        fill(store, studies)
        fill_reads(store)
    finally:
        store.close()
    # The bulk fill's studies arrived in March 2025: retention must not delete them on start.
    settings = {"decode_workers": "0", "offered_models": "[]",
                "worklist_retention_days": "36500"}
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    results: dict[str, list[float]] = {"server answer (request to last byte)": [],
                                       "DOMContentLoaded": [], "load event": [],
                                       "first page rendered (wall clock)": []}
    with server_process(folder / "server.log", state, **settings) as (base, _), \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=CHROMIUM_FLAGS)
        try:
            for n in range(loads + 3):
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                started = time.perf_counter()
                page.goto(base + "/worklist", wait_until="domcontentloaded")
                page.wait_for_function(_RENDERED, polling="raf", timeout=30_000)
                wall = (time.perf_counter() - started) * 1000
                timing = page.evaluate("() => { const t = performance.getEntriesByType("
                                       "'navigation')[0]; return [t.responseEnd - t.requestStart,"
                                       " t.domContentLoadedEventEnd, t.loadEventEnd]; }")
                assert page.locator("#worklist-count").inner_text().startswith(
                    f"{studies} studies")
                page.close()
                if n >= 3:  # warm-up loads untimed
                    for name, value in zip(results, [*timing, wall]):
                        results[name].append(value)
        finally:
            browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=2_000)
    parser.add_argument("--loads", type=int, default=30, help="timed page loads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="worklist-page-") as folder:
        results = measure(args.studies, args.loads, Path(folder))
    print(f"\n{args.studies:,} studies (half read), first page of {PAGE_SIZE} rows, "
          f"{args.loads} loads in headless Chromium; ms\n")
    print("| measure | median | 95th percentile |")
    print("|---|---:|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.0f} | "
              f"{np.percentile(values, 95):.0f} |")
    print(f"\n(studies received up to {NOW:%Y-%m-%d}; the page shows them in the browser's "
          "time zone)")


if __name__ == "__main__":
    main()
