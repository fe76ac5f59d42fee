"""A worklist of scored files: the one order (likeliest pneumonia read first) and the one CSV
that the API, the page and the folder command all write. The page's script keeps a copy of
both for files scored over several requests; tests/app/test_browser.py holds it to this."""

from __future__ import annotations

import re
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
    """The worklist as CSV (RFC 4180, comma-separated, "\n" line ends), in worklist order,
    one row per file; every text cell made safe by `csv_cell`."""
    lines = [_row(CSV_COLUMNS)]
    for rank, result in enumerate(worklist_order(results), start=1):
        p = result.prediction
        if p is None:
            lines.append(_row(["", result.filename, "", "", "", "", "",
                               result.error.message if result.error else ""]))
            continue
        lines.append(_row([str(rank), result.filename, f"{p.probability:.6f}",
                           percent(p.probability), p.label, "yes" if p.flagged else "no",
                           "; ".join(p.warnings), ""]))
    return "".join(lines)


def _row(cells: Sequence[str]) -> str:
    return ",".join(csv_cell(cell) for cell in cells) + "\n"


# OWASP "CSV Injection": a cell, or any part of it that a spreadsheet may split off at a
# separator (',' ';' or tab, depending on the locale), starting with one of these runs as a
# formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SEPARATORS = re.compile(r"[,;\t]")
_NEEDS_QUOTES = re.compile(r"[,;\t\"\r\n]")


def csv_cell(text: str) -> str:
    """One CSV cell, safe in any spreadsheet locale: prefixed with ' when it or any of its
    separator-split parts could start a formula, and quoted (RFC 4180, "" for ") when it
    holds a separator, a quote or a line break. The page's script has the same rule
    (static/upload.js `csvCell`; tests/app/test_browser.py compares them)."""
    if any(part[:1] in _FORMULA_STARTS for part in _SEPARATORS.split(text)):
        text = "'" + text
    if _NEEDS_QUOTES.search(text):
        text = '"' + text.replace('"', '""') + '"'
    return text
