"""Calibration, operating point, intervals and the two-signature export, on synthetic data."""

import numpy as np
import pytest
import tensorflow as tf

from app.contract.card import Explanation
from app.contract.guard import fit_guard, guard_features
from app.services.occlusion import Occlusion
from training.experiments import EXPERIMENTS
from training.export import export_saved_model, occlusion_grid
from training.trust import (
    brier,
    fit_temperature,
    logits,
    reliability,
    sigmoid,
    threshold_for_sensitivity,
    wilson,
)


def test_threshold_is_the_highest_that_reaches_the_target_sensitivity():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200, int), np.zeros(100, int)]
    probabilities = np.r_[rng.uniform(0.3, 1, 200), rng.uniform(0, 0.7, 100)]
    t = threshold_for_sensitivity(labels, probabilities, 0.95)
    assert np.mean(probabilities[labels == 1] >= t) >= 0.95
    above = np.min(probabilities[(labels == 1) & (probabilities > t)])
    assert np.mean(probabilities[labels == 1] >= above) < 0.95  # any higher one misses it


def test_wilson_interval_matches_a_known_value():
    low, high = wilson(95, 100)
    assert low == pytest.approx(0.8883, abs=1e-3) and high == pytest.approx(0.9785, abs=1e-3)
    assert wilson(0, 0) == [0.0, 1.0]


def test_temperature_scaling_repairs_an_over_confident_score():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 4000)
    true_logit = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 1.5, 4000)
    overconfident = 4 * true_logit  # the same ranking, far too sure of itself
    temperature = fit_temperature(overconfident, labels)
    raw, calibrated = sigmoid(overconfident), sigmoid(overconfident / temperature)
    assert brier(labels, calibrated) < brier(labels, raw)
    assert reliability(labels, calibrated)["ece"] < reliability(labels, raw)["ece"]


@pytest.mark.slow
def test_exported_model_is_calibrated_and_explains_at_input_resolution(tmp_path):
    model = EXPERIMENTS[5].build((64, 64, 3))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 64, 64, 3)).astype(np.float32)
    model.fit(x, rng.integers(0, 2, 12), epochs=1, verbose=0)
    version_dir = export_saved_model(model, tmp_path / "m" / "1", calibration=(0.6, -0.3))
    loaded = tf.saved_model.load(str(version_dir))  # TensorFlow alone, as TF Serving would
    served = loaded.signatures["serving_default"](images=tf.constant(x))["probability"].numpy()
    assert np.max(np.abs(served - sigmoid(0.6 * logits(model, x) - 0.3))) < 1e-5
    explained = loaded.signatures["explain"](images=tf.constant(x))
    heat = explained["heatmap"].numpy()
    assert heat.shape == (12, 64, 64) and heat.min() >= 0 and heat.max() <= 1 + 1e-6
    assert np.max(np.abs(explained["probability"].numpy() - served)) < 1e-5
    # The card's grid, measured whole by the app through serving_default, is the signature's
    # map: one grid in the card and the export, the calibration cancelled by the 0-1 scaling.
    grid = {**occlusion_grid(64, 64), "coarse_stride": None, "refine": 0}
    whole = Occlusion(Explanation(method="occlusion", note="", **grid), 64, 64)
    _, measured = whole.explain(lambda batch: loaded.signatures["serving_default"](
        images=tf.constant(batch))["probability"].numpy(), x)
    assert heat.max() > 0 and np.max(np.abs(measured - heat)) < 0.01


def test_guard_threshold_is_a_high_percentile_of_training_distances():
    rng = np.random.default_rng(2)
    films = rng.normal(120, 10, (300, 64, 64, 3)).clip(0, 255).astype(np.uint8)
    guard = fit_guard(guard_features(films))
    assert np.mean(guard.distances(guard_features(films)) > guard.threshold) == \
        pytest.approx(0.01, abs=0.005)


def test_temperature_softens_an_over_confident_score_without_learning_prevalence():
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(3000, int), np.zeros(1000, int)]  # 75% positive, as validation
    true_logit = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 1.5, 4000)
    temperature = fit_temperature(4 * true_logit, labels)
    assert 2.5 < temperature < 6  # about the factor of 4 it was made over-confident by
    assert fit_temperature(true_logit, labels) == pytest.approx(1.0, abs=0.25)
