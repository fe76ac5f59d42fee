"""One full run: data -> train each experiment -> evaluate -> report -> export model 5."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np

from app.contract.card import CLASS_NAMES, SIGNATURE, ModelCard
from app.contract.guard import GUARD_FILE
from app.contract.preprocessing import PREPROCESSING_VERSION, RESAMPLING
from training import defaults, figures
from training.data import Arrays, Split, list_split, load_arrays, split_train_validation
from training.evaluate import binary_metrics, predict_probabilities
from training.experiments import (
    EXPERIMENTS,
    EXPORT_NAMES,
    EXPORTED_EXPERIMENT,
    FULL_PROTOCOL_DIFFERENCES,
    STUDY_NUMBERS,
)
from training.layers import HistogramEqualization
from training.reference import DATASET_CREDIT, DATASET_CREDIT_SHORT, STUDY_RESULTS
from training.train import TrainedModel, train_experiment

# 0.5 on the sigmoid, the study's (and Keras') default, for the seven-model comparison. The
# exported model's own threshold is an operating point chosen on validation (training/trust.py).
THRESHOLD = 0.5
PREDICTIONS_FILE = "test_predictions.csv"  # beside the card: one per exported version
THRESHOLD_METHOD = ("fixed at 0.5 (the original study's default); not tuned, so the test "
                    "split played no part in choosing it")
AUGMENTATION = ("on the fly, a new random draw every epoch, training part only: Keras "
                "ImageDataGenerator semantics with shear_range=0.2 (degrees), zoom_range=0.2 "
                "(row and column zoom each in [0.8, 1.2]), horizontal_flip=True; bilinear, "
                "edges repeated")
XRAY_AUGMENTATION = ("on the fly, a new random draw every epoch, training part only: "
                     "rotation within ±10°, zoom within ±10%, shift within ±5% of each side, "
                     "contrast and brightness within ±10%; no mirroring; bilinear, edges "
                     "repeated")


def scaling_text(model: keras.Model) -> str:
    """How the exported model turns raw 0-255 pixels into the network's input."""
    if any(isinstance(layer, HistogramEqualization) for layer in model.layers):
        return "inside the model (per-film histogram equalisation to 0-1)"
    return "inside the model (Rescaling 1/255)"


def augmentation_text(experiment) -> str:
    return XRAY_AUGMENTATION if experiment.augmentation == "xray" else AUGMENTATION
DISCLAIMER = "Prioritisation aid, not a diagnosis."
PROTOCOL = "full"  # all of train/ minus a validation split (training/study.py: the study's)
INTENDED_USE = ("Prioritisation aid for pediatric chest X-rays (ages 1-5, Guangzhou cohort): "
                "orders a worklist so that likely pneumonia is read first. Not a diagnosis; "
                "every image is still read by a clinician.")
LIMITS = [
    "Trained and tested on one hospital's pediatric anterior-posterior films; adult, "
    "lateral or other-site images are out of distribution.",
    "Sees a 64x64 downscale of the image: fine findings are invisible to it.",
    "Its threshold is chosen for high sensitivity on validation: many normal films are "
    "flagged, more on the test split than on validation.",
    "Probabilities are calibrated on the validation split (temperature scaling), which comes "
    "from the same hospital as the training films; on other films they may be over-confident.",
    "Does not distinguish bacterial from viral pneumonia, or pneumonia from other opacities.",
]


@dataclass
class RunConfig:
    data_dir: Path
    out_dir: Path
    experiments: list[int]
    image_size: int = 64
    channels: int = 3
    val_fraction: float = defaults.VAL_FRACTION
    seed: int = defaults.SEED
    max_epochs: int | None = None  # cap for quick runs; None = the study's epochs
    limit_per_class: int | None = None  # tiny subsets for smoke runs
    cache_dir: Path | None = None
    export: bool = True
    model_version: int | None = None  # None = the next free version number
    force: bool = False  # replace an existing version
    target_sensitivity: float = defaults.TARGET_SENSITIVITY  # the exported operating point
    command: str = ""
    code_version: str = ""


