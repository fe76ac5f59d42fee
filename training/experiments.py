"""The original study's seven experiments: one small builder each, hyper-parameters as data.

Definitions follow `shared/reference/original-study.md` (models 3-7 are copied from its code).
Two registries:

- `EXPERIMENTS`, this project's full-data protocol. Its models 1-2 are a dense baseline
  Dense(16)-Dense(8)-Dense(6)-Dense(1), RMSprop, batch 10, 25 epochs, model 2 the same network
  with class weights. They differ from the study's (below): 25 epochs rather than 15, and
  model 2 is not the study's wider network. The report says so.
- `STUDY_EXPERIMENTS`, the study as its notebook ran it: model 1 the same dense network for
  15 epochs; model 2 a wider Dense(64)-Dense(32)-Dense(16)-Dense(8)-Dense(1), RMSprop, class
  weights, batch 20, 15 epochs; models 3-7 shared with `EXPERIMENTS`.

Every builder takes `rescale`: with it (the default) the model starts with `Rescaling(1/255)`,
so it takes raw 0-255 pixels and the exported SavedModel carries the scaling; without it the
network sees raw 0-255 values, as the study's did. Backend-agnostic Keras 3 only: the same
code trains under TensorFlow or JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers, regularizers

from training import defaults
from training.layers import HistogramEqualization

InputShape = tuple[int, int, int]


@dataclass(frozen=True)
class EarlyStopping:
    """Model selection on validation ROC AUC: the best epoch's weights are kept; the learning
    rate is cut after `lr_patience` epochs without a new best, training stops after `patience`."""

    patience: int = 8
    lr_patience: int = 3
    lr_factor: float = 0.5


@dataclass(frozen=True)
class Experiment:
    number: int
    name: str
    description: str
    build: Callable[..., keras.Model]  # (input_shape, rescale=True) -> model
    optimizer: str  # "adam" | "rmsprop" (Keras defaults) | "adamw" (learning_rate, weight_decay)
    batch_size: int
    epochs: int  # the most epochs; fewer when early stopping ends the run
    class_weights: bool
    augmentation: str = "study"  # "study": the study's shear/zoom/flip; "xray": random_xray
    learning_rate: float | None = None  # None = the optimizer's Keras default
    weight_decay: float | None = None
    early_stopping: EarlyStopping | None = None  # None = train every epoch, keep the last


def _inputs(input_shape: InputShape,
            rescale: bool) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input(shape=input_shape, name="image")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs) if rescale else inputs


def build_dense(input_shape: InputShape, rescale: bool = True) -> keras.Model:
    inputs, x = _inputs(input_shape, rescale)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dense(8, activation="relu")(x)
    x = layers.Dense(6, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="dense")


def build_dense_wide(input_shape: InputShape, rescale: bool = True) -> keras.Model:
    """The study notebook's model 2: Dense 64-32-16-8-1."""
    inputs, x = _inputs(input_shape, rescale)
    x = layers.Flatten()(x)
    for units in (64, 32, 16, 8):
        x = layers.Dense(units, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="dense_wide")


