"""The full-data protocol: the study's seven experiments on all of train/ minus a
patient-grouped validation split, each evaluated once on test/ at 0.5; figures and
report.json; model 5 exported with its card, calibration, operating point and guard."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.contract.report import Report, write_report_sections
from training import figures
from training.config import RunConfig
from training.evaluate import evaluate_experiment
from training.experiments import EXPERIMENTS, EXPORTED_EXPERIMENT
from training.provenance import code_version
from training.release import export_experiment
from training.report import PROTOCOL, THRESHOLD, full_run_sections
from training.train import train_experiment


def run_full(config: RunConfig, log: Callable[[str], None] = print) -> Report:
    started = time.perf_counter()
    config.code_version = config.code_version or code_version()  # the code as it starts
    parts, arrays = config.load_data()
    log("data: " + ", ".join(f"{k} {len(s)} {s.counts()}" for k, s in parts.items()))
    log(f"decoded to {arrays.x_fit.shape[1:]} in {time.perf_counter() - started:.1f}s")

    results, trained, test_probabilities = [], {}, {}
    for position, number in enumerate(config.experiments, start=1):
        experiment = EXPERIMENTS[number]
        epochs = config.epochs_for(experiment.epochs)
        log(f"=== experiment {number} ({position}/{len(config.experiments)}): "
            f"{experiment.description}; {experiment.optimizer}, batch {experiment.batch_size}, "
            f"{epochs} epochs")
        model = train_experiment(experiment, arrays, config.seed, epochs=epochs, log=log)
        entry, test_probabilities[number] = evaluate_experiment(model, arrays, config.seed,
                                                                THRESHOLD)
        results.append(entry)
        trained[number] = (model, entry)
        test = entry["metrics"]["test"]
        auc = "undefined" if test["roc_auc"] is None else f"{test['roc_auc']:.4f}"
        log(f"=== experiment {number} done in {model.seconds:.1f}s "
            f"({model.images_per_second:.0f} images/s): test accuracy {test['accuracy']:.3f}, "
            f"recall {test['recall']:.3f}, specificity {test['specificity']:.3f}, "
            f"ROC AUC {auc}")

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure_paths = _figures(results, test_probabilities, arrays.y_test, out)
    exported = trust = None
    if config.export and EXPORTED_EXPERIMENT in trained:
        exported, trust = export_experiment(config, *trained[EXPORTED_EXPERIMENT], arrays,
                                            parts, out, log, protocol=PROTOCOL)
        log(f"exported experiment {EXPORTED_EXPERIMENT} to {exported['path']}")
    seconds = time.perf_counter() - started
    report = write_report_sections(out, full_run_sections(
        config, parts, results, figure_paths, seconds, exported, trust))
    log(f"report written to {out / 'report.json'}; wall time {seconds:.1f}s")
    return report


def _figures(results: list[dict], test_probabilities: dict[int, np.ndarray],
             y_test: np.ndarray, out: Path) -> dict:
    fig_dir = out / "figures"
    paths: dict = {"confusion_matrices": {}}
    for result in results:
        n = result["number"]
        path = figures.confusion_matrix_figure(
            result["metrics"]["test"]["confusion_matrix"],
            figures.full_confusion_title(n, result["name"]),
            fig_dir / f"confusion_matrix_{n}.png")
        paths["confusion_matrices"][str(n)] = str(path.relative_to(out))
    curves = {f"Model {r['number']}": (y_test, test_probabilities[r["number"]],
                                       r["metrics"]["test"]["roc_auc"]) for r in results}
    paths["roc"] = str(figures.roc_figure(curves, fig_dir / "roc_curves.png").relative_to(out))
    histories = {f"Model {r['number']}": r["history"] for r in results}
    paths["training_curves"] = str(
        figures.training_curves_figure(histories, fig_dir / "training_curves.png")
        .relative_to(out))
    return paths