def run(config: RunConfig, log: Callable[[str], None] = print) -> dict:
    started = time.perf_counter()
    config.code_version = config.code_version or code_version()  # the code as it starts
    size = (config.image_size, config.image_size)
    splits = _load_splits(config)
    log("data: " + ", ".join(f"{k} {len(s)} {s.counts()}" for k, s in splits.items()))
    arrays = Arrays(*(a for part in ("fit", "val", "test") for a in (
        load_arrays(splits[part], size, config.channels, config.cache_dir),
        splits[part].labels)))
    log(f"decoded to {arrays.x_fit.shape[1:]} in {time.perf_counter() - started:.1f}s")

    results, trained, test_probabilities = [], {}, {}
    for position, number in enumerate(config.experiments, start=1):
        experiment = EXPERIMENTS[number]
        epochs = min(experiment.epochs, config.max_epochs or experiment.epochs)
        log(f"=== experiment {number} ({position}/{len(config.experiments)}): "
            f"{experiment.description}; {experiment.optimizer}, batch {experiment.batch_size}, "
            f"{epochs} epochs")
        model = train_experiment(experiment, arrays, config.seed, epochs=epochs, log=log)
        result, test_probabilities[number] = _evaluate(model, arrays, config.seed)
        results.append(result)
        trained[number] = (model, result)
        test = result["metrics"]["test"]
        log(f"=== experiment {number} done in {model.seconds:.1f}s "
            f"({model.images_per_second:.0f} images/s): test accuracy {test['accuracy']:.3f}, "
            f"recall {test['recall']:.3f}, specificity {test['specificity']:.3f}")

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure_paths = _figures(results, test_probabilities, arrays.y_test, out)
    report = _report(config, splits, results, figure_paths, time.perf_counter() - started)
    if config.export and EXPORTED_EXPERIMENT in trained:
        report["exported_model"], report["trust"] = _export(
            config, *trained[EXPORTED_EXPERIMENT], arrays, splits, out, log)
        log(f"exported experiment {EXPORTED_EXPERIMENT} to {report['exported_model']['path']}")
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    report.update(_study_sections(out / "report.json"))
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"report written to {out / 'report.json'}; wall time {report['wall_seconds']}s")
    return report


# Sections other protocols add to report.json (`--protocol study`, `--protocol stronger`):
# a full run keeps them, as each carries its own command and code version.
KEPT_SECTIONS = ("study_protocol", "ablation", "stronger_models")


def _study_sections(path: Path) -> dict:
    """The other protocols' sections of an earlier report, kept."""
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    return {key: earlier[key] for key in KEPT_SECTIONS if key in earlier}


def _load_splits(config: RunConfig) -> dict[str, Split]:
    train = list_split(config.data_dir, "train")
    test = list_split(config.data_dir, "test")
    if config.limit_per_class:
        train, test = (_limit(s, config.limit_per_class) for s in (train, test))
    fit, val = split_train_validation(train, config.val_fraction, config.seed)
    return {"fit": fit, "val": val, "test": test}


def _limit(split: Split, per_class: int) -> Split:
    keep = np.concatenate([np.flatnonzero(split.labels == c)[:per_class]
                           for c in range(len(CLASS_NAMES))])
    return split.subset(keep)


