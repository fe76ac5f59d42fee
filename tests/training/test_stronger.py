"""Model 8's selection on validation ROC AUC, and the stronger protocol's report and export."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from app.contract.card import read_card
from app.services.registry import LoadedModel, find_model
from tests.helpers import make_dataset_tree
from training.experiments import EarlyStopping, Experiment, build_compact
from training.train import Arrays, Selection, train_experiment, validation_auc


class _Rate:
    def __init__(self, value: float) -> None:
        self.value = value

    def assign(self, value: float) -> None:
        self.value = value

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.value, dtype=dtype)


class _Model:
    """Just what the selection touches: weights and the optimizer's learning rate."""

    def __init__(self) -> None:
        self.weights = [np.zeros(2)]
        self.optimizer = type("Optimizer", (), {"learning_rate": _Rate(1e-3)})()

    def get_weights(self):
        return [w.copy() for w in self.weights]


def test_selection_keeps_the_best_epoch_cuts_the_rate_and_stops_on_validation_auc():
    rules = EarlyStopping(patience=4, lr_patience=2, lr_factor=0.5)
    experiment = Experiment(99, "x", "x", build_compact, "adamw", 8, 30, True,
                            early_stopping=rules)
    model = _Model()
    selection = Selection(experiment, model)
    aucs = [0.80, 0.90, float("nan"), 0.85, 0.90, 0.89]  # best at epoch 2; a tie is no best
    rates, stops = [], []
    for epoch, auc in enumerate(aucs, start=1):
        model.weights = [np.full(2, epoch)]
        selection.record(auc)
        rates.append(selection.learning_rate)
        stops.append(selection.should_stop)
    assert selection.best_epoch == 2 and selection.best_auc == 0.90
    np.testing.assert_array_equal(selection.best_weights[0], [2, 2])  # epoch 2's weights
    assert rates == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]  # cut after 2 and 4 epochs
    assert stops == [False] * 5 + [True]  # 4 epochs without a better AUC


def test_validation_auc_is_nan_where_undefined():
    assert np.isnan(validation_auc(np.array([1, 1, 1]), np.array([0.2, 0.4, 0.9])))
    assert np.isnan(validation_auc(np.array([0, 1]), np.array([np.nan, 0.5])))
    assert validation_auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0


def _separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    films = rng.integers(0, 256, (n, 16, 16, 3)).astype(np.uint8)
    films[labels == 1, 4:12, 4:12] = 255  # a bright patch: learnable in a few epochs
    return films, labels


@pytest.mark.slow
def test_training_restores_the_weights_of_the_best_validation_epoch():
    x_fit, y_fit = _separable(64, 0)
    x_val, y_val = _separable(32, 1)
    experiment = Experiment(99, "tiny", "tiny compact", build_compact, "adamw", batch_size=16,
                            epochs=6, class_weights=True, augmentation="xray",
                            learning_rate=5e-3, early_stopping=EarlyStopping(patience=2,
                                                                             lr_patience=1))
    data = Arrays(x_fit, y_fit, x_val, y_val, x_val, y_val)
    trained = train_experiment(experiment, data, seed=3, log=lambda line: None)
    aucs = trained.history["val_auc"]
    assert trained.best_epoch == int(np.nanargmax(aucs)) + 1  # the first best
    kept = roc_auc_score(y_val, np.asarray(trained.model.predict(x_val, verbose=0)).ravel())
    assert kept == pytest.approx(max(aucs), abs=1e-6)  # the best epoch's weights, restored
    assert len(trained.history["learning_rate"]) == len(aucs) == trained.epochs


@pytest.fixture(scope="module")
def stronger_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stronger")
    data = make_dataset_tree(root / "data", {
        "train": {"NORMAL": 24, "PNEUMONIA": 24}, "test": {"NORMAL": 8, "PNEUMONIA": 8}})
    out, cache = root / "out", root / "cache"
    common = ["--data-dir", str(data), "--out", str(out), "--max-epochs", "1",
              "--cache-dir", str(cache)]
    # Model 5 first, as the full protocol exports it: the stronger report compares with it.
    full = subprocess.run([sys.executable, "-m", "training", "--experiments", "5", *common],
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    result = subprocess.run([sys.executable, "-m", "training", "--protocol", "stronger",
                             "--seeds", "2", *common], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


@pytest.mark.slow
def test_stronger_protocol_reports_every_seed_and_their_spread(stronger_run):
    out, stdout = stronger_run
    assert "=== experiment 8, seed 42 (1/2)" in stdout and "seed 43 (2/2)" in stdout
    report = json.loads((out / "report.json").read_text())
    assert [e["number"] for e in report["experiments"]] == [5]  # the full run's, kept
    section = report["stronger_models"]
    assert section["seeds"] == [42, 43]
    (entry,) = section["experiments"]
    assert [r["seed"] for r in entry["runs"]] == [42, 43]
    for key in ("roc_auc", "accuracy", "recall", "specificity"):
        values = [r["metrics"][key] for r in entry["runs"]]
        assert entry["summary"][key]["mean"] == pytest.approx(np.mean(values))
        assert entry["summary"][key]["sd"] == pytest.approx(np.std(values, ddof=1))
    for run in entry["runs"]:
        assert sum(map(sum, run["metrics"]["confusion_matrix"])) == 16
        assert 0 <= run["threshold"] <= 1 and run["validation_roc_auc"] is not None
    assert section["baseline"]["number"] == 5 and section["reference"]["roc_auc"] == 0.968
    for path in entry["figures"].values():
        assert (out / path).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_stronger_protocol_exports_the_best_validation_seed_beside_model_5(stronger_run):
    out, _ = stronger_run
    entry = json.loads((out / "report.json").read_text())["stronger_models"]["experiments"][0]
    best = max(entry["runs"], key=lambda r: r["validation_roc_auc"])
    assert entry["exported"]["seed"] == best["seed"]
    path = find_model(out, "pneumonia_compact")
    assert path == out / "pneumonia_compact" / "1"
    assert find_model(out, "pneumonia") == out / "pneumonia" / "1"  # untouched, its own name
    card = read_card(path)
    assert card.name == "pneumonia_compact" and card.training.protocol == "stronger"
    assert card.training.seed == best["seed"] and card.threshold == pytest.approx(
        best["threshold"])
    assert "histogram equalisation" in card.input.scaling
    model = LoadedModel(path)
    films = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    probabilities, heatmaps = model.explain(films)
    np.testing.assert_allclose(probabilities, model.predict(films), atol=1e-6)
    assert heatmaps.shape == (2, 64, 64)
