"""Probabilities and the metrics the report shows, computed with scikit-learn."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from training.reference import STUDY_RESULTS

if TYPE_CHECKING:
    from training.data import Arrays
    from training.train import TrainedModel


def predict_probabilities(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, H, W, C) raw pixels -> (N,) float32 P(PNEUMONIA)."""
    if len(images) == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0),
                      dtype=np.float32).reshape(-1)


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Metrics of P(positive) against 0/1 labels at `threshold` (predict 1 when p >= t)."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    (tn, fp), (fn, tp) = confusion_matrix(labels, predicted, labels=[0, 1])
    accuracy = float(accuracy_score(labels, predicted))
    both_classes = len(np.unique(labels)) == 2
    return {
        "n": int(len(labels)),
        "threshold": float(threshold),
        "accuracy": accuracy,
        "error": 1.0 - accuracy,
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        # AUC is undefined on one class (tiny smoke runs); report null rather than crash.
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both_classes else None,
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],  # rows: true N, P
    }


def spread(values) -> dict:
    """Mean, sample standard deviation (0 for one value), min and max of a few runs."""
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max())}


def evaluate_experiment(trained: TrainedModel, arrays: Arrays, seed: int,
                        threshold: float) -> tuple[dict, np.ndarray]:
    """The report entry of one trained experiment (metrics of every part at `threshold`),
    and its (N,) test probabilities."""
    experiment = trained.experiment
    probabilities = {part: predict_probabilities(trained.model, x)
                     for part, x in (("train", arrays.x_fit), ("validation", arrays.x_val),
                                     ("test", arrays.x_test))}
    labels = {"train": arrays.y_fit, "validation": arrays.y_val, "test": arrays.y_test}
    selection = {"learning_rate": experiment.learning_rate,
                 "weight_decay": experiment.weight_decay, "best_epoch": trained.best_epoch,
                 "selected_on": "validation ROC AUC"}
    entry = {
        "number": experiment.number,
        "name": experiment.name,
        "description": experiment.description,
        "seed": seed,
        "recipe": {"optimizer": experiment.optimizer, "batch_size": experiment.batch_size,
                   "epochs": trained.epochs, "study_epochs": experiment.epochs,
                   "class_weights": experiment.class_weights, "loss": "binary_crossentropy",
                   **(selection if experiment.early_stopping else {})},
        "parameters": int(trained.model.count_params()),
        "train_seconds": round(trained.seconds, 1),
        "images_per_second": round(trained.images_per_second, 1),
        "history": trained.history,
        "metrics": {part: binary_metrics(labels[part], p, threshold)
                    for part, p in probabilities.items()},
        "study": STUDY_RESULTS.get(experiment.number),
    }
    return entry, probabilities["test"]