def _evaluate(trained: TrainedModel, arrays: Arrays, seed: int) -> tuple[dict, np.ndarray]:
    """The report entry of one experiment, and its (N,) test probabilities."""
    experiment = trained.experiment
    probabilities = {
        part: predict_probabilities(trained.model, x)
        for part, x in (("train", arrays.x_fit), ("validation", arrays.x_val),
                        ("test", arrays.x_test))
    }
    labels = {"train": arrays.y_fit, "validation": arrays.y_val, "test": arrays.y_test}
    result = {
        "number": experiment.number,
        "name": experiment.name,
        "description": experiment.description,
        "seed": seed,
        "recipe": {"optimizer": experiment.optimizer, "batch_size": experiment.batch_size,
                   "epochs": trained.epochs, "study_epochs": experiment.epochs,
                   "class_weights": experiment.class_weights, "loss": "binary_crossentropy",
                   **({"learning_rate": experiment.learning_rate,
                       "weight_decay": experiment.weight_decay,
                       "best_epoch": trained.best_epoch,
                       "selected_on": "validation ROC AUC"}
                      if experiment.early_stopping else {})},
        "parameters": int(trained.model.count_params()),
        "train_seconds": round(trained.seconds, 1),
        "images_per_second": round(trained.images_per_second, 1),
        "history": trained.history,
        "metrics": {part: binary_metrics(labels[part], p, THRESHOLD)
                    for part, p in probabilities.items()},
        "study": STUDY_RESULTS.get(experiment.number),
    }
    return result, probabilities["test"]


def _figures(results: list[dict], test_probabilities: dict[int, np.ndarray],
             y_test: np.ndarray, out: Path) -> dict:
    fig_dir = out / "figures"
    paths: dict = {"confusion_matrices": {}}
    for result in results:
        n = result["number"]
        path = figures.confusion_matrix_figure(
            result["metrics"]["test"]["confusion_matrix"],
            f"Model {n} ({result['name']}), test", fig_dir / f"confusion_matrix_{n}.png")
        paths["confusion_matrices"][str(n)] = str(path.relative_to(out))
    curves = {f"Model {r['number']}": (y_test, test_probabilities[r["number"]],
                                       r["metrics"]["test"]["roc_auc"]) for r in results}
    paths["roc"] = str(figures.roc_figure(curves, fig_dir / "roc_curves.png").relative_to(out))
    histories = {f"Model {r['number']}": r["history"] for r in results}
    paths["training_curves"] = str(
        figures.training_curves_figure(histories, fig_dir / "training_curves.png")
        .relative_to(out))
    return paths


def _report(config: RunConfig, splits: dict[str, Split], results: list[dict],
            figure_paths: dict, seconds: float) -> dict:
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "protocol": PROTOCOL,
        "full_protocol_differences": {str(k): v for k, v in FULL_PROTOCOL_DIFFERENCES.items()},
        "command": config.command,
        "code_version": config.code_version,
        "environment": _environment(),
        "wall_seconds": round(seconds, 1),
        "dataset": _dataset_section(config, splits),
        "input": {"height": config.image_size, "width": config.image_size,
                  "channels": config.channels, "resize": RESAMPLING},
        "augmentation": AUGMENTATION,
        "threshold": THRESHOLD,
        "threshold_method": THRESHOLD_METHOD,
        "seed": config.seed,
        "experiments": results,
        "figures": figure_paths,
    }


def _dataset_section(config: RunConfig, splits: dict[str, Split]) -> dict:
    return {
        "name": "Kermany pediatric chest X-ray (Kaggle chest-xray-pneumonia layout)",
        "credit": DATASET_CREDIT,
        "credit_short": DATASET_CREDIT_SHORT,
        "counts": {"train": splits["fit"].counts(), "validation": splits["val"].counts(),
                   "test": splits["test"].counts()},
        "split": (f"validation = {config.val_fraction:.0%} of train/, stratified by class and "
                  f"grouped by patient (no patient in both), seed {config.seed}; test/ used "
                  "once, for this report"),
        "subset_per_class": config.limit_per_class,
    }


