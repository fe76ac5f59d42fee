"""How numbers are shown to people: one home for each display rule."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup


def percent(probability: float) -> str:
    """'43.2%'; never '100.0%' or '0.0%', because the model is never certain.

    The API returns this text next to the number, so the page, its script and the worklist
    all show what this function says.
    """
    if probability > 0.999:
        return ">99.9%"
    if probability < 0.001:
        return "<0.1%"
    return f"{probability * 100:.1f}%"


def when(moment: datetime, seconds: bool = False) -> str:
    """'2025-03-01 08:00' in UTC, as the worklist's pages show times (an aware datetime from
    either database, whatever its session's time zone)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def local_time(moment: datetime | None, seconds: bool = False) -> Markup:
    """A time as the pages show it: `when`'s UTC text in a <time class="local"> element
    carrying the moment in ISO 8601, which the pages' script (static/localtime.js
    `localText`, the same format) rewrites in the browser's time zone. Empty for None."""
    if moment is None:
        return Markup("")
    iso = moment.astimezone(UTC).isoformat()
    return Markup('<time class="local" datetime="{}"{}>{}</time>').format(
        iso, Markup(" data-seconds") if seconds else "", when(moment, seconds))


def decimal(value: float | None, places: int = 3) -> str:
    """A metric, rate, threshold or score as the report and the model pages show it:
    '0.176', '–' where there is none (None, or NaN from a run that diverged). Three places
    because one film of the test split (624 films) moves its accuracy by 0.0016: a fourth
    place is below one film, two places hide differences of several. `places=2` only for
    figures published with two (the original study's): '0.62', not a precision it never
    gave. The raw value stays in models/report.json and on the model card."""
    if value is None or value != value:  # NaN is not equal to itself
        return "–"
    return f"{value:.{places}f}"


def count(value: int | None) -> str:
    """'196,821': thousands grouped, as the README's tables write them; '–' for None."""
    return "–" if value is None else f"{value:,}"


def csv_row(cells: Sequence[Any]) -> str:
    """One CSV line (RFC 4180, "\\n" line end), every cell through `csv_cell`: the one row
    writer of every CSV the app writes (the batch's and the stored worklist's)."""
    return ",".join(csv_cell(str(cell)) for cell in cells) + "\n"


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
    (static/upload.js `csvCell`; tests/web/test_browser.py compares them)."""
    if any(part[:1] in _FORMULA_STARTS for part in _SEPARATORS.split(text)):
        text = "'" + text
    if _NEEDS_QUOTES.search(text):
        text = '"' + text.replace('"', '""') + '"'
    return text
