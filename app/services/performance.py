"""The model's live performance, measured from radiologists' reads (issue 31).

A read (app/store/records.py Finding) is the reference standard of its study; the model's
answer is the study's group when it was read (flagged, routine, or needs a human look), for
the model and version of the film that decided it. Over a window (the last N reads, and
only those since a date), per model and version:

    tp = flagged and read pneumonia          fp = flagged and read no pneumonia
    fn = routine and read pneumonia          tn = routine and read no pneumonia

    sensitivity = tp / (tp + fn)             specificity = tn / (tn + fp)
    PPV = tp / (tp + fp)                     NPV = tn / (tn + fn)
    flagged rate = flagged / every assessable study read (indeterminate reads included)

each with its 95% Wilson interval (app/contract/intervals.py). Studies the model could not
judge (needs a human look) are counted apart and never in a figure; an indeterminate read is
counted apart and is in the flagged rate only. Beside them, the model card's figures at its
operating point (its test split, measured once after the operating point was chosen on
validation; the validation split for a card without one), with the same intervals.

The verdict compares sensitivity and specificity only: they do not depend on how common
pneumonia is, whereas PPV, NPV and the flagged rate move with a site's prevalence and are
shown for reading, not judged. A figure is *below* its validated one when its whole interval
lies below the card's interval (ACR Assess-AI's comparison of a deployed model's concordance
with its validation; the PneumoniaTriageLiveSensitivityLow alert fires on the same rule).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from app.contract.card import ModelCard, read_card
from app.contract.intervals import wilson
from app.store import Finding, JudgedRead, WorklistStore

FIGURES = ("sensitivity", "specificity", "ppv", "npv", "flagged_rate")
FIGURE_NAMES = {"sensitivity": "Sensitivity", "specificity": "Specificity",
                "ppv": "PPV", "npv": "NPV", "flagged_rate": "Flagged rate"}
JUDGED = ("sensitivity", "specificity")  # the figures a verdict compares (prevalence-free)
VERDICT_NAMES = {"no_reads": "No reads yet", "no_reference": "No validated figures",
                 "not_comparable": "Not comparable",
                 "below": "Below the validated figures",
                 "consistent": "Consistent with the validated figures"}
DEFAULT_LAST = 500  # reads in the default window: the gauges' and the page's
MAX_LAST = 100_000
# A finding that is neither side of the 2 x 2 table.
_SIDES = {Finding.PNEUMONIA: True, Finding.NO_PNEUMONIA: False}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Figure:
    """A proportion `successes` / `total`, its value (None when `total` is 0) and its 95%
    Wilson interval [low, high] ([0, 1] when `total` is 0)."""

    successes: int
    total: int
    value: float | None
    low: float
    high: float

    @classmethod
    def of(cls, successes: int, total: int) -> Figure:
        low, high = wilson(successes, total)
        return cls(successes, total, successes / total if total else None, low, high)


@dataclass(frozen=True)
class Table:
    """The 2 x 2 table of assessable studies with a definite read, and the indeterminate
    reads of assessable studies by the model's answer."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    indeterminate_flagged: int = 0
    indeterminate_routine: int = 0

    def figures(self) -> dict[str, Figure]:
        flagged = self.tp + self.fp + self.indeterminate_flagged
        assessed = flagged + self.fn + self.tn + self.indeterminate_routine
        return {"sensitivity": Figure.of(self.tp, self.tp + self.fn),
                "specificity": Figure.of(self.tn, self.tn + self.fp),
                "ppv": Figure.of(self.tp, self.tp + self.fp),
                "npv": Figure.of(self.tn, self.tn + self.fn),
                "flagged_rate": Figure.of(flagged, assessed)}


@dataclass(frozen=True)
class Reference:
    """The validated figures a model's live ones are compared with: where they come from,
    the operating point they were measured at, and the figures."""

    source: str
    threshold: float
    figures: dict[str, Figure]


@dataclass(frozen=True)
class ModelPerformance:
    """One model version's reads in the window and what they measure."""

    model: str | None  # None: studies no model scored (every film refused)
    version: str | None
    thresholds: tuple[float, ...]  # the operating points its films were scored at
    reads: int  # every read of a study it answered
    judged: int  # assessable studies with a definite read: the 2 x 2 table's
    indeterminate: int  # assessable studies read indeterminate
    not_assessable: int  # studies that needed a human look: counted apart
    table: Table
    figures: dict[str, Figure]
    reference: Reference | None
    verdict: str  # no_reads, no_reference, not_comparable, below, consistent
    verdict_text: str
    below: tuple[str, ...] = ()  # the judged figures below their validated interval


@dataclass(frozen=True)
class Report:
    """Every model version's performance over the window (`last` reads, given at or after
    `since`), and when the reads in it were given."""

    last: int
    since: datetime | None
    reads: int
    first_read_at: datetime | None
    last_read_at: datetime | None
    models: list[ModelPerformance] = field(default_factory=list)


