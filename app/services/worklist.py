"""A worklist: scored files ordered so that the likeliest pneumonia is read first, and the
CSV that the page, the API and the folder command all write."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from app.schemas import BatchEntry

CSV_COLUMNS = ("rank", "file", "probability", "shown", "label", "flagged", "warnings", "error")


def worklist_order(entries: Sequence[BatchEntry]) -> list[BatchEntry]:
    """Highest probability first (upload order breaks ties); files not scored last."""
    scored = sorted((e for e in entries if e.probability is not None),
                    key=lambda e: (-e.probability, e.index))
    return scored + [e for e in entries if e.probability is None]


def worklist_csv(entries: Sequence[BatchEntry]) -> str:
    """The worklist as CSV, in worklist order, one row per file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, entry in enumerate(worklist_order(entries), start=1):
        scored = entry.probability is not None
        writer.writerow([
            rank if scored else "", _cell(entry.filename),
            f"{entry.probability:.6f}" if scored else "", entry.probability_text or "",
            entry.label or "", "yes" if entry.flagged else "no" if scored else "",
            _cell("; ".join(entry.warnings)), _cell(entry.error.detail if entry.error else ""),
        ])
    return buffer.getvalue()


def _cell(text: str) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas; a file name must not."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
