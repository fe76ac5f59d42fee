"""The original study's protocol over several seeds, and an ablation from it to ours.

The study (see shared/reference/README.md) trained on a 1,218-image part of train/ (84
normal, 1,134 pneumonia), augmented once and reused every epoch, on raw 0-255 pixels, with
class weights {0: 13, 1: 1} and no validation split. Each seed here draws its own subset and
its own augmentation, so the spread over seeds shows how much of the published table is luck.

The ablation trains model 5 under a sequence of recipes that moves from the study's protocol
to this project's full-data protocol one change at a time, so a reader sees what each buys.
Nothing here is exported: the served model stays the full-data model 5.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.contract.report import Report, write_report_sections
from training import defaults
from training.data import Arrays, Split, list_split, load_arrays, split_train_validation
from training.evaluate import binary_metrics, predict_probabilities, spread
from training.experiments import EXPORTED_EXPERIMENT, STUDY_EXPERIMENTS, Experiment
from training.reference import STUDY_RESULTS
from training.report import now
from training.train import STUDY_RECIPE, Recipe, train_experiment

THRESHOLD = 0.5  # the study's predict_classes
SUMMARISED = ("train_accuracy", "accuracy", "precision", "recall", "specificity", "f1",
              "roc_auc")

# From the study's protocol to ours, one change at a time; the last step is our protocol.
ABLATION_STEPS: tuple[tuple[str, Recipe], ...] = (
    ("the study's protocol (84 + 1,134 images, one augmented draw, raw pixels, weights 13:1)",
     STUDY_RECIPE),
    ("+ all training data (all of train/)", replace(STUDY_RECIPE, subset=False)),
    ("+ rescaling to 0-1 inside the model", replace(STUDY_RECIPE, subset=False, rescale=True)),
    ("+ a fresh augmentation every epoch",
     replace(STUDY_RECIPE, subset=False, rescale=True, fresh_augmentation=True)),
    ("+ balanced class weights", replace(STUDY_RECIPE, subset=False, rescale=True,
                                         fresh_augmentation=True, class_weights="balanced")),
    ("+ the patient-grouped validation split (= this project's full-data protocol)",
     Recipe("full")),
)


@dataclass
class StudyConfig:
    data_dir: Path
    out_dir: Path
    experiments: list[int]
    seeds: list[int]
    ablation_seeds: list[int]
    val_fraction: float
    counts: tuple[int, int] = defaults.STUDY_COUNTS  # smaller only for smoke runs
    image_size: int = 64
    channels: int = 3
    max_epochs: int | None = None
    cache_dir: Path | None = None
    command: str = ""
    code_version: str = ""


def draw_subset(train: Split, counts: tuple[int, int], seed: int) -> Split:
    """`counts` = (normal, pneumonia) files drawn from train/ without replacement, seeded."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(train.labels == label), size=n, replace=False)
              for label, n in enumerate(counts)]
    return train.subset(np.sort(np.concatenate(chosen)))


def run_study(config: StudyConfig, log: Callable[[str], None] = print) -> Report:
    started = time.perf_counter()
    size = (config.image_size, config.image_size)
    train, test = list_split(config.data_dir, "train"), list_split(config.data_dir, "test")
    x_train = load_arrays(train, size, config.channels, config.cache_dir)
    x_test = load_arrays(test, size, config.channels, config.cache_dir)
    data = _Data(train, x_train, test, x_test, config)
    log(f"data: train {len(train)} {train.counts()}, test {len(test)} {test.counts()}; "
        f"study subset {config.counts[0]} normal + {config.counts[1]} pneumonia per seed")

    section = {"created": now(), "command": config.command,
               "code_version": config.code_version, "seeds": config.seeds,
               "subset": {"NORMAL": config.counts[0], "PNEUMONIA": config.counts[1]},
               "threshold": THRESHOLD, "experiments": []}
    runs = len(config.experiments) * len(config.seeds)
    done = 0
    for number in config.experiments:
        experiment = STUDY_EXPERIMENTS[number]
        results = []
        for seed in config.seeds:
            done += 1
            log(f"=== study protocol, model {number}, seed {seed} ({done}/{runs}): "
                f"{experiment.description}")
            results.append(_train_and_score(experiment, STUDY_RECIPE, seed, data, log))
        section["experiments"].append(_summary_entry(experiment, results))
        log(_one_line(f"=== model {number} over {len(results)} seeds", results))
    section["wall_seconds"] = round(time.perf_counter() - started, 1)

    ablation = _ablation(config, data, section, log) if config.ablation_seeds else None
    report = write_report_sections(Path(config.out_dir), {"study_protocol": section, **(
        {"ablation": ablation} if ablation is not None else {})})
    log(f"report written to {Path(config.out_dir) / 'report.json'}; wall time "
        f"{time.perf_counter() - started:.1f}s")
    return report


