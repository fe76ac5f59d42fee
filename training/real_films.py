"""`--protocol real-films`: the served models retrained so that they cannot lean on the marks
every real film carries (issue 28).

Models 5 (the study's network, served by default) and 8 are trained again on the full
protocol's splits, each film of the fit part augmented at its own resolution with burned-in
text, side markers, tubes and lines, borders, small rotations and crops, gamma and JPEG
recompression (training/augment.py `RealFilmAugmentation`), then prepared exactly as the app
prepares a film (app/contract/preprocessing.py, preprocessing version 3: uniform borders
cropped before the resize). Each is exported as a new version of its model with its card,
calibration, operating point, input guard, drift reference and test predictions; everything
is chosen on validation, and the test split is measured once. report.json's
`real_film_models` puts each beside the version it follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from app.contract.card import ModelCard, read_card
from app.contract.preprocessing import PREPROCESSING_VERSION
from app.contract.report import REPORT_FILE, Report, read_report, write_report_sections
from training.augment import DEFAULT_PROBABILITIES, RealFilmAugmentation, describe_real_films
from training.config import RunConfig
from training.evaluate import binary_metrics, evaluate_experiment
from training.experiments import EXPERIMENTS, EXPORT_NAMES
from training.films import load_films
from training.provenance import code_version
from training.release import export_experiment, next_version
from training.report import THRESHOLD, now
from training.train import train_experiment
from training.trust import assess

PROTOCOL = "real-films"
AUGMENTATION = "real_films"
SUMMARISED = ("roc_auc", "accuracy", "recall", "specificity", "precision", "f1")


def run_real_films(config: RunConfig, log: Callable[[str], None] = print) -> Report:
    started = time.perf_counter()
    config.code_version = config.code_version or code_version()
    parts, arrays = config.load_data()
    films = load_films(parts["fit"], config.cache_dir)
    log(f"data: fit {films.shape}, validation {arrays.x_val.shape}, test {arrays.x_test.shape}"
        f" in {time.perf_counter() - started:.1f}s")
    out = Path(config.out_dir)
    augment = RealFilmAugmentation(dict(config.augment_probabilities or DEFAULT_PROBABILITIES))
    log("augmentation: " + ", ".join(f"{k} {v:g}" for k, v in augment.probabilities.items()))
    models = []
    for number in config.experiments:
        experiment = replace(EXPERIMENTS[number], augmentation=AUGMENTATION,
                             description=EXPERIMENTS[number].description
                             + ", retrained on real-film augmentations")
        name = EXPORT_NAMES[number]
        previous = _previous(out / name)
        log(f"=== experiment {number} on real-film augmentations: {experiment.description}; "
            f"{config.epochs_for(experiment.epochs)} epochs at most")
        trained = train_experiment(experiment, arrays, config.seed,
                                   epochs=config.epochs_for(experiment.epochs), log=log,
                                   films=films, film_augment=augment)
        entry, _ = evaluate_experiment(trained, arrays, config.seed, THRESHOLD)
        entry["augmentation"] = AUGMENTATION
        entry["augmentation_text"] = describe_real_films(augment.probabilities)
        trust = assess(trained.model, arrays, config.target_sensitivity)
        retrained = _figures(name, config.model_version or next_version(out / name),
                             trust.operating_point["threshold"],
                             binary_metrics(arrays.y_val, trust.calibrated["validation"],
                                      trust.operating_point["threshold"]),
                             binary_metrics(arrays.y_test, trust.calibrated["test"],
                                      trust.operating_point["threshold"]))
        if config.export:
            exported, _ = export_experiment(config, trained, entry, arrays, parts, out, log,
                                            protocol=PROTOCOL, trust=trust)
            log(f"exported experiment {number} to {exported['path']}")
        log(f"=== experiment {number}: validation ROC AUC "
            f"{retrained['validation_roc_auc']:.4f} (was {_was(previous)}), test ROC AUC "
            f"{retrained['test']['roc_auc']:.4f}; {trained.seconds:.0f}s")
        models.append({
            "number": number, "description": experiment.description,
            "augmentation": entry["augmentation_text"],
            "probabilities": dict(augment.probabilities),
            "preprocessing_version": PREPROCESSING_VERSION, "command": config.command,
            "code_version": config.code_version, "created": now(),
            "train_seconds": round(trained.seconds, 1), "best_epoch": trained.best_epoch,
            "previous": previous, "retrained": retrained})
    kept = _kept(out, {m["number"] for m in models})
    section = {"seed": config.seed,
               "models": sorted(kept + models, key=lambda m: m["number"])}
    report = write_report_sections(out, {"real_film_models": section})
    log(f"report written to {out / 'report.json'}; wall time "
        f"{time.perf_counter() - started:.1f}s")
    return report


def _kept(out: Path, retrained: set[int]) -> list[dict]:
    """The models an earlier run of this protocol retrained and this one did not."""
    if not (out / REPORT_FILE).is_file():
        return []
    earlier = read_report(out).real_film_models
    if earlier is None:
        return []
    return [m.model_dump(mode="json") for m in earlier.models if m.number not in retrained]


def _figures(name: str, version: int, threshold: float, validation: dict, test: dict) -> dict:
    return {"name": name, "version": version, "threshold": threshold,
            "validation_roc_auc": validation["roc_auc"],
            "test": {key: test[key] for key in SUMMARISED}}


def _previous(model_root: Path) -> dict | None:
    """The newest exported version's figures, from its card; None for a new model."""
    version = next_version(model_root) - 1
    if version < 1:
        return None
    card: ModelCard = read_card(model_root / str(version))
    validation, test = card.metrics["validation"], card.metrics["test"]
    return {"name": card.name, "version": card.version, "threshold": card.threshold,
            "validation_roc_auc": validation.roc_auc,
            "test": {key: getattr(test, key) for key in SUMMARISED}}


def _was(previous: dict | None) -> str:
    if previous is None or previous["validation_roc_auc"] is None:
        return "no earlier version"
    return f"{previous['validation_roc_auc']:.4f} for version {previous['version']}"
