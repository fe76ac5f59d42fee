"""A worklist of scored files: the one order (highest triage score read first) and the one CSV
that the API, the page and the folder command all write. The page's script keeps a copy of
both for files scored over several requests; tests/services/test_batch.py holds it to this.

Three groups, in this order: films the model judged, highest probability first (one
request has one model and operating point, so this is the triage score's order); films it
cannot judge ("needs a human look": not assessable, app/contract/assessability.py), in
upload order and never ranked by their unvalidated probability; files not scored at all."""

from __future__ import annotations

from collections.abc import Sequence

from app.contract.assessability import LOOK
from app.services.display import csv_row
from app.services.pipeline import FileResult
from app.services.triage import Decision, decision, summary_text

# operating_point: where the threshold a film was judged at comes from (card, site or
# setting: app/contract/site.py), so a worklist says whose operating point flagged it.
CSV_COLUMNS = ("rank", "file", "decision", "triage_score", "probability", "flagged",
               "warnings", "error", "group", "reasons", "operating_point")
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


def worklist_summary(results: Sequence[FileResult]) -> str:
    """'5 files: 2 scored, 1 flagged; 3 not scored.' (app/services/triage.py summary_text)."""
    groups = [group_of(r) for r in results]
    flagged = sum(r.prediction.flagged for r, g in zip(results, groups) if g == "scored")
    return summary_text(len(results), groups.count("scored"), flagged, groups.count("look"),
                        groups.count("error"))


def worklist_csv(results: Sequence[FileResult]) -> str:
    """The worklist as CSV (RFC 4180, comma-separated, "\n" line ends), in worklist order,
    one row per file; every text cell made safe by `csv_cell`."""
    lines = [csv_row(CSV_COLUMNS)]
    for rank, result in enumerate(worklist_order(results), start=1):
        p, group = result.prediction, group_of(result)
        if p is None:
            lines.append(csv_row(["", result.filename, "not scored", "", "", "", "",
                               result.error.message if result.error else "", GROUPS[group],
                               "", ""]))
        elif group == "look":  # no rank, no score, no probability: a person reads it
            lines.append(csv_row(["", result.filename, Decision.NEEDS_HUMAN_LOOK.text, "", "",
                               "no", "; ".join(p.warnings), "", GROUPS[group],
                               " ".join(p.reasons), p.point.source]))
        else:
            lines.append(csv_row([str(rank), result.filename,
                               decision(True, p.flagged).text,
                               p.triage_score_text or "",
                               f"{p.probability:.6f}", "yes" if p.flagged else "no",
                               "; ".join(p.warnings), "", GROUPS[group], "",
                               p.point.source]))
    return "".join(lines)
