"""DIR/report.html of a local validation: one self-contained page (inline CSS in the app's
look, figures as PNG data URIs drawn with matplotlib's Agg backend, thumbnails as PNG data
URIs), readable from the folder without the server. It opens with a plain summary, then the
tables. Every number comes from the Validation written beside it (validation.json), rounded
by the app's one rule (app/services/display.py `decimal`), except the ROC curve, drawn from
the used films' probabilities."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
from jinja2 import Environment, select_autoescape

from app.contract.card import ModelCard
from app.contract.validation import ConfidentError, Proportion, Validation
from app.services.display import count, decimal

FIGURE_NAMES = {"sensitivity": "Sensitivity", "specificity": "Specificity",
                "ppv": "PPV (positive predictive value)",
                "npv": "NPV (negative predictive value)"}
FACET_NAMES = {"equipment": "Manufacturer and model", "view_position": "View position",
               "age_band": "Age", "sex": "Sex", "body_part": "Body part",
               "pixel_spacing_band": "Pixel spacing", "file_kind": "File kind"}
VERDICTS = {"inside": "as the card says", "above": "better than the card says",
            "below": "worse than the card says"}
_UID = re.compile(r"\d+(\.\d+){3,}")  # four or more dotted numbers: a DICOM UID
TEMPLATE = Path(__file__).with_name("validation_report.html")  # shipped beside it


def write_report(path: Path, validation: Validation, y: np.ndarray, p: np.ndarray,
                 thumbnails: dict[int, str], card: ModelCard) -> Path:
    """Write the report of `validation` to `path` (UTF-8 HTML). `y`, `p`: (N,) labels and
    served probabilities of its used films (the ROC curve); `thumbnails`: index in
    validation.confident_errors -> PNG data URI of its film."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters.update(decimal=decimal, count=count)
    context = _context(validation, y, p, thumbnails, card)
    html = env.from_string(TEMPLATE.read_text()).render(card=card, **context)
    Path(path).write_text(html, encoding="utf-8")
    return Path(path)


def _context(v: Validation, y: np.ndarray, p: np.ndarray, thumbnails: dict[int, str],
             card: ModelCard) -> dict:
    point = v.card_operating_point
    splits = sorted({f.split for f in point.card}, key=["validation", "test"].index)
    rows = [{"name": FIGURE_NAMES[name], "site": getattr(point, name),
             "cells": [next(f for f in point.card if f.figure == name and f.split == split)
                       for split in splits]}
            for name in FIGURE_NAMES]
    shown = "test" if "test" in splits else (splits[0] if splits else None)
    verdict_lines = [{"name": FIGURE_NAMES[f.figure].split(" (")[0].lower().replace(
        "ppv", "PPV").replace("npv", "NPV"), "value": _pct(getattr(point, f.figure)),
        "verdict": f.verdict or "", "words": _verdict_words(f.verdict, f.split)}
        for f in point.card if f.split == shown]
    weak = [f"{_facet_name(facet.facet)} {g.value} ({', '.join(g.below)})"
            for facet in v.subgroups for g in facet.subgroups if g.below]
    facets = [{"name": _facet_name(facet.facet), "subgroups": facet.subgroups}
              for facet in v.subgroups if any(g.value != "unknown" for g in facet.subgroups)]
    unstated = [_facet_name(facet.facet).lower() for facet in v.subgroups
                if all(g.value == "unknown" for g in facet.subgroups)]
    test = card.metrics.get("test")
    return {"v": v, "site": v.site_operating_point, "splits": splits, "card_rows": rows,
            "verdict_lines": verdict_lines, "weak": weak, "facets": facets,
            "unstated": unstated, "card_auc": test.roc_auc if test else None,
            "ci": _ci, "pct": _pct, "roc": _roc_png(v, y, p),
            "reliability": _reliability_png(v),
            "errors": [{"kind": e.kind.replace("_", " "), "label": e.label,
                        "probability": e.probability, "thumbnail": thumbnails.get(i),
                        "where": _where(e)}
                       for i, e in enumerate(v.confident_errors)]}


def _where(error: ConfidentError) -> str:
    """How the page names a film: its line in the labels file, else its path in the labels
    folder with any UID in it hidden (an export may name files by SOP Instance UID)."""
    if error.line is not None:
        return f"line {error.line}"
    return _UID.sub("[UID]", error.source)


def _facet_name(facet: str) -> str:
    return FACET_NAMES.get(facet, facet)


def _verdict_words(verdict: str | None, split: str) -> str:
    if verdict is None:
        return "not measurable here"
    return f"{VERDICTS[verdict]} ({verdict} its {split} interval)"


def _pct(found: Proportion) -> str:
    return "–" if found.value is None else f"{found.value:.3f}"


def _ci(found: Proportion) -> str:
    """'0.951 (0.925–0.969), 354/372'."""
    return (f"{_pct(found)} ({found.low:.3f}–{found.high:.3f}), "
            f"{found.successes}/{found.total}")


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is written by a command
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(5, 4.2), dpi=110)


def _png(plt, fig) -> str:
    sink = io.BytesIO()
    fig.tight_layout()
    fig.savefig(sink, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(sink.getvalue()).decode("ascii")


def _roc_png(v: Validation, y: np.ndarray, p: np.ndarray) -> str:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    plt, fig, ax = _figure()
    ax.plot(fpr, tpr, color="#1f5fbf", label=f"this site, AUC {v.auc.value:.3f}")
    ax.plot([0, 1], [0, 1], color="#d9dee7", linestyle="--")
    for point, name, marker in ((v.card_operating_point, "card's operating point", "o"),
                                (v.site_operating_point, "site operating point", "s")):
        ax.plot(1 - point.specificity.value, point.sensitivity.value, marker, color="#b3261e"
                if marker == "o" else "#1e7d3b", label=name)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01),
           title="ROC curve")
    ax.legend(loc="lower right", fontsize=8)
    return _png(plt, fig)


def _reliability_png(v: Validation) -> str:
    bins = [b for b in v.calibration.bins if b.n]
    plt, fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="#d9dee7", linestyle="--", label="perfect calibration")
    ax.plot([b.mean_probability for b in bins], [b.observed_rate for b in bins], "o-",
            color="#1f5fbf", label=f"this site, ECE {v.calibration.ece:.3f}")
    for b in bins:
        ax.annotate(str(b.n), (b.mean_probability, b.observed_rate), fontsize=7,
                    textcoords="offset points", xytext=(4, -10), color="#5b6678")
    ax.set(xlabel="served probability (bin mean)", ylabel="share labelled pneumonia",
           xlim=(0, 1), ylim=(0, 1.01), title="Reliability diagram (films per bin)")
    ax.legend(loc="upper left", fontsize=8)
    return _png(plt, fig)
