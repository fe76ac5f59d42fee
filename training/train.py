"""Train one experiment under a recipe: this project's (a fresh augmentation every epoch,
balanced class weights, rescaling inside the model) or the original study's (one augmented
draw reused every epoch, class weights 13:1, raw 0-255 pixels).

One `fit` per run, on stock Keras parts: `AugmentedBatches` (a `PyDataset`) feeds the
epochs, and an experiment that selects on validation ROC AUC (its `early_stopping` rules)
gets Keras' `AUC` metric, `ReduceLROnPlateau` and `EarlyStopping(restore_best_weights=True)`,
all on `val_auc`. Why a NaN never becomes the best epoch: `EarlyStopping` would take a NaN
in the first epoch as its best (its `best` starts unset, and anything beats that), but Keras'
`AUC` divides with `divide_no_nan`, so `val_auc` is finite even for one class or NaN scores
(a test checks it); `TerminateOnNaN` ends a run whose loss diverged, and the best epoch's
weights come back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from training.augment import RealFilmAugmentation, random_affine, random_xray
from training.data import Arrays
from training.experiments import EarlyStopping, Experiment
from training.films import FilmBatches

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]

STUDY_CLASS_WEIGHTS = {0: 13.0, 1: 1.0}  # written by hand in the study's notebook (~1134/84)
VALIDATION_BATCH = 256  # inference only: the batch size changes no result, only the speed
MONITOR = "val_auc"  # ROC AUC on the validation split: what selection maximises
# Keras' AUC counts at evenly spaced thresholds, which lose resolution where a sharp model's
# scores crowd near 0 and 1: on the committed model 8's test scores 200 (the default) give
# 0.952 against the exact 0.963, 2,000 give it within 1e-4.
AUC_THRESHOLDS = 2000


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


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled (images, labels) training batches, augmented on the fly.

    Epoch e's order comes from the seed sequence (seed, e) and batch i's augmentation from
    (seed, e, i): a run is the same whatever order Keras asks for batches in. With `once`
    (the study's recipe), every epoch reshuffles that one augmented draw instead.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 augment: Augment, seed: int, once: np.ndarray | None = None) -> None:
        super().__init__()  # one worker: Keras' tf.data prefetch overlaps it with training
        self.images = images  # (N, H, W, C) uint8
        self.labels = labels.astype(np.float32)  # (N,)
        self.batch_size, self.augment, self.seed, self.once = batch_size, augment, seed, once
        self._epoch = (0, self._order(0))  # (epoch, order): read together, set together

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, order = self._epoch
        part = order[index * self.batch_size:(index + 1) * self.batch_size]
        if self.once is not None:
            return self.once[part], self.labels[part]
        rng = np.random.default_rng((self.seed, epoch, index))
        return self.augment(self.images[part], rng), self.labels[part]  # float32 0-255

    def on_epoch_end(self) -> None:
        epoch = self._epoch[0] + 1
        self._epoch = (epoch, self._order(epoch))

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.labels))


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


def selection_callbacks(rules: EarlyStopping) -> list[keras.callbacks.Callback]:
    """Stock callbacks for an experiment's selection rules, all maximising `val_auc` with no
    margin (any higher AUC is a new best): cut the learning rate after `lr_patience` epochs
    without a best (and again after as many more), stop after `patience`, and restore the
    best epoch's weights at the end, stopped early or not."""
    return [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ReduceLROnPlateau(monitor=MONITOR, mode="max", min_delta=0.0,
                                          factor=rules.lr_factor, patience=rules.lr_patience),
        keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", min_delta=0.0,
                                      patience=rules.patience, restore_best_weights=True),
    ]