@dataclass
class _Data:
    train: Split
    x_train: np.ndarray
    test: Split
    x_test: np.ndarray
    config: StudyConfig

    def arrays(self, recipe: Recipe, seed: int) -> Arrays:
        """Training (and, if the recipe has one, validation) arrays for this seed."""
        config = self.config
        position = {p: i for i, p in enumerate(self.train.paths)}
        part = self.train
        if recipe.subset:
            part = draw_subset(self.train, config.counts, seed)
        index = np.asarray([position[p] for p in part.paths], dtype=np.int64)
        empty = np.zeros((0, *self.x_train.shape[1:]), dtype=self.x_train.dtype)
        if not recipe.validation:
            return Arrays(self.x_train[index], part.labels, empty, np.zeros(0, np.int64),
                          self.x_test, self.test.labels)
        # The same split as the full-data run (its seed is the run's seed, as there).
        fit, val = split_train_validation(part, config.val_fraction, seed)
        fit_index = [position[p] for p in fit.paths]
        val_index = [position[p] for p in val.paths]
        return Arrays(self.x_train[fit_index], fit.labels, self.x_train[val_index], val.labels,
                      self.x_test, self.test.labels)


def _train_and_score(experiment: Experiment, recipe: Recipe, seed: int, data: _Data,
                     log: Callable[[str], None]) -> dict:
    arrays = data.arrays(recipe, seed)
    epochs = min(experiment.epochs, data.config.max_epochs or experiment.epochs)
    trained = train_experiment(experiment, arrays, seed, epochs=epochs, log=log, recipe=recipe)
    # Train accuracy on what the model saw: the one augmented draw when it is reused (as the
    # study's notebook evaluated it), the original images when augmentation is fresh.
    x_seen = trained.augmented_once if trained.augmented_once is not None else arrays.x_fit
    train_metrics = binary_metrics(arrays.y_fit, predict_probabilities(trained.model, x_seen),
                                   THRESHOLD)
    test = binary_metrics(arrays.y_test, predict_probabilities(trained.model, arrays.x_test),
                          THRESHOLD)
    return {"seed": seed, "train_seconds": round(trained.seconds, 1),
            "images_per_second": round(trained.images_per_second, 1),
            "train_images": int(len(arrays.y_fit)),
            "metrics": {**{k: test[k] for k in SUMMARISED if k in test},
                        "train_accuracy": train_metrics["accuracy"],
                        "confusion_matrix": test["confusion_matrix"]}}


def _stats(results: list[dict]) -> dict:
    summary = {}
    for key in SUMMARISED:
        values = [r["metrics"][key] for r in results if r["metrics"].get(key) is not None]
        if values:
            summary[key] = spread(values)
    return summary


def _summary_entry(experiment: Experiment, results: list[dict]) -> dict:
    summary = _stats(results)
    published = STUDY_RESULTS[experiment.number]
    within = {}
    for ours, theirs in (("accuracy", "test_accuracy"), ("recall", "recall")):
        value = published.get(theirs)
        if value is not None and ours in summary:
            # The published figures have two decimals: a seed that rounds to them counts.
            low, high = summary[ours]["min"], summary[ours]["max"]
            within[theirs] = bool(round(low, 2) <= value <= round(high, 2))
    return {"number": experiment.number, "name": experiment.name,
            "description": experiment.description,
            "recipe": {"optimizer": experiment.optimizer, "batch_size": experiment.batch_size,
                       "epochs": experiment.epochs, "class_weights": experiment.class_weights},
            "runs": results, "summary": summary, "published": published,
            "published_within_seed_range": within}


def _ablation(config: StudyConfig, data: _Data, section: dict,
              log: Callable[[str], None]) -> dict:
    started = time.perf_counter()
    experiment = STUDY_EXPERIMENTS[EXPORTED_EXPERIMENT]
    steps = []
    for position, (change, recipe) in enumerate(ABLATION_STEPS, start=1):
        if position == 1 and set(config.ablation_seeds) <= set(config.seeds) and \
                EXPORTED_EXPERIMENT in config.experiments:
            # The study-protocol runs of model 5 are this step: reuse, do not retrain.
            entry = next(e for e in section["experiments"] if e["number"] == experiment.number)
            results = [r for r in entry["runs"] if r["seed"] in config.ablation_seeds]
        else:
            results = []
            for seed in config.ablation_seeds:
                log(f"=== ablation step {position}/{len(ABLATION_STEPS)}, seed {seed}: {change}")
                results.append(_train_and_score(experiment, recipe, seed, data, log))
        steps.append({"step": position, "change": change, "recipe": recipe.__dict__,
                      "runs": results, "summary": _stats(results)})
        log(_one_line(f"=== ablation step {position}", results))
    return {"created": now(), "command": config.command, "code_version": config.code_version,
            "experiment": experiment.number, "seeds": config.ablation_seeds,
            "threshold": THRESHOLD, "steps": steps,
            "wall_seconds": round(time.perf_counter() - started, 1)}


def _one_line(prefix: str, results: list[dict]) -> str:
    stats = _stats(results)
    return prefix + ": " + ", ".join(
        f"{key} {stats[key]['mean']:.3f} ± {stats[key]['sd']:.3f}"
        for key in ("accuracy", "precision", "recall", "specificity") if key in stats)

