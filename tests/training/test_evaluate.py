import numpy as np
import pytest

from training.evaluate import binary_metrics


def test_binary_metrics_on_known_counts():
    # 4 negatives, 6 positives; at 0.5: TN=3 FP=1 FN=2 TP=4
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.2])
    m = binary_metrics(labels, probs, 0.5)
    assert m["confusion_matrix"] == [[3, 1], [2, 4]]
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["error"] == pytest.approx(0.3)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["recall"] == pytest.approx(4 / 6)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6))
    # AUC by pair counting: positives outrank negatives in 16 of 24 pairs, one tie counts 1/2
    assert m["roc_auc"] == pytest.approx(16.5 / 24)


def test_binary_metrics_threshold_is_inclusive():
    m = binary_metrics(np.array([0, 1]), np.array([0.5, 0.5]), 0.5)
    assert m["confusion_matrix"] == [[0, 1], [0, 1]]


def test_binary_metrics_single_class_has_no_auc():
    assert binary_metrics(np.array([1, 1]), np.array([0.2, 0.9]), 0.5)["roc_auc"] is None