def train_experiment(
    experiment: Experiment,
    data: Arrays,
    seed: int,
    epochs: int | None = None,
    log: Callable[[str], None] = print,
    recipe: Recipe = FULL_RECIPE,
    films: np.ndarray | None = None,
    film_augment: RealFilmAugmentation | None = None,
) -> TrainedModel:
    """Build, compile and fit one experiment; logs one line per epoch.

    An experiment with the "real_films" augmentation trains on `films`, the fit part's
    (N, H, W) uint8 films at their own resolution (training/films.py), in `data.y_fit`'s
    order: each is augmented there by `film_augment` (default: RealFilmAugmentation()) and
    prepared as the app prepares it; `data.x_fit` then only gives the input shape.
    ValueError without them."""
    keras.utils.set_random_seed(seed)  # weights, dropout
    epochs = epochs or experiment.epochs
    model = experiment.build(data.x_fit.shape[1:], rescale=recipe.rescale)
    has_validation = len(data.y_val) > 0
    selecting = experiment.early_stopping is not None and has_validation
    auc = [keras.metrics.AUC(num_thresholds=AUC_THRESHOLDS, name="auc")] if selecting else []
    model.compile(optimizer=_optimizer(experiment), loss="binary_crossentropy",
                  metrics=["accuracy", *auc])
    batches = _batches(experiment, recipe, data, seed, films, film_augment)
    tag = f"[{experiment.number} {experiment.name}]"
    callbacks = selection_callbacks(experiment.early_stopping) if selecting else []
    start = time.perf_counter()
    history = model.fit(
        batches, epochs=epochs,
        class_weight=class_weights_for(experiment, recipe, data.y_fit),
        validation_data=(data.x_val, data.y_val.astype(np.float32)) if has_validation else None,
        validation_batch_size=VALIDATION_BATCH,
        shuffle=False,  # AugmentedBatches shuffles, seeded per epoch
        verbose=0, callbacks=[*callbacks, _progress(tag, epochs, log)],
    ).history
    seconds = time.perf_counter() - start
    trained_epochs = len(history["loss"])
    best_epoch = _best_epoch(callbacks, tag, log) if selecting else None
    return TrainedModel(experiment=experiment, model=model,
                        history={k: [float(v) for v in values] for k, values in history.items()},
                        epochs=trained_epochs, seconds=seconds,
                        images_seen=trained_epochs * len(data.y_fit),
                        augmented_once=batches.once,
                        best_epoch=best_epoch)


def _batches(experiment: Experiment, recipe: Recipe, data: Arrays, seed: int,
             films: np.ndarray | None,
             film_augment: RealFilmAugmentation | None) -> keras.utils.PyDataset:
    """The training batches of `experiment`'s augmentation."""
    if experiment.augmentation == "real_films":
        if films is None or len(films) != len(data.y_fit):
            raise ValueError("the real_films augmentation needs the fit part's films")
        height, width, channels = data.x_fit.shape[1:]
        # Two threads: drawing and cropping a 224 px film costs about 6 ms, a whole epoch
        # of them more than model 5's training step does.
        return FilmBatches(films, data.y_fit, experiment.batch_size,
                           film_augment or RealFilmAugmentation(), (height, width), channels,
                           seed, workers=2)
    augment = random_xray if experiment.augmentation == "xray" else random_affine
    once = None if recipe.fresh_augmentation else augment(data.x_fit, np.random.default_rng(seed))
    return AugmentedBatches(data.x_fit, data.y_fit, experiment.batch_size, augment, seed, once)


def _optimizer(experiment: Experiment) -> keras.optimizers.Optimizer | str:
    if experiment.optimizer != "adamw":
        return experiment.optimizer  # the study's: Keras defaults
    return keras.optimizers.AdamW(learning_rate=experiment.learning_rate or 1e-3,
                                  weight_decay=experiment.weight_decay or 0.0)


def _progress(tag: str, epochs: int, log: Callable[[str], None]) -> keras.callbacks.Callback:
    """One log line per epoch, after the other callbacks have added to its logs."""
    started = [0.0]

    def begin(epoch: int, logs: dict | None = None) -> None:
        started[0] = time.perf_counter()

    def end(epoch: int, logs: dict | None = None) -> None:
        values = " ".join(f"{key} {value:.4f}" for key, value in (logs or {}).items())
        log(f"{tag} epoch {epoch + 1}/{epochs} {values} "
            f"({time.perf_counter() - started[0]:.1f}s)")

    return keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)


def _best_epoch(callbacks: list[keras.callbacks.Callback], tag: str,
                log: Callable[[str], None]) -> int | None:
    """The 1-based epoch whose weights EarlyStopping restored, logged."""
    stopper = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))
    if stopper.stopped_epoch:
        log(f"{tag} early stop: no better validation ROC AUC for {stopper.patience} epochs")
    if stopper.best is None or not np.isfinite(stopper.best):
        return None
    log(f"{tag} kept epoch {stopper.best_epoch + 1} (validation ROC AUC {stopper.best:.4f})")
    return stopper.best_epoch + 1
