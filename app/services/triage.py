"""The triage decision and the one number shown with it, for every place a person reads.

A film is *flagged for priority read* when the model's probability is at or above the
model's operating point, *not flagged* below it, and *needs a human look* when the model
cannot judge it (app/contract/assessability.py). These are triage words, never a diagnosis.

The number shown with the decision is the **triage score** (app/contract/triage_score.py,
computed once on the prediction): the probability rescaled piecewise-linearly so that every
model's operating point sits at 0.5 (torchxrayvision's `op_norm`, Cohen et al.,
"TorchXRayVision", MIDL 2022). Its meaning therefore agrees with the
flag whatever the model: at or above 50 is flagged, below 50 is not. A compact model whose
operating point is 0.96 no longer shows a "51% probability" beside "not flagged". The
calibrated probability stays available as a labelled detail.
"""

from __future__ import annotations

from enum import StrEnum

from app.contract.assessability import LOOK
from app.contract.card import ModelCard


class Decision(StrEnum):
    """The three outcomes of triage, as the API's `decision` field names them."""

    FLAGGED = "flagged"
    NOT_FLAGGED = "not_flagged"
    NEEDS_HUMAN_LOOK = "needs_human_look"

    @property
    def text(self) -> str:
        """The words a person reads: 'flagged for priority read', 'not flagged' or 'needs a
        human look'."""
        return DECISION_TEXT[self]


DECISION_TEXT = {Decision.FLAGGED: "flagged for priority read",
                 Decision.NOT_FLAGGED: "not flagged",
                 Decision.NEEDS_HUMAN_LOOK: LOOK}


def decision(assessable: bool, flagged: bool) -> Decision:
    """The decision for a film that was read: not assessable wins over any flag (a film the
    model cannot judge is never flagged, app/services/pipeline.py)."""
    if not assessable:
        return Decision.NEEDS_HUMAN_LOOK
    return Decision.FLAGGED if flagged else Decision.NOT_FLAGGED


def probability_note(card: ModelCard) -> str:
    """One line on what the calibrated probability means, from the card: what it was
    calibrated on and that set's share of pneumonia, which is not a clinic's."""
    counts = card.data.counts.get("validation", {}) if card.data.counts else {}
    total = sum(counts.values())
    share = (f", {counts.get(card.positive_class, 0) / total:.0%} of them with pneumonia"
             if total else "")
    if card.calibration is None:
        return ("The model's raw output, not calibrated: read it as a ranking, not as a "
                "chance.")
    return (f"Calibrated ({card.calibration.method} scaling) on the validation films"
            f"{share}: a chance among films like those, not for a patient in another "
            "population.")


def summary_text(files: int, scored: int, flagged: int, look: int, not_scored: int) -> str:
    """The counts of a batch as people read them: '5 files: 2 scored, 1 flagged; 3 not
    scored.' (`scored`: films the model judged; `look`: read but not assessable;
    `not_scored`: refused or not read). The page's script says the same
    (static/upload.js `summaryText`; tests/web/test_browser.py compares them)."""
    text = f"{files} file{'' if files == 1 else 's'}: {scored} scored, {flagged} flagged"
    if look:
        text += f"; {look} {'needs' if look == 1 else 'need'} a human look"
    if not_scored:
        text += f"; {not_scored} not scored"
    return text + "."