class CardShelf:
    """The cards of models in MODEL_DIR, by name and version as the films store them, read
    once each (a version no longer served is read from its folder too); None for a model
    or version without a readable card."""

    def __init__(self, model_dir: Path) -> None:
        self._model_dir = Path(model_dir)
        self.card = lru_cache(maxsize=64)(self._read)

    def _read(self, name: str, version: str) -> ModelCard | None:
        if not (_NAME.fullmatch(name) and version.isdigit()):  # never a path elsewhere
            return None
        try:
            return read_card(self._model_dir / name / version)
        except (OSError, ValueError):  # missing, unreadable, or a card this code refuses
            return None


def reference_of(card: ModelCard) -> Reference | None:
    """The card's figures at its operating point: its test split's confusion matrix (the
    validation split's for a card without a test split), with Wilson intervals."""
    split = "test" if "test" in card.metrics else "validation"
    metrics = card.metrics.get(split)
    if metrics is None:
        return None
    (tn, fp), (fn, tp) = metrics.confusion_matrix
    return Reference(source=f"the model card's {split} split ({metrics.n} films)",
                     threshold=metrics.threshold,
                     figures=Table(tp=tp, fp=fp, fn=fn, tn=tn).figures())


def measure(store: WorklistStore, cards: Callable[[str, str], ModelCard | None], *,
            last: int = DEFAULT_LAST, since: datetime | None = None) -> Report:
    """The report over the newest `last` reads given at or after `since` (aware)."""
    reads = store.judged_reads(since=since, last=last)
    by_model: dict[tuple[str | None, str | None], list[JudgedRead]] = {}
    for read in reads:
        by_model.setdefault((read.model_name, read.model_version), []).append(read)
    models = [_model(name, version, theirs, cards)
              for (name, version), theirs in sorted(by_model.items(), key=_by_name)]
    return Report(last=last, since=since, reads=len(reads),
                  first_read_at=min((r.read_at for r in reads), default=None),
                  last_read_at=max((r.read_at for r in reads), default=None), models=models)


def _by_name(item: tuple[tuple[str | None, str | None], list[JudgedRead]]) -> tuple:
    (name, version), _ = item
    return (name is None, name or "", int(version) if version and version.isdigit() else 0)


def table_of(reads: Iterable[JudgedRead]) -> tuple[Table, int]:
    """The 2 x 2 table of `reads`, and how many were of studies the model could not judge."""
    counts = dict.fromkeys(("tp", "fp", "fn", "tn", "indeterminate_flagged",
                            "indeterminate_routine"), 0)
    not_assessable = 0
    for read in reads:
        if read.model_group not in ("flagged", "routine"):
            not_assessable += 1
            continue
        flagged = read.model_group == "flagged"
        side = _SIDES.get(read.finding)
        if side is None:
            counts["indeterminate_flagged" if flagged else "indeterminate_routine"] += 1
        else:
            counts[("t" if flagged == side else "f") + ("p" if flagged else "n")] += 1
    return Table(**counts), not_assessable


def _model(name: str | None, version: str | None, reads: list[JudgedRead],
           cards: Callable[[str, str], ModelCard | None]) -> ModelPerformance:
    table, not_assessable = table_of(reads)
    figures = table.figures()
    card = cards(name, version) if name and version else None
    reference = None if card is None else reference_of(card)
    thresholds = tuple(sorted({r.threshold for r in reads if r.threshold is not None}))
    judged = table.tp + table.fp + table.fn + table.tn
    indeterminate = table.indeterminate_flagged + table.indeterminate_routine
    verdict, text, below = _verdict(judged, figures, reference, thresholds)
    return ModelPerformance(model=name, version=version, thresholds=thresholds,
                            reads=len(reads), judged=judged, indeterminate=indeterminate,
                            not_assessable=not_assessable, table=table, figures=figures,
                            reference=reference, verdict=verdict, verdict_text=text,
                            below=below)


def _verdict(judged: int, figures: dict[str, Figure], reference: Reference | None,
             thresholds: tuple[float, ...]) -> tuple[str, str, tuple[str, ...]]:
    if not judged:
        return "no_reads", "No assessable study in this window has a definite read yet.", ()
    if reference is None:
        return ("no_reference", "No validated figures to compare with: the model card of "
                "this version is not in the model folder.", ())
    if any(abs(t - reference.threshold) > 1e-9 for t in thresholds):
        return ("not_comparable", "Scored at another operating point than the validated "
                f"figures' ({reference.threshold:.4f}): they do not apply.", ())
    below = tuple(name for name in JUDGED if figures[name].total
                  and figures[name].high < reference.figures[name].low)
    if below:
        words = " and ".join(FIGURE_NAMES[name].lower() for name in below)
        return ("below", f"The {words} interval lies wholly below the card's. Review the "
                "recent studies and the drift figures; consider stopping the model's use.",
                below)
    return ("consistent", "No sensitivity or specificity interval lies wholly below the "
            f"card's ({judged} assessable studies with a definite read).", ())