def _export(config: RunConfig, trained: TrainedModel, result: dict, arrays: Arrays,
            splits: dict[str, Split], out: Path, log: Callable[[str], None],
            trust: dict | None = None, protocol: str = PROTOCOL) -> tuple[dict, dict]:
    """Export one trained experiment as MODEL_DIR/<its name>/<next version>/ with its card,
    guard and test predictions; `trust` when the caller already computed it."""
    from training.export import export_saved_model, occlusion_grid  # needs TensorFlow

    model = trained.model
    trust = trust or _trust(config, model, arrays)
    name = EXPORT_NAMES[result["number"]]
    version = config.model_version or next_version(out / name)
    op = trust["operating_point"]
    metrics = {part: binary_metrics(labels, trust["calibrated"][part], op["threshold"])
               for part, labels in (("validation", arrays.y_val), ("test", arrays.y_test))}
    card = _card(config, name, version, result, splits, metrics, trust,
                 occlusion_grid(config.image_size, config.image_size), scaling_text(model),
                 protocol)
    version_dir = export_saved_model(model, out / name / str(version),
                                     force=config.force, calibration=trust["platt"])
    card.write(version_dir)
    trust["guard"].write(version_dir)
    _write_predictions(version_dir / PREDICTIONS_FILE, splits["test"],
                       trust["calibrated"]["test"], trust["raw"]["test"])
    suffix = "" if result["number"] == EXPORTED_EXPERIMENT else f"_{result['number']}"
    figure = figures.reliability_figure(
        {"raw": trust["reliability"]["test"]["raw"],
         "calibrated": trust["reliability"]["test"]["calibrated"]},
        out / "figures" / f"reliability{suffix}.png")
    log(f"operating point {op['threshold']:.3f} for sensitivity >= {op['target_sensitivity']}: "
        f"validation sensitivity {op['validation']['sensitivity']:.3f}, specificity "
        f"{op['validation']['specificity']:.3f}; test {op['test']['sensitivity']:.3f} / "
        f"{op['test']['specificity']:.3f}; guard flags "
        f"{trust['guard_false_alarms']:.1%} of validation")
    exported = {"name": name, "version": version,
                "experiment": result["number"], "path": str(version_dir.relative_to(out)),
                "test_predictions": str((version_dir / PREDICTIONS_FILE).relative_to(out))}
    summary = {"experiment": result["number"], "operating_point": op,
               "calibration": card.calibration.model_dump() if card.calibration else None,
               "reliability": trust["reliability"],
               "guard": card.input_guard.model_dump() if card.input_guard else None,
               "figure": str(figure.relative_to(out))}
    return exported, summary


def _trust(config: RunConfig, model, arrays: Arrays) -> dict:
    """Calibration, operating point and guard, all chosen on the fit/validation parts."""
    from training import trust

    z = {"validation": trust.logits(model, arrays.x_val),
         "test": trust.logits(model, arrays.x_test)}
    labels = {"validation": arrays.y_val, "test": arrays.y_test}
    temperature = trust.fit_temperature(z["validation"], arrays.y_val)
    a, b = 1.0 / temperature, 0.0
    raw = {part: trust.sigmoid(values) for part, values in z.items()}
    calibrated = {part: trust.sigmoid(a * values + b) for part, values in z.items()}
    threshold = trust.threshold_for_sensitivity(arrays.y_val, calibrated["validation"],
                                                config.target_sensitivity)
    guard, false_alarms = trust.guard_for(arrays.x_fit, arrays.x_val)
    return {
        "platt": (a, b), "temperature": temperature, "raw": raw, "calibrated": calibrated,
        "guard": guard,
        "guard_false_alarms": false_alarms,
        "operating_point": {
            "threshold": threshold, "target_sensitivity": config.target_sensitivity,
            "chosen_on": "validation",
            "validation": trust.rates_with_intervals(labels["validation"],
                                                     calibrated["validation"], threshold),
            "test": trust.rates_with_intervals(labels["test"], calibrated["test"], threshold)},
        "brier": {part: {"raw": trust.brier(labels[part], raw[part]),
                         "calibrated": trust.brier(labels[part], calibrated[part])}
                  for part in labels},
        "reliability": {part: {"raw": trust.reliability(labels[part], raw[part]),
                               "calibrated": trust.reliability(labels[part], calibrated[part])}
                        for part in labels},
    }


def next_version(model_root: Path) -> int:
    """One more than the highest numbered version folder, 1 for a new model."""
    taken = [int(p.name) for p in Path(model_root).glob("*") if p.name.isdigit()]
    return max(taken, default=0) + 1


