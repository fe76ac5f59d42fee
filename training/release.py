"""A trained experiment -> a served model version: MODEL_DIR/<name>/<version>/ with the
SavedModel (calibration inside), its card, its input guard, its drift reference and its
per-file test predictions.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.contract.card import CLASS_NAMES
from app.contract.drift import DriftReference
from training import figures
from training.config import RunConfig
from training.data import Arrays, Split
from training.experiments import EXPORT_NAMES, EXPORTED_EXPERIMENT
from training.model_card import build_card
from training.train import TrainedModel
from training.trust import Trust, assess

PREDICTIONS_FILE = "test_predictions.csv"  # beside the card: one per exported version


def next_version(model_root: Path) -> int:
    """One more than the highest numbered version folder, 1 for a new model."""
    taken = [int(p.name) for p in Path(model_root).glob("*") if p.name.isdigit()]
    return max(taken, default=0) + 1


def export_experiment(config: RunConfig, trained: TrainedModel, entry: dict, arrays: Arrays,
                      parts: dict[str, Split], out: Path, log: Callable[[str], None], *,
                      protocol: str, trust: Trust | None = None) -> tuple[dict, dict]:
    """Export experiment `entry` (evaluate_experiment's) as OUT/<its name>/<version>/;
    `trust` when the caller already assessed the model. Returns report.json's
    `exported_model` and `trust` entries."""
    from training.export import export_saved_model  # needs TensorFlow

    trust = trust or assess(trained.model, arrays, config.target_sensitivity)
    name = EXPORT_NAMES[entry["number"]]
    version = config.model_version or next_version(out / name)
    card = build_card(config, name, version, entry, trained.model, parts, arrays, trust,
                      protocol)
    version_dir = export_saved_model(trained.model, out / name / str(version),
                                     force=config.force, calibration=trust.platt)
    card.write(version_dir)
    trust.guard.write(version_dir)
    # What the app's drift gauges compare recent films with (app/contract/drift.py).
    DriftReference.of(trust.calibrated["validation"], arrays.x_val, trust.guard).write(
        version_dir)
    write_predictions(version_dir / PREDICTIONS_FILE, parts["test"], trust.calibrated["test"],
                      trust.raw["test"])
    suffix = "" if entry["number"] == EXPORTED_EXPERIMENT else f"_{entry['number']}"
    figure = figures.reliability_figure(
        {"raw": trust.reliability["test"]["raw"],
         "calibrated": trust.reliability["test"]["calibrated"]},
        out / "figures" / f"reliability{suffix}.png")
    op = trust.operating_point
    log(f"operating point {op['threshold']:.3f} for sensitivity >= {op['target_sensitivity']}: "
        f"validation sensitivity {op['validation']['sensitivity']:.3f}, specificity "
        f"{op['validation']['specificity']:.3f}; test {op['test']['sensitivity']:.3f} / "
        f"{op['test']['specificity']:.3f}; guard flags {trust.guard_false_alarms:.1%} of "
        "validation")
    exported = {"name": name, "version": version, "experiment": entry["number"],
                "path": str(version_dir.relative_to(out)),
                "test_predictions": str((version_dir / PREDICTIONS_FILE).relative_to(out))}
    summary = {"experiment": entry["number"], "operating_point": op,
               "calibration": card.calibration.model_dump() if card.calibration else None,
               "reliability": trust.reliability,
               "guard": card.input_guard.model_dump() if card.input_guard else None,
               "figure": str(figure.relative_to(out))}
    return exported, summary


def write_predictions(path: Path, split: Split, probabilities: np.ndarray,
                      raw: np.ndarray) -> None:
    """Per-file test probabilities of the exported model (calibrated, as it serves them, and
    raw), so the app can be checked against the training evaluation file by file."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "probability", "raw_probability"])
        for file, label, p, r in zip(split.paths, split.labels, probabilities, raw):
            writer.writerow([f"{file.parent.parent.name}/{file.parent.name}/{file.name}",
                             CLASS_NAMES[label], repr(float(p)), repr(float(r))])


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N,) 0/1 labels and (N,) calibrated probabilities of a `write_predictions` file."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = np.asarray([row["label"] == CLASS_NAMES[1] for row in rows], dtype=int)
    return labels, np.asarray([float(row["probability"]) for row in rows])
