"""What makes an exported model's output trustworthy, all chosen on the validation split:
temperature scaling of its logit, an operating point for a target sensitivity with
confidence intervals, and the input guard. The test split is only measured, once, for the
report.

Why temperature scaling with balanced weights, not Platt scaling: Platt's intercept learns
the validation split's prevalence (74% pneumonia, the training folder's), which is not a
clinic's, and a development run showed it: Platt on validation made the test split's
calibration worse (Brier 0.078 -> 0.128, ECE 0.041 -> 0.156; test prevalence 62.5%). The
network was trained with balanced class weights, so its logit is fitted for even odds; a
single temperature, fitted with balanced weights, corrects only how sure it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
from sklearn.linear_model import LogisticRegression

from app.contract.guard import InputGuard, fit_guard, guard_features
from app.contract.intervals import wilson
from training.data import Arrays

ECE_BINS = 10


def logits(model: keras.Model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N,) pre-sigmoid outputs: the last Dense layer's input times its kernel, plus bias.
    Computed exactly, not as log(p / (1 - p)), which saturates where p rounds to 1."""
    head = model.layers[-1]
    features = keras.Model(model.inputs, head.input)
    penultimate = np.asarray(features.predict(images, batch_size=batch_size, verbose=0))
    kernel, bias = (np.asarray(w) for w in head.get_weights())
    return (penultimate @ kernel + bias).reshape(-1).astype(np.float64)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_temperature(val_logits: np.ndarray, val_labels: np.ndarray) -> float:
    """T of p = sigmoid(logit / T), by maximum likelihood on validation with the classes
    weighted evenly (the prevalence of the validation split is not learned)."""
    fit = LogisticRegression(C=1e6, max_iter=1000, fit_intercept=False,
                             class_weight="balanced")
    fit.fit(val_logits.reshape(-1, 1), val_labels)
    slope = float(fit.coef_[0, 0])
    # A logit that does not rank validation at all (a degenerate smoke-run model) gives a
    # slope of 0 or less: no temperature means anything then, so it is left at 1.
    return 1.0 / slope if slope > 1e-6 else 1.0


def threshold_for_sensitivity(labels: np.ndarray, probabilities: np.ndarray,
                              target: float) -> float:
    """The highest threshold whose sensitivity (p >= t on positives) reaches `target`."""
    positives = np.sort(probabilities[labels == 1])[::-1]
    needed = max(1, math.ceil(target * len(positives)))
    return float(positives[needed - 1])


def rates_with_intervals(labels: np.ndarray, probabilities: np.ndarray,
                         threshold: float) -> dict:
    predicted = probabilities >= threshold
    tp = int(np.sum(predicted & (labels == 1)))
    tn = int(np.sum(~predicted & (labels == 0)))
    positives, negatives = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    return {"sensitivity": tp / positives if positives else 0.0,
            "sensitivity_ci": wilson(tp, positives),
            "specificity": tn / negatives if negatives else 0.0,
            "specificity_ci": wilson(tn, negatives),
            "positives": positives, "negatives": negatives}


def brier(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean((probabilities - labels) ** 2))


def reliability(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Equal-width bins: mean confidence, observed frequency and count; and the ECE."""
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, ECE_BINS - 1)
    confidence, frequency, counts = [], [], []
    for b in range(ECE_BINS):
        inside = which == b
        counts.append(int(inside.sum()))
        confidence.append(float(probabilities[inside].mean()) if inside.any() else None)
        frequency.append(float(labels[inside].mean()) if inside.any() else None)
    ece = sum(n * abs(c - f) for n, c, f in zip(counts, confidence, frequency) if n)
    return {"confidence": confidence, "frequency": frequency, "counts": counts,
            "ece": float(ece / max(len(labels), 1))}


def guard_for(fit_images: np.ndarray, val_images: np.ndarray) -> tuple[InputGuard, float]:
    """The input guard fitted on the training part, and its false alarm rate on validation."""
    guard = fit_guard(guard_features(fit_images))
    false_alarms = float(np.mean(guard.distances(guard_features(val_images)) > guard.threshold))
    return guard, false_alarms


@dataclass(frozen=True)
class Trust:
    """Everything `assess` chose on validation, and the test split measured with it."""

    temperature: float
    platt: tuple[float, float]  # (a, b) of p = sigmoid(a * logit + b): (1 / T, 0)
    raw: dict[str, np.ndarray]  # part ("validation", "test") -> (N,) uncalibrated p
    calibrated: dict[str, np.ndarray]  # part -> (N,) calibrated p, as the SavedModel serves
    operating_point: dict  # the card's OperatingPoint, as a dict
    brier: dict[str, dict[str, float]]  # part -> {"raw", "calibrated"}
    reliability: dict[str, dict[str, dict]]  # part -> {"raw", "calibrated"} -> bins
    guard: InputGuard
    guard_false_alarms: float  # share of validation films the guard flags


def assess(model: keras.Model, arrays: Arrays, target_sensitivity: float) -> Trust:
    """Calibration, operating point and guard, all chosen on the fit/validation parts."""
    z = {"validation": logits(model, arrays.x_val), "test": logits(model, arrays.x_test)}
    labels = {"validation": arrays.y_val, "test": arrays.y_test}
    temperature = fit_temperature(z["validation"], arrays.y_val)
    a, b = 1.0 / temperature, 0.0
    raw = {part: sigmoid(values) for part, values in z.items()}
    calibrated = {part: sigmoid(a * values + b) for part, values in z.items()}
    threshold = threshold_for_sensitivity(arrays.y_val, calibrated["validation"],
                                          target_sensitivity)
    guard, false_alarms = guard_for(arrays.x_fit, arrays.x_val)
    return Trust(
        temperature=temperature, platt=(a, b), raw=raw, calibrated=calibrated,
        operating_point={
            "threshold": threshold, "target_sensitivity": target_sensitivity,
            "chosen_on": "validation",
            **{part: rates_with_intervals(labels[part], calibrated[part], threshold)
               for part in labels}},
        brier={part: {"raw": brier(labels[part], raw[part]),
                      "calibrated": brier(labels[part], calibrated[part])} for part in labels},
        reliability={part: {"raw": reliability(labels[part], raw[part]),
                            "calibrated": reliability(labels[part], calibrated[part])}
                     for part in labels},
        guard=guard, guard_false_alarms=false_alarms)