def _cnn(
    input_shape: InputShape,
    name: str,
    first_kernel: int,
    dropout: float = 0.0,
    regularizer: regularizers.Regularizer | None = None,
    rescale: bool = True,
) -> keras.Model:
    """The study's CNN family: conv(8)-pool-conv(4)-pool-[drop]-flatten-16-[drop]-8-1."""
    inputs, x = _inputs(input_shape, rescale)
    x = layers.Conv2D(8, first_kernel, activation="relu", padding="same",
                      kernel_regularizer=regularizer)(x)
    x = layers.MaxPooling2D(pool_size=2, strides=2)(x)
    x = layers.Conv2D(4, 5, activation="relu", kernel_regularizer=regularizer)(x)
    x = layers.MaxPooling2D(pool_size=2, strides=2)(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu", kernel_regularizer=regularizer)(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    x = layers.Dense(8, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name=name)


def build_cnn(input_shape: InputShape, rescale: bool = True) -> keras.Model:
    return _cnn(input_shape, "cnn", first_kernel=5, rescale=rescale)


def build_cnn_kernel4(input_shape: InputShape, rescale: bool = True) -> keras.Model:
    return _cnn(input_shape, "cnn_kernel4", first_kernel=4, rescale=rescale)


def build_cnn_dropout(input_shape: InputShape, rescale: bool = True) -> keras.Model:
    return _cnn(input_shape, "cnn_dropout", first_kernel=4, dropout=0.3, rescale=rescale)


def build_cnn_l1(input_shape: InputShape, rescale: bool = True) -> keras.Model:
    return _cnn(input_shape, "cnn_l1", first_kernel=4, dropout=0.3,
                regularizer=regularizers.L1(0.005), rescale=rescale)


def build_cnn_l2(input_shape: InputShape, rescale: bool = True) -> keras.Model:
    return _cnn(input_shape, "cnn_l2", first_kernel=4, dropout=0.3,
                regularizer=regularizers.L2(0.01), rescale=rescale)


def build_compact(input_shape: InputShape, rescale: bool = True) -> keras.Model:
    """Model 8, beyond the study: a compact modern CNN.

    Histogram equalisation inside the model (exposure and contrast differ between machines;
    the study's models see raw grey levels), then four stages of two 3x3 conv-BN-ReLU with
    16-32-64-128 filters and max pooling, global average pooling, dropout 0.3 and the head:
    about 0.3M parameters, cheap enough to train on two CPU cores in minutes. `rescale` is
    accepted for the registry's signature; equalisation already maps pixels to [0, 1].
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = HistogramEqualization(name="equalize")(inputs)
    for filters in (16, 32, 64, 128):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="compact_cnn")


EXPERIMENTS: dict[int, Experiment] = {
    e.number: e
    for e in (
        Experiment(1, "dense", "Dense 16-8-6-1 baseline", build_dense,
                   "rmsprop", batch_size=10, epochs=25, class_weights=False),
        Experiment(2, "dense_weighted", "Dense baseline with class weights", build_dense,
                   "rmsprop", batch_size=10, epochs=25, class_weights=True),
        Experiment(3, "cnn", "First CNN (5x5 kernels)", build_cnn,
                   "adam", batch_size=10, epochs=15, class_weights=True),
        Experiment(4, "cnn_kernel4", "CNN with a 4x4 first kernel, batch 8", build_cnn_kernel4,
                   "adam", batch_size=8, epochs=15, class_weights=True),
        Experiment(5, "cnn_dropout", "CNN with dropout 0.3", build_cnn_dropout,
                   "adam", batch_size=10, epochs=50, class_weights=True),
        Experiment(6, "cnn_l1", "CNN with dropout and L1(0.005)", build_cnn_l1,
                   "adam", batch_size=10, epochs=50, class_weights=True),
        Experiment(7, "cnn_l2", "CNN with dropout and L2(0.01)", build_cnn_l2,
                   "adam", batch_size=10, epochs=50, class_weights=True),
        # Beyond the study (--protocol stronger): every choice made on validation.
        Experiment(8, "compact_cnn", "Compact CNN: histogram equalisation, conv-BN stages, "
                   "global pooling", build_compact, "adamw", batch_size=64, epochs=30,
                   class_weights=True, augmentation="xray", learning_rate=2e-3,
                   weight_decay=1e-4, early_stopping=EarlyStopping()),
    )
}

# The original study's seven experiments ("all" in the full protocol), and the newer ones.
STUDY_NUMBERS = tuple(range(1, 8))
NEW_NUMBERS = tuple(n for n in EXPERIMENTS if n not in STUDY_NUMBERS)

# The study as its notebook ran it: its own models 1 and 2, models 3-7 shared.
STUDY_EXPERIMENTS: dict[int, Experiment] = {
    **EXPERIMENTS,
    1: Experiment(1, "dense", "Dense 16-8-6-1 baseline", build_dense,
                  "rmsprop", batch_size=10, epochs=15, class_weights=False),
    2: Experiment(2, "dense_wide_weighted", "Dense 64-32-16-8-1 with class weights",
                  build_dense_wide, "rmsprop", batch_size=20, epochs=15, class_weights=True),
}

# How the full-data protocol's models 1 and 2 differ from the study's, for the report.
FULL_PROTOCOL_DIFFERENCES = {
    1: "25 epochs here; the study trained 15",
    2: "here the model-1 network (16-8-6-1) with balanced class weights, batch 10, "
       "25 epochs; the study's model 2 is a wider 64-32-16-8-1 network, batch 20, 15 epochs",
}

# The study's best model: the one exported and served by default.
EXPORTED_EXPERIMENT = 5
# What each exported experiment is called in the models folder (each has its own versions).
EXPORT_NAMES = {EXPORTED_EXPERIMENT: defaults.MODEL_NAME, 8: defaults.COMPACT_MODEL_NAME}
# The served models, which `--protocol real-films` retrains (training/real_films.py).
REAL_FILM_NUMBERS = tuple(EXPORT_NAMES)


def parse_selection(text: str, allowed: tuple[int, ...] = STUDY_NUMBERS) -> list[int]:
    """'all' or '1,5' or '3-5' -> sorted experiment numbers from `allowed`; others are an
    error. 'all' is every number in `allowed`."""
    if text.strip().lower() == "all":
        return sorted(allowed)
    chosen: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (int(p) for p in part.split("-", 1))
            chosen.update(range(lo, hi + 1))
        elif part:
            chosen.add(int(part))
    unknown = chosen - set(allowed)
    if unknown or not chosen:
        raise ValueError(f"unknown experiments {sorted(unknown)}; choose from "
                         f"{', '.join(map(str, allowed))} or 'all'")
    return sorted(chosen)
