"""One fit per run on stock Keras parts: the epochs' batches, the selection callbacks, a real
short fit that restores its best epoch, and the class weights."""

import keras
import numpy as np
import pytest

from training.augment import random_xray
from training.data import Arrays
from training.experiments import EarlyStopping, Experiment, build_compact
from training.train import (
    MONITOR,
    AugmentedBatches,
    balanced_class_weights,
    selection_callbacks,
    train_experiment,
)


def _films(n: int = 23) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8), np.arange(n) % 2


def _epoch(batches: AugmentedBatches, order=None) -> list[tuple[np.ndarray, np.ndarray]]:
    order = range(len(batches)) if order is None else order
    return [batches[i] for i in order]


def test_batches_cover_every_film_once_an_epoch_in_a_new_order():
    films, labels = _films()
    batches = AugmentedBatches(films, labels, 5, random_xray, seed=1)
    first = _epoch(batches)
    assert len(batches) == 5 and [len(y) for _, y in first] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate([y for _, y in first])) == sorted(labels)
    assert first[0][0].dtype == np.float32 and first[0][0].shape == (5, 16, 16, 1)
    batches.on_epoch_end()
    second = _epoch(batches)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, second))


def test_batches_are_the_same_for_a_seed_and_epoch_in_any_call_order():
    films, labels = _films()
    a = AugmentedBatches(films, labels, 5, random_xray, seed=7)
    b = AugmentedBatches(films, labels, 5, random_xray, seed=7)
    a.on_epoch_end()
    b.on_epoch_end()
    forwards, backwards = _epoch(a), _epoch(b, order=range(len(b) - 1, -1, -1))[::-1]
    for (xa, ya), (xb, yb) in zip(forwards, backwards):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    other = AugmentedBatches(films, labels, 5, random_xray, seed=8)
    other.on_epoch_end()
    assert not np.array_equal(_epoch(other)[0][0], forwards[0][0])


def test_batches_reuse_the_one_draw_when_given_it():
    films, labels = _films()
    once = random_xray(films, np.random.default_rng(3))
    batches = AugmentedBatches(films, labels, 5, random_xray, seed=1, once=once)
    for _ in range(2):
        for x, y in _epoch(batches):
            for film, label in zip(x, y):
                match = [i for i in range(len(once)) if np.array_equal(once[i], film)]
                assert match and labels[match[0]] == label
        batches.on_epoch_end()


def test_keras_auc_is_finite_for_one_class_and_for_nan_scores():
    """Why a NaN never reaches EarlyStopping: its `best` starts unset, so a NaN in the first
    epoch would become the best; Keras' AUC never gives one."""
    auc = keras.metrics.AUC(name="auc")
    auc.update_state(np.array([1.0, 1.0, 1.0]), np.array([0.2, 0.4, 0.9]))
    assert np.isfinite(float(auc.result()))
    auc.reset_state()
    auc.update_state(np.array([0.0, 1.0, 1.0]), np.full(3, np.nan))
    assert np.isfinite(float(auc.result()))


class _Scripted(keras.Model):
    """A model whose weights say which epoch they are from."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch_marker = self.add_weight(shape=(2,), initializer="zeros", name="marker")


def test_selection_callbacks_keep_the_best_epoch_cut_the_rate_and_stop_on_val_auc():
    model = _Scripted()
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3), loss="mse")
    callbacks = selection_callbacks(EarlyStopping(patience=4, lr_patience=2, lr_factor=0.5))
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    aucs = [0.80, 0.90, float("nan"), 0.85, 0.90, 0.89]  # best at epoch 2; a tie is no best
    rates, stops = [], []
    for epoch, auc in enumerate(aucs):
        model.epoch_marker.assign(np.full(2, epoch + 1.0))
        logs = {MONITOR: auc}
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        rates.append(logs["learning_rate"])  # the rate this epoch trained at
        stops.append(bool(model.stop_training))
    for callback in callbacks:
        callback.on_train_end()
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4])  # cut after 2, 4
    assert float(model.optimizer.learning_rate) == pytest.approx(2.5e-4)
    assert stops == [False] * 5 + [True]  # 4 epochs without a better AUC
    np.testing.assert_array_equal(np.asarray(model.epoch_marker), [2, 2])  # epoch 2's, back


def _separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    films = rng.integers(0, 256, (n, 16, 16, 3)).astype(np.uint8)
    films[labels == 1, 4:12, 4:12] = 255  # a bright patch: learnable in an epoch or two
    return films, labels


@pytest.mark.slow
def test_training_restores_the_best_validation_epoch_and_cuts_the_rate():
    x_fit, y_fit = _separable(64, 0)
    x_val, y_val = _separable(32, 1)
    experiment = Experiment(99, "tiny", "tiny compact", build_compact, "adamw", batch_size=16,
                            epochs=8, class_weights=True, augmentation="xray",
                            learning_rate=5e-3, early_stopping=EarlyStopping(patience=2,
                                                                             lr_patience=1))
    lines = []
    trained = train_experiment(experiment, Arrays(x_fit, y_fit, x_val, y_val, x_val, y_val),
                               seed=3, log=lines.append)
    history = trained.history
    assert trained.epochs == len(history["val_auc"]) < 8  # stopped early
    assert trained.best_epoch == int(np.argmax(history["val_auc"])) + 1  # the first best
    assert min(history["learning_rate"]) < 5e-3  # cut on the plateau
    kept = trained.model.evaluate(x_val, y_val.astype(np.float32), batch_size=256,
                                  verbose=0, return_dict=True)
    best = trained.best_epoch - 1
    assert kept["auc"] == pytest.approx(history["val_auc"][best], abs=1e-6)
    assert kept["loss"] == pytest.approx(history["val_loss"][best], rel=1e-4)
    assert kept["loss"] != pytest.approx(history["val_loss"][-1], rel=1e-4)  # not the last
    assert any("early stop" in line for line in lines)
    assert any(f"kept epoch {trained.best_epoch}" in line for line in lines)


def test_balanced_class_weights_match_study_formula():
    labels = np.array([0] * 25 + [1] * 75)
    assert balanced_class_weights(labels) == pytest.approx({0: 2.0, 1: 100 / 150})
