"""Train one experiment under a recipe: this project's (a fresh augmentation every epoch,
balanced class weights, rescaling inside the model) or the original study's (one augmented
draw reused every epoch, class weights 13:1, raw 0-255 pixels)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import keras
import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.utils.class_weight import compute_class_weight

from training.augment import random_affine, random_xray
from training.experiments import Experiment


@dataclass(frozen=True)
class Arrays:
    """Model inputs (N, H, W, C) uint8 and labels (N,) for the parts of a run."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


STUDY_CLASS_WEIGHTS = {0: 13.0, 1: 1.0}  # written by hand in the study's notebook (~1134/84)


@dataclass(frozen=True)
class Recipe:
    """How a network is trained, apart from the network itself."""

    name: str
    subset: bool = False  # a seeded draw of the study's counts from train/, or all of it
    validation: bool = True  # carve the patient-grouped validation split out of train/
    rescale: bool = True  # Rescaling(1/255) inside the model, or raw 0-255 pixels
    fresh_augmentation: bool = True  # a new draw every epoch, or one draw reused
    class_weights: str = "balanced"  # "balanced" (n / 2 n_c) or "study" ({0: 13, 1: 1})


FULL_RECIPE = Recipe("full")
STUDY_RECIPE = Recipe("study", subset=True, validation=False, rescale=False,
                      fresh_augmentation=False, class_weights="study")


@dataclass
class TrainedModel:
    experiment: Experiment
    model: keras.Model
    history: dict[str, list[float]]
    epochs: int
    seconds: float
    images_seen: int  # augmented training images fed, all epochs
    augmented_once: np.ndarray | None = None  # the one draw, when the recipe reuses it
    best_epoch: int | None = None  # the epoch kept, where validation ROC AUC selects it

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds else 0.0


def balanced_class_weights(labels: np.ndarray) -> dict[int, float]:
    """n / (2 * n_class): the usual 'balanced' weights, as the study's `weights`."""
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights)}


def class_weights_for(experiment: Experiment, recipe: Recipe,
                      labels: np.ndarray) -> dict[int, float] | None:
    if not experiment.class_weights:
        return None
    return dict(STUDY_CLASS_WEIGHTS) if recipe.class_weights == "study" \
        else balanced_class_weights(labels)


def train_experiment(
    experiment: Experiment,
    data: Arrays,
    seed: int,
    epochs: int | None = None,
    log: Callable[[str], None] = print,
    recipe: Recipe = FULL_RECIPE,
) -> TrainedModel:
    """Build, compile and fit one experiment; logs one line per epoch."""
    keras.utils.set_random_seed(seed)  # weights, dropout and shuffling
    rng = np.random.default_rng(seed)  # augmentation
    epochs = epochs or experiment.epochs
    input_shape = data.x_fit.shape[1:]
    model = experiment.build(input_shape, rescale=recipe.rescale)
    model.compile(optimizer=_optimizer(experiment), loss="binary_crossentropy",
                  metrics=["accuracy"])
    class_weight = class_weights_for(experiment, recipe, data.y_fit)
    y_fit = data.y_fit.astype(np.float32)
    y_val = data.y_val.astype(np.float32)
    history: dict[str, list[float]] = {}
    tag = f"[{experiment.number} {experiment.name}]"
    augment = random_xray if experiment.augmentation == "xray" else random_affine
    selection = Selection(experiment, model) if experiment.early_stopping else None

    start = time.perf_counter()
    once = None if recipe.fresh_augmentation else augment(data.x_fit, rng)
    trained_epochs = 0
    # Augment epoch e+1 in a thread while epoch e trains; NumPy releases the GIL.
    with ThreadPoolExecutor(max_workers=1) as pool:
        next_batch = pool.submit(_draw, augment, data.x_fit, rng, once)
        for epoch in range(epochs):
            x_epoch = next_batch.result()
            if epoch + 1 < epochs:
                next_batch = pool.submit(_draw, augment, data.x_fit, rng, once)
            epoch_start = time.perf_counter()
            result = model.fit(
                x_epoch, y_fit,
                batch_size=experiment.batch_size,
                class_weight=class_weight,
                validation_data=(data.x_val, y_val) if len(y_val) else None,
                initial_epoch=epoch, epochs=epoch + 1,
                shuffle=True, verbose=0,
            )
            for key, values in result.history.items():
                history.setdefault(key, []).extend(float(v) for v in values)
            trained_epochs = epoch + 1
            stop = False
            if selection is not None and len(y_val):
                auc = selection.after_epoch(data.x_val, data.y_val)
                history.setdefault("val_auc", []).append(auc)
                history.setdefault("learning_rate", []).append(selection.learning_rate)
                stop = selection.should_stop
            log(f"{tag} epoch {epoch + 1}/{epochs} " + _format_epoch(history)
                + f" ({time.perf_counter() - epoch_start:.1f}s)")
            if stop:
                log(f"{tag} early stop: no better validation ROC AUC for "
                    f"{experiment.early_stopping.patience} epochs")
                next_batch.cancel()
                break
    if selection is not None and selection.best_weights is not None:
        model.set_weights(selection.best_weights)
        log(f"{tag} kept epoch {selection.best_epoch} (validation ROC AUC "
            f"{selection.best_auc:.4f})")
    seconds = time.perf_counter() - start
    return TrainedModel(experiment=experiment, model=model, history=history,
                        epochs=trained_epochs, seconds=seconds,
                        images_seen=trained_epochs * len(y_fit), augmented_once=once,
                        best_epoch=selection.best_epoch if selection and selection.best_epoch
                        else None)


