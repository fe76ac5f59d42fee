"""Each model's recent films against its validation films (app/contract/drift.py), kept by
the app for GET /metrics, GET /operations/drift and the pages' banner.

Every film the model scores adds its statistics to the model's rolling window (the last
`window` films); the PSI of each statistic is computed when asked, never per film. A window
with fewer than `min_films` films is not judged: two samples of one distribution differ by
chance (about 9/n with 10 bins), so a handful of films would raise false alarms. A model
without a reference beside it (`drift_reference.json`) is not watched; that is logged once.

Each replica watches the films it scored itself.

A film counts once per window: the same film posted 120 times is one film of the window,
not 120 (which alone raised the alarm on every page). A film is known by a digest of its
model input (BLAKE2b, 128 bits, of the (H, W, C) uint8 array and its shape), so a film sent
again under another name or in another container (a PNG, a DICOM file) is still one film
when its pixels reach the model unchanged; the window keeps only the digests of the films
in it (a set and a deque of at most `window`, 16 bytes each), never pixels. A film counts
again once it has left the window.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.contract.drift import DriftReference, film_digest, film_statistics

log = logging.getLogger("app.drift")


@dataclass(frozen=True)
class ModelDrift:
    model: str
    version: int
    films: int  # in the window now
    psi: dict[str, float]  # statistic -> PSI; empty until the window holds min_films
    drifted: tuple[str, ...]  # the statistics over the threshold


@dataclass(frozen=True)
class DriftState:
    threshold: float
    window: int
    min_films: int
    models: tuple[ModelDrift, ...]

    @property
    def drifted(self) -> bool:
        return any(model.drifted for model in self.models)


class _Window:
    """The last `size` distinct films' statistics, and their digests (at most `size`)."""

    def __init__(self, reference: DriftReference, statistics: list[str], size: int) -> None:
        self.reference = reference
        self.values = {name: deque[float](maxlen=size) for name in statistics}
        self.digests = deque[bytes](maxlen=size)  # oldest first, in step with the values
        self.seen: set[bytes] = set()

    def add(self, digest: bytes, values: dict[str, float]) -> None:
        """One film's values, unless it is in the window already. Call under the lock."""
        if digest in self.seen:
            return
        if len(self.digests) == self.digests.maxlen:
            self.seen.discard(self.digests[0])  # the film about to leave the window
        self.digests.append(digest)
        self.seen.add(digest)
        for name, kept in self.values.items():
            kept.append(values[name])


class DriftMonitor:
    """Thread-safe: every request thread and DICOM association reports to it."""

    def __init__(self, window: int, min_films: int, threshold: float) -> None:
        self.window = window
        self.min_films = min(min_films, window)
        self.threshold = threshold
        self._windows: dict[tuple[str, int], _Window | None] = {}
        self._lock = threading.Lock()

    def observe(self, model: Any, model_input: np.ndarray, probability: float,
                statistics: tuple[tuple[str, float], ...] = (),
                digest: bytes | None = None) -> None:
        """One scored film of `model` (a ServedModel: its card, folder and guard): its
        (H, W, C) uint8 model input, the probability served, and its input statistics and
        digest as the decoder computed them (app/services/film.py PreparedFilm); those
        missing are computed here. A film already in the window is not counted again."""
        window = self._window_of(model)
        if window is None:
            return
        digest = digest or film_digest(model_input)
        with self._lock:
            if digest in window.seen:
                return  # spare the statistics; `add` checks again under the lock
        values = dict(statistics)
        if any(name not in values for name in window.values if name != "score"):
            values = film_statistics(model_input, model.guard)
        values["score"] = probability
        with self._lock:
            window.add(digest, values)

    def state(self) -> DriftState:
        with self._lock:
            windows = {key: {name: np.array(kept) for name, kept in w.values.items()}
                       for key, w in self._windows.items() if w is not None}
            references = {key: w.reference for key, w in self._windows.items()
                          if w is not None}
        models = []
        for (name, version), values in sorted(windows.items()):
            films = min((len(kept) for kept in values.values()), default=0)
            psi = {} if films < self.min_films else {
                statistic: references[(name, version)].statistics[statistic].psi(kept)
                for statistic, kept in values.items()}
            drifted = tuple(s for s, value in psi.items() if value > self.threshold)
            models.append(ModelDrift(name, version, films, psi, drifted))
        return DriftState(self.threshold, self.window, self.min_films, tuple(models))

    def _window_of(self, model: Any) -> _Window | None:
        key = (model.card.name, model.card.version)
        with self._lock:
            if key in self._windows:
                return self._windows[key]
        window = self._open(model)
        with self._lock:
            return self._windows.setdefault(key, window)

    def _open(self, model: Any) -> _Window | None:
        folder = getattr(model, "path", None)
        try:
            reference = DriftReference.read(folder) if folder is not None else None
        except ValueError as exc:
            log.warning("model %s v%s: drift reference not read (%s); drift not watched",
                        model.card.name, model.card.version, type(exc).__name__)
            return None
        if reference is None:
            log.warning("model %s v%s has no drift reference; drift not watched",
                        model.card.name, model.card.version)
            return None
        statistics = [name for name in reference.statistics
                      if name != "guard_distance" or model.guard is not None]
        return _Window(reference, statistics, self.window)