def _write_predictions(path: Path, split: Split, probabilities: np.ndarray,
                       raw: np.ndarray) -> None:
    """Per-file test probabilities of the exported model (calibrated, as it serves them, and
    raw), so the app can be checked against the training evaluation file by file."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "probability", "raw_probability"])
        for file, label, p, r in zip(split.paths, split.labels, probabilities, raw):
            writer.writerow([f"{file.parent.parent.name}/{file.parent.name}/{file.name}",
                             CLASS_NAMES[label], repr(float(p)), repr(float(r))])


def _card(config: RunConfig, name: str, version: int, result: dict,
          splits: dict[str, Split], metrics: dict, trust: dict, occlusion: tuple[int, int],
          scaling: str, protocol: str = PROTOCOL) -> ModelCard:
    experiment = EXPERIMENTS[result["number"]]
    op = trust["operating_point"]
    a, b = trust["platt"]
    of_study = experiment.number in STUDY_NUMBERS
    return ModelCard(
        name=name,
        version=version,
        description=(f"Model {experiment.number} of the original study: "
                     if of_study else f"Model {experiment.number}, beyond the original study: ")
                    + experiment.description,
        created=datetime.now(UTC).replace(microsecond=0),
        code_version=config.code_version,
        format="TensorFlow SavedModel",
        signature=SIGNATURE,
        input={"height": config.image_size, "width": config.image_size,
               "channels": config.channels,
               "color_mode": "rgb" if config.channels == 3 else "grayscale",
               "dtype": "float32", "value_range": (0, 255),
               "scaling": scaling,
               "resize": RESAMPLING, "preprocessing_version": PREPROCESSING_VERSION},
        output=f"probability of {CLASS_NAMES[1]}, float32 (batch,)",
        class_names=CLASS_NAMES,
        positive_class=CLASS_NAMES[1],
        threshold=op["threshold"],
        threshold_method=(f"chosen on the validation split as the highest threshold whose "
                          f"sensitivity reaches {config.target_sensitivity:.0%}, on the "
                          "calibrated probability; the test split played no part in it"),
        metrics=metrics,
        training={**result["recipe"], "protocol": protocol, "experiment": experiment.number,
                  "augmentation": augmentation_text(experiment), "seed": result["seed"],
                  "parameters": result["parameters"], "train_seconds": result["train_seconds"]},
        data=_dataset_section(config, splits),
        intended_use=INTENDED_USE,
        disclaimer=DISCLAIMER,
        limitations=LIMITS,
        operating_point=op,
        calibration={"method": "temperature",
                     "parameters": {"temperature": trust["temperature"], "a": a, "b": b},
                     "fitted_on": "validation", "inside_model": True,
                     "brier": trust["brier"],
                     "ece": {part: {kind: bins["ece"] for kind, bins in values.items()}
                             for part, values in trust["reliability"].items()}},
        explanation={
            "method": "occlusion sensitivity of the pneumonia logit",
            "patch": occlusion[0], "stride": occlusion[1],
            "note": f"Where hiding a region lowers the score most. The network sees a "
                    f"{config.image_size}x{config.image_size} downscale and the map is built "
                    f"from {occlusion[0]}x{occlusion[0]} px patches of it, so it shows coarse "
                    "regions, not findings."},
        input_guard={"method": "colour, shape and size checks, and the squared Mahalanobis "
                               "distance of 8x8 grid and histogram features of the model "
                               "input to the training films",
                     "file": GUARD_FILE, "percentile": 99.0,
                     "validation_false_alarm_rate": trust["guard_false_alarms"],
                     "checks": ["colour", "aspect ratio", "size", "distribution"]},
    )


def code_version() -> str:
    """The git commit the code ran from, '+dirty' when it had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "training", "app"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty.strip() else "")


def _environment() -> dict:
    import sklearn

    return {"keras": keras.__version__, "backend": keras.backend.backend(),
            "numpy": np.__version__, "scikit_learn": sklearn.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count()}
