"""Drift: how far the films a model scores now lie from the films it was validated on.

Four statistics of each scored film, none needing the truth (CheXstray's idea: watch the
inputs and the output scores of a deployed chest X-ray model, not its accuracy):

- `score`: the probability the model served (calibrated, as the SavedModel answers);
- `guard_distance`: the input guard's squared Mahalanobis distance (guard.py) of the model
  input to the training films;
- `brightness`: the mean grey level of the model input, 0-1;
- `contrast`: the standard deviation of its grey levels, 0-1.

Training saves each one's distribution on the validation split beside the model
(`drift_reference.json`: the deciles of the validation films' values and how many films fell
in each bin). The app compares a rolling window of recent films with it by the population
stability index over those bins,

    PSI = sum over bins of (a - e) * ln(a / e),   a: the window's share, e: validation's,

both shares smoothed by half a film per bin so that an empty bin costs a finite amount. The
usual reading (Siddiqi, "Credit Risk Scorecards", 2006; Yurdakul, 2018): under 0.1 no shift,
0.1-0.2 a moderate one, over 0.2 (PSI_THRESHOLD) a significant one. Two samples of the same
distribution still differ: with 10 bins, about 9/n + 9/N in expectation (0.035 for a window
of 500 films against 522 validation films), which is why a window needs enough films
before its PSI means anything (Settings.drift_min_films).

NumPy and pydantic only: the app and training both import it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.contract.guard import InputGuard, guard_features

REFERENCE_FILE = "drift_reference.json"
STATISTICS = ("score", "guard_distance", "brightness", "contrast")
BINS = 10  # deciles of the validation values
PSI_THRESHOLD = 0.2  # over it: a significant shift (the default of the drift setting)
_SMOOTHING = 0.5  # films added to every bin before taking shares


def film_statistics(model_input: np.ndarray, guard: InputGuard | None) -> dict[str, float]:
    """(H, W, C) uint8 model input -> its input statistics (no `score`; no `guard_distance`
    without a guard)."""
    return {name: float(values[0])
            for name, values in input_statistics(model_input[None], guard).items()}


def input_statistics(model_inputs: np.ndarray, guard: InputGuard | None
                     ) -> dict[str, np.ndarray]:
    """(N, H, W, C) uint8 model inputs -> statistic name -> (N,) float64 values."""
    gray = model_inputs.astype(np.float64).mean(axis=3) / 255.0  # (N, H, W) in 0-1
    found = {"brightness": gray.mean(axis=(1, 2)), "contrast": gray.std(axis=(1, 2))}
    if guard is not None:
        found["guard_distance"] = guard.distances(guard_features(model_inputs))
    return found


class Bins(BaseModel):
    """One statistic on the validation split: bin edges and the films in each bin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edges: list[float] = Field(description="inner cut points, ascending; a value equal to "
                                           "one falls in the bin above it")
    counts: list[int] = Field(description="validation films per bin: len(edges) + 1 bins")

    @model_validator(mode="after")
    def _shape(self) -> Bins:
        if len(self.counts) != len(self.edges) + 1 or sorted(self.edges) != self.edges:
            raise ValueError("a reference needs ascending edges and one count more")
        if min(self.counts, default=-1) < 0 or sum(self.counts) == 0:
            raise ValueError("a reference needs non-negative counts of at least one film")
        return self

    @classmethod
    def of(cls, values: np.ndarray, bins: int = BINS) -> Bins:
        """The reference of `values` (the validation films'): their quantiles as edges. Each
        edge is one of the values and above the smallest, ties merged, so that no bin is
        empty: a bin holds at least the value at its lower edge."""
        values = np.asarray(values, dtype=np.float64)
        cuts = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf")
        edges = np.unique(cuts[cuts > values.min()])
        return cls(edges=edges.tolist(), counts=_counts(edges, values).tolist())

    def psi(self, values: np.ndarray) -> float:
        """The population stability index of `values` (a window of films) against this
        reference; NaN for no values."""
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return float("nan")
        window = _shares(_counts(np.asarray(self.edges), values))
        reference = _shares(np.asarray(self.counts))
        return float(np.sum((window - reference) * np.log(window / reference)))


def _counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"),
                       minlength=len(edges) + 1)


def _shares(counts: np.ndarray) -> np.ndarray:
    smoothed = counts.astype(np.float64) + _SMOOTHING
    return smoothed / smoothed.sum()


class DriftReference(BaseModel):
    """`drift_reference.json`: each statistic's distribution on the validation split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str = Field(description="the films the reference was taken on")
    films: int = Field(gt=0)
    statistics: dict[str, Bins]

    @model_validator(mode="after")
    def _known(self) -> DriftReference:
        unknown = set(self.statistics) - set(STATISTICS)
        if unknown or "score" not in self.statistics:
            raise ValueError(f"statistics must include score and be among {STATISTICS}")
        return self

    @classmethod
    def of(cls, scores: np.ndarray, model_inputs: np.ndarray, guard: InputGuard | None,
           split: str = "validation") -> DriftReference:
        """The reference of (N,) served probabilities and their (N, H, W, C) model inputs."""
        values = {"score": np.asarray(scores, dtype=np.float64),
                  **input_statistics(model_inputs, guard)}
        return cls(split=split, films=len(values["score"]),
                   statistics={name: Bins.of(values[name]) for name in STATISTICS
                               if name in values})

    @classmethod
    def read(cls, version_dir: Path) -> DriftReference | None:
        """The reference beside a model, None when it has none. Raises ValueError for one
        that does not validate."""
        path = Path(version_dir) / REFERENCE_FILE
        if not path.is_file():
            return None
        return cls.model_validate_json(path.read_text())

    def write(self, version_dir: Path) -> Path:
        path = Path(version_dir) / REFERENCE_FILE
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=1) + "\n")
        return path


def film_digest(model_input: np.ndarray) -> bytes:
    """16 bytes that tell one (H, W, C) uint8 model input from another (BLAKE2b-128 of its
    shape and bytes): the drift window counts a film once however often it is sent."""
    digest = hashlib.blake2b(str(model_input.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(model_input).data)
    return digest.digest()
