"""PNG figures for the report: confusion matrices, ROC curves, training curves."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from app.contract.card import CLASS_NAMES  # noqa: E402

# Characters of a confusion matrix's title per line: what its 3.6-inch figure holds at
# 10 pt ("Model 8 (seed 44), test, threshold 0.964" is 40 and was cut off on one line).
_CONFUSION_TITLE_WIDTH = 30


def confusion_matrix_figure(matrix: list[list[int]], title: str, path: Path) -> Path:
    """A 2x2 confusion matrix (rows: true NORMAL, PNEUMONIA; columns: predicted) as a
    360x320 px PNG at `path`, the counts written in their cells. The title wraps and the
    layout engine fits title, labels and ticks inside the figure: nothing is cut off."""
    counts = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=100, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.08, h_pad=0.08)  # inches: a margin round the text
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        dark = value > counts.max() / 2
        ax.text(col, row, str(value), ha="center", va="center", fontsize=13,
                color="white" if dark else "black")
    ax.set_xticks([0, 1], labels=CLASS_NAMES)
    ax.set_yticks([0, 1], labels=CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(textwrap.fill(title, _CONFUSION_TITLE_WIDTH), fontsize=10)
    return _save(fig, path)


def full_confusion_title(number: int, name: str) -> str:
    """The title of a full-data experiment's confusion matrix (threshold 0.5)."""
    return f"Model {number} ({name}), test"


def stronger_confusion_title(number: int, seed: int, threshold: float) -> str:
    """The title of a stronger model's confusion matrix, at its seed's operating point."""
    return f"Model {number} (seed {seed}), test, threshold {threshold:.3f}"


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]], path: Path) -> Path:
    """curves: label -> (labels, probabilities, auc)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=100)
    for name, (labels, probabilities, auc) in curves.items():
        if auc is None:
            continue
        fpr, tpr, _ = roc_curve(labels, probabilities)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", linewidth=1.4)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_title("ROC curves on the test split", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def training_curves_figure(histories: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """One row per experiment: loss and accuracy per epoch, training (augmented) vs validation."""
    rows = max(1, len(histories))
    fig, axes = plt.subplots(rows, 2, figsize=(8, 2.1 * rows), dpi=90, squeeze=False)
    for (name, history), (loss_ax, acc_ax) in zip(histories.items(), axes):
        for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            epochs = np.arange(1, len(history.get(key, [])) + 1)
            ax.plot(epochs, history.get(key, []), label="train (augmented)")
            if f"val_{key}" in history:
                ax.plot(epochs, history[f"val_{key}"], label="validation")
            ax.set_title(f"{name}: {key}", fontsize=9)
            ax.tick_params(labelsize=7)
        loss_ax.legend(fontsize=7)
    axes[-1][0].set_xlabel("epoch")
    axes[-1][1].set_xlabel("epoch")
    return _save(fig, path)


def reliability_figure(curves: dict[str, dict], path: Path) -> Path:
    """Observed pneumonia frequency against mean predicted probability per bin."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=100)
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect")
    for name, bins in curves.items():
        points = [(c, f) for c, f in zip(bins["confidence"], bins["frequency"]) if c is not None]
        ax.plot(*zip(*points), marker="o", label=f"{name} (ECE {bins['ece']:.3f})")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency of pneumonia")
    ax.set_title("Reliability, test split", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:  # a constrained figure lays itself out
        fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
