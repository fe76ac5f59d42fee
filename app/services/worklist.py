"""A worklist of scored files: the one order (likeliest pneumonia read first) and the one CSV
that the API, the page and the folder command all write. The page's script keeps a copy of
both for files scored over several requests; tests/services/test_worklist.py holds it to this.

Three groups, in this order: films the model judged, highest probability first; films it
cannot judge ("needs a human look": not assessable, app/contract/assessability.py), in
upload order and never ranked by their unvalidated probability; files not scored at all."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from app.contract.assessability import LOOK
from app.display import percent
from app.services.pipeline import FileResult

CSV_COLUMNS = ("rank", "file", "probability", "shown", "label", "flagged", "warnings", "error",
               "group", "reasons")
GROUPS = {"scored": "scored", "look": LOOK, "error": "not scored"}


def group_of(result: FileResult) -> str:
    """'scored', 'look' (not assessable) or 'error'."""
    if result.prediction is None:
        return "error"
    return "scored" if result.prediction.assessable else "look"


def worklist_order(results: Sequence[FileResult]) -> list[FileResult]:
    """Judged films by highest probability first (upload order breaks ties); then films that
    need a human look, then files not scored, each in upload order."""
    scored = sorted((r for r in results if group_of(r) == "scored"),
                    key=lambda r: (-r.prediction.probability, r.index))
    return scored + [r for r in results if group_of(r) == "look"] + \
        [r for r in results if group_of(r) == "error"]


def worklist_csv(results: Sequence[FileResult]) -> str:
    """The worklist as CSV, in worklist order, one row per file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, result in enumerate(worklist_order(results), start=1):
        p, group = result.prediction, group_of(result)
        if p is None:
            writer.writerow(["", _cell(result.filename), "", "", "", "", "",
                             _cell(result.error.message if result.error else ""),
                             GROUPS[group], ""])
        elif group == "look":  # no rank, no probability, no label: a person reads it
            writer.writerow(["", _cell(result.filename), "", "", "", "no",
                             _cell("; ".join(p.warnings)), "", GROUPS[group],
                             " ".join(p.reasons)])
        else:
            writer.writerow([rank, _cell(result.filename), f"{p.probability:.6f}",
                             percent(p.probability), p.label, "yes" if p.flagged else "no",
                             _cell("; ".join(p.warnings)), "", GROUPS[group], ""])
    return buffer.getvalue()


def _cell(text: str) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas; a file name must not."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
