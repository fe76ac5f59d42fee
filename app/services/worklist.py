"""A worklist of scored files: the one order (likeliest pneumonia read first) and the one CSV
that the API, the page and the folder command all write. The page's script keeps a copy of
both for files scored over several requests; tests/app/test_browser.py holds it to this."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from app.display import percent
from app.services.pipeline import FileResult

CSV_COLUMNS = ("rank", "file", "probability", "shown", "label", "flagged", "warnings", "error")


def worklist_order(results: Sequence[FileResult]) -> list[FileResult]:
    """Highest probability first (upload order breaks ties); files not scored last, in
    upload order."""
    scored = sorted((r for r in results if r.prediction is not None),
                    key=lambda r: (-r.prediction.probability, r.index))
    return scored + [r for r in results if r.prediction is None]


def worklist_csv(results: Sequence[FileResult]) -> str:
    """The worklist as CSV, in worklist order, one row per file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, result in enumerate(worklist_order(results), start=1):
        p = result.prediction
        if p is None:
            writer.writerow(["", _cell(result.filename), "", "", "", "", "",
                             _cell(result.error.message if result.error else "")])
            continue
        writer.writerow([rank, _cell(result.filename), f"{p.probability:.6f}",
                         percent(p.probability), p.label, "yes" if p.flagged else "no",
                         _cell("; ".join(p.warnings)), ""])
    return buffer.getvalue()


def _cell(text: str) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas; a file name must not."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
