"""Is this likely a frontal chest radiograph? A guard that warns before a score is trusted.

Four checks, each a warning and a reason the film is not assessable (`too_small` for the
size check, `unlike_training` for the others; app/contract/assessability.py):
- colour: an X-ray is grey; a strongly coloured image is a photo or a screenshot;
- shape: a chest film is roughly square; an extreme aspect ratio is something else;
- size: a tiny image carries too little of a film to read;
- distribution: how far the image is from the training films, by a Gaussian model of simple
  features of the model input (an 8x8 grid of mean intensities, which captures the layout of
  lungs, mediastinum and background, plus a 16-bin intensity histogram). Its mean and
  precision matrix are fitted on the training split by the training run and saved beside
  the model (`input_guard.json`); its threshold is a high percentile of the training films'
  own distances, and the card states the false alarm rate that gives on the validation split.

NumPy only, so the app, the folder command and training share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GUARD_FILE = "input_guard.json"
GRID = 8
BINS = 16
MIN_SIDE = 128  # px; the dataset's smallest films are 224 px, originals 400 px and more
MAX_ASPECT = 2.0  # long side / short side
MAX_COLOUR = 12.0  # mean absolute difference between channels, 0-255 scale


def guard_features(model_input: np.ndarray) -> np.ndarray:
    """(N, H, W, C) or (H, W, C) uint8 model input -> (N, 80) or (80,) float64 features."""
    single = model_input.ndim == 3
    batch = model_input[None] if single else model_input
    gray = batch.astype(np.float64).mean(axis=3) / 255.0  # (N, H, W)
    n, height, width = gray.shape
    grid = gray[:, : height // GRID * GRID, : width // GRID * GRID]
    grid = grid.reshape(n, GRID, height // GRID, GRID, width // GRID).mean(axis=(2, 4))
    hist = np.stack([np.histogram(g, bins=BINS, range=(0.0, 1.0))[0] for g in gray])
    features = np.concatenate([grid.reshape(n, -1), hist / (height * width)], axis=1)
    return features[0] if single else features


@dataclass(frozen=True)
class InputGuard:
    mean: np.ndarray  # (80,)
    precision: np.ndarray  # (80, 80), inverse of the shrunk training covariance
    threshold: float  # squared Mahalanobis distance above which an image is flagged

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances of (N, 80) features, (N,)."""
        centred = np.atleast_2d(features) - self.mean
        return np.einsum("ni,ij,nj->n", centred, self.precision, centred)

    def warnings(self, model_input: np.ndarray, pixels: np.ndarray, width: int,
                 height: int) -> list[str]:
        """Reasons to doubt that an image is a chest film; empty when none."""
        return [text for _, text in self.findings(model_input, pixels, width, height)]

    def findings(self, model_input: np.ndarray, pixels: np.ndarray, width: int,
                 height: int, distance: float | None = None) -> list[tuple[str, str]]:
        """(reason code, text) of each doubt: `too_small` for a tiny image, else
        `unlike_training` (app/contract/assessability.py has the codes). `distance`: the
        model input's distance, when the caller has it already (the app's decode worker
        keeps it for the drift statistics)."""
        found = []
        if pixels.ndim == 3:
            channels = pixels.astype(np.int16)
            colour = float(np.mean(np.abs(channels[..., 0] - channels[..., 1]) +
                                   np.abs(channels[..., 1] - channels[..., 2])) / 2)
            if colour > MAX_COLOUR:
                found.append(("unlike_training", "The image is strongly coloured; X-rays are "
                              "grey. Is this a photo or a screenshot?"))
        if max(width, height) / max(min(width, height), 1) > MAX_ASPECT:
            found.append(("unlike_training",
                          f"The image is {width}x{height}: far from a chest film's shape."))
        if min(width, height) < MIN_SIDE:
            found.append(("too_small",
                          f"The image is only {width}x{height} pixels: too small to read."))
        if distance is None:
            distance = float(self.distances(guard_features(model_input))[0])
        if distance > self.threshold:
            found.append(("unlike_training", "The image looks unlike the chest films the model "
                          "was trained on; its score may mean nothing."))
        return found

    def to_json(self) -> dict:
        return {"features": f"{GRID}x{GRID} mean grid + {BINS}-bin histogram of the model "
                            "input", "mean": self.mean.tolist(),
                "precision": self.precision.tolist(), "threshold": self.threshold}

    @classmethod
    def read(cls, version_dir: Path) -> InputGuard | None:
        path = Path(version_dir) / GUARD_FILE
        if not path.is_file():
            return None
        values = json.loads(path.read_text())
        mean = np.asarray(values["mean"], dtype=np.float64)
        precision = np.asarray(values["precision"], dtype=np.float64)
        size = GRID * GRID + BINS
        if mean.shape != (size,) or precision.shape != (size, size) or \
                not np.all(np.isfinite(precision)):
            raise ValueError(f"{GUARD_FILE}: expected a mean of {size} and a {size}x{size} "
                             "precision matrix")
        return cls(mean, precision, float(values["threshold"]))

    def write(self, version_dir: Path) -> Path:
        path = Path(version_dir) / GUARD_FILE
        path.write_text(json.dumps(self.to_json()) + "\n")
        return path


def fit_guard(features: np.ndarray, percentile: float = 99.0,
              shrinkage: float = 0.1) -> InputGuard:
    """A Gaussian of (N, 80) training features; the threshold is the `percentile` of the
    training films' own distances. Shrinkage towards the diagonal keeps the precision stable
    for the histogram bins that are almost always empty."""
    mean = features.mean(axis=0)
    covariance = np.cov(features, rowvar=False)
    diagonal = np.diag(np.diag(covariance)) + 1e-6 * np.eye(len(mean))
    precision = np.linalg.inv((1 - shrinkage) * covariance + shrinkage * diagonal)
    guard = InputGuard(mean, precision, 0.0)
    threshold = float(np.percentile(guard.distances(features), percentile))
    return InputGuard(mean, precision, threshold)
