"""Train one experiment: a fresh augmentation of the training split every epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from training.augment import random_affine
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


@dataclass
class TrainedModel:
    experiment: Experiment
    model: keras.Model
    history: dict[str, list[float]]
    epochs: int
    seconds: float
    images_seen: int  # augmented training images fed, all epochs

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds else 0.0


def balanced_class_weights(labels: np.ndarray) -> dict[int, float]:
    """n / (2 * n_class): the usual 'balanced' weights, as the study's `weights`."""
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights)}


def train_experiment(
    experiment: Experiment,
    data: Arrays,
    seed: int,
    epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> TrainedModel:
    """Build, compile and fit one experiment; logs one line per epoch."""
    keras.utils.set_random_seed(seed)  # weights, dropout and shuffling
    rng = np.random.default_rng(seed)  # augmentation
    epochs = epochs or experiment.epochs
    input_shape = data.x_fit.shape[1:]
    model = experiment.build(input_shape)
    model.compile(optimizer=experiment.optimizer, loss="binary_crossentropy",
                  metrics=["accuracy"])
    class_weight = balanced_class_weights(data.y_fit) if experiment.class_weights else None
    y_fit = data.y_fit.astype(np.float32)
    y_val = data.y_val.astype(np.float32)
    history: dict[str, list[float]] = {}
    tag = f"[{experiment.number} {experiment.name}]"

    start = time.perf_counter()
    # Augment epoch e+1 in a thread while epoch e trains; NumPy releases the GIL.
    with ThreadPoolExecutor(max_workers=1) as pool:
        next_batch = pool.submit(random_affine, data.x_fit, rng)
        for epoch in range(epochs):
            x_epoch = next_batch.result()
            if epoch + 1 < epochs:
                next_batch = pool.submit(random_affine, data.x_fit, rng)
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
            log(f"{tag} epoch {epoch + 1}/{epochs} " + _format_epoch(history)
                + f" ({time.perf_counter() - epoch_start:.1f}s)")
    seconds = time.perf_counter() - start
    return TrainedModel(experiment=experiment, model=model, history=history, epochs=epochs,
                        seconds=seconds, images_seen=epochs * len(y_fit))


def _format_epoch(history: dict[str, list[float]]) -> str:
    return " ".join(f"{key} {values[-1]:.4f}" for key, values in history.items())