def _optimizer(experiment: Experiment) -> keras.optimizers.Optimizer | str:
    if experiment.optimizer != "adamw":
        return experiment.optimizer  # the study's: Keras defaults
    return keras.optimizers.AdamW(learning_rate=experiment.learning_rate or 1e-3,
                                  weight_decay=experiment.weight_decay or 0.0)


class Selection:
    """Early stopping and learning-rate cuts on validation ROC AUC, across per-epoch fits
    (Keras' own callbacks reset at every `fit`, and this loop calls `fit` once an epoch)."""

    def __init__(self, experiment: Experiment, model: keras.Model) -> None:
        self.rules = experiment.early_stopping
        self.model = model
        self.best_auc = -1.0
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.epoch = 0
        self.since_best = 0

    @property
    def learning_rate(self) -> float:
        return float(np.asarray(self.model.optimizer.learning_rate))

    @property
    def should_stop(self) -> bool:
        return self.since_best >= self.rules.patience

    def after_epoch(self, x_val: np.ndarray, y_val: np.ndarray) -> float:
        scores = np.asarray(self.model.predict(x_val, batch_size=256, verbose=0)).reshape(-1)
        return self.record(validation_auc(y_val, scores))

    def record(self, auc: float) -> float:
        """Count one epoch with validation ROC AUC `auc` (NaN: a diverged network, or one
        class; never a new best)."""
        self.epoch += 1
        if np.isfinite(auc) and auc > self.best_auc:
            self.best_auc, self.best_epoch, self.since_best = auc, self.epoch, 0
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
        else:
            self.since_best += 1
            if self.since_best % self.rules.lr_patience == 0:
                self.model.optimizer.learning_rate.assign(
                    self.learning_rate * self.rules.lr_factor)
        return auc


def validation_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN where it is undefined (one class, or scores that are not finite)."""
    if len(np.unique(labels)) < 2 or not np.all(np.isfinite(scores)):
        return float("nan")
    return float(roc_auc_score(labels, scores))


def _draw(augment: Callable[[np.ndarray, np.random.Generator], np.ndarray],
          images: np.ndarray, rng: np.random.Generator, once: np.ndarray | None) -> np.ndarray:
    """This epoch's training images: the one reused draw, or a fresh one."""
    return once if once is not None else augment(images, rng)


def _format_epoch(history: dict[str, list[float]]) -> str:
    return " ".join(f"{key} {values[-1]:.4f}" for key, values in history.items())
