"""The stronger protocol: the experiments beyond the study (model 8 on), over several seeds.

Same data and splits as the full protocol (all of train/, the patient-grouped validation
split of seed SEED, the test split). For each seed: train with model selection on validation
ROC AUC, fit the temperature and choose the operating point on validation, then measure the
test split once. The report gives every seed and the mean and standard deviation; the seed
with the best validation ROC AUC is exported beside model 5 under its own name. The test split
chooses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.contract.report import REPORT_FILE, Report, read_report, write_report_sections
from training import figures
from training.augment import DESCRIPTIONS
from training.config import RunConfig
from training.data import Arrays
from training.evaluate import binary_metrics, evaluate_experiment, spread
from training.experiments import EXPERIMENTS, EXPORT_NAMES, EXPORTED_EXPERIMENT
from training.provenance import code_version
from training.reference import KERMANY_2018
from training.release import export_experiment, read_predictions
from training.report import THRESHOLD, now
from training.train import train_experiment
from training.trust import Trust, assess

PROTOCOL = "stronger"
SUMMARISED = ("roc_auc", "accuracy", "recall", "specificity", "precision", "f1")


def run_stronger(config: RunConfig, seeds: list[int],
                 log: Callable[[str], None] = print) -> Report:
    started = time.perf_counter()
    config.code_version = config.code_version or code_version()
    parts, arrays = config.load_data()  # the validation split of config.seed, for every seed
    out = Path(config.out_dir)
    baseline, baseline_curve = _baseline(out)
    entries = []
    for number in config.experiments:
        experiment = EXPERIMENTS[number]
        runs, best = [], None
        for position, seed in enumerate(seeds, start=1):
            log(f"=== experiment {number}, seed {seed} ({position}/{len(seeds)}): "
                f"{experiment.description}")
            trained = train_experiment(experiment, arrays, seed,
                                       epochs=config.epochs_for(experiment.epochs), log=log)
            result, _ = evaluate_experiment(trained, arrays, seed, THRESHOLD)
            trust = assess(trained.model, arrays, config.target_sensitivity)
            entry = _seed_entry(result, trust, arrays)
            runs.append(entry)
            log(_one_line(f"=== experiment {number}, seed {seed}", [entry])
                + f"; {trained.seconds:.0f}s")
            if best is None or best_run([best[2], entry]) is entry:
                best = (trained, result, entry, trust)
        summary = _stats(runs)
        log(_one_line(f"=== experiment {number}, {len(seeds)} seeds", runs))
        exported = None
        if config.export:
            trained, result, entry, trust = best
            exported, _ = export_experiment(config, trained, result, arrays, parts, out, log,
                                            protocol=PROTOCOL, trust=trust)
            exported["seed"] = entry["seed"]
            exported["chosen_on"] = "the highest validation ROC AUC of the seeds"
            log(f"exported experiment {number} (seed {entry['seed']}) to {exported['path']}")
        entries.append({
            "number": number, "name": experiment.name, "description": experiment.description,
            "export_name": EXPORT_NAMES.get(number),
            "augmentation": DESCRIPTIONS[experiment.augmentation],
            "recipe": {"optimizer": experiment.optimizer, "batch_size": experiment.batch_size,
                       "max_epochs": experiment.epochs,
                       "learning_rate": experiment.learning_rate,
                       "weight_decay": experiment.weight_decay,
                       "class_weights": experiment.class_weights,
                       "early_stopping": (experiment.early_stopping.__dict__
                                          if experiment.early_stopping else None)},
            "parameters": runs[0]["parameters"], "runs": runs, "summary": summary,
            "exported": exported,
            "figures": _figures(number, best, arrays, out, baseline, baseline_curve),
        })
    section = {
        "created": now(),
        "command": config.command, "code_version": config.code_version,
        "protocol": ("the full protocol's splits; per seed: selection on validation ROC AUC, "
                     "temperature and operating point (validation sensitivity >= "
                     f"{config.target_sensitivity:.0%}) on validation, test measured once"),
        "seeds": seeds, "target_sensitivity": config.target_sensitivity,
        "experiments": entries,
        "baseline": baseline,
        "reference": {"name": "Kermany et al. 2018 (ImageNet-pretrained Inception V3)",
                      **KERMANY_2018},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    report = write_report_sections(out, {"stronger_models": section})
    log(f"report written to {out / 'report.json'}; wall time {section['wall_seconds']}s")
    return report


def _auc(entry: dict) -> float:
    auc = entry["validation_roc_auc"]
    return float("-inf") if auc is None else auc


def best_run(runs: list[dict]) -> dict:
    """The seed's run (as in report.json) that is exported and drawn: the highest validation
    ROC AUC, the earliest seed on a tie (none: lowest)."""
    return max(runs, key=_auc)  # max keeps the first of equal keys


def _seed_entry(result: dict, trust: Trust, arrays: Arrays) -> dict:
    op = trust.operating_point
    calibrated = trust.calibrated
    at_op = {part: binary_metrics(labels, calibrated[part], op["threshold"])
             for part, labels in (("validation", arrays.y_val), ("test", arrays.y_test))}
    return {
        "seed": result["seed"], "parameters": result["parameters"],
        "train_seconds": result["train_seconds"],
        "images_per_second": result["images_per_second"],
        "epochs": result["recipe"]["epochs"], "best_epoch": result["recipe"].get("best_epoch"),
        "validation_roc_auc": at_op["validation"]["roc_auc"],
        "threshold": op["threshold"], "temperature": trust.temperature,
        "metrics": {**{k: at_op["test"][k] for k in SUMMARISED},
                    "confusion_matrix": at_op["test"]["confusion_matrix"]},
        "validation": {k: at_op["validation"][k] for k in SUMMARISED},
        "test_at_0_5": {k: result["metrics"]["test"][k] for k in ("accuracy", "recall",
                                                                  "specificity")},
        "history": result["history"],
    }


def _stats(runs: list[dict]) -> dict:
    summary = {}
    for key in (*SUMMARISED, "train_seconds"):
        summary[key] = spread([r["metrics"][key] if key in r["metrics"] else r[key]
                               for r in runs])
    return summary


def _one_line(prefix: str, runs: list[dict]) -> str:
    stats = _stats(runs)
    return prefix + ": test at the validation operating point " + ", ".join(
        f"{key} {stats[key]['mean']:.3f}" + (f" ± {stats[key]['sd']:.3f}" if len(runs) > 1
                                             else "")
        for key in ("roc_auc", "accuracy", "recall", "specificity"))


def _baseline(out: Path) -> tuple[dict | None, tuple[np.ndarray, np.ndarray] | None]:
    """Model 5 as exported by the full protocol (its operating point and test AUC), from the
    report the full run wrote: what the new models are compared with; and its test labels
    and probabilities, for the ROC figure."""
    if not (out / REPORT_FILE).is_file():
        return None, None
    report = read_report(out)
    trust, exported = report.trust, report.exported_model
    if trust is None or exported is None or exported.experiment != EXPORTED_EXPERIMENT:
        return None, None
    op = trust.operating_point
    labels, probabilities = read_predictions(out / exported.test_predictions)
    at_op = binary_metrics(labels, probabilities, op.threshold)
    return ({"number": EXPORTED_EXPERIMENT, "name": exported.name,
             "version": exported.version, "seed": report.seed,
             "metrics": {k: at_op[k] for k in SUMMARISED},
             "sensitivity_ci": op.test.sensitivity_ci, "specificity_ci": op.test.specificity_ci,
             "test_predictions": exported.test_predictions},
            (labels, probabilities))


def _figures(number: int, best: tuple, arrays: Arrays, out: Path, baseline: dict | None,
             baseline_curve: tuple[np.ndarray, np.ndarray] | None) -> dict:
    _, _, entry, trust = best
    fig_dir = out / "figures"
    matrix = figures.confusion_matrix_figure(
        entry["metrics"]["confusion_matrix"],
        figures.stronger_confusion_title(number, entry["seed"], entry["threshold"]),
        fig_dir / f"confusion_matrix_{number}.png")
    curves = {f"Model {number} (seed {entry['seed']})":
              (arrays.y_test, trust.calibrated["test"], entry["metrics"]["roc_auc"])}
    if baseline is not None:
        curves[f"Model {EXPORTED_EXPERIMENT} (served v{baseline['version']})"] = (
            *baseline_curve, baseline["metrics"]["roc_auc"])
    roc = figures.roc_figure(curves, fig_dir / f"roc_{number}.png")
    return {"confusion_matrix": str(matrix.relative_to(out)), "roc": str(roc.relative_to(out))}
