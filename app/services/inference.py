"""The one inference path: bytes -> decode -> model input -> probability -> labelled result.

Routes and pages call `predict_image`; it is synchronous (Pillow, TensorFlow), so it runs in
a worker thread (the routes are plain `def`), never on the event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from app.contract.preprocessing import DecodedImage, decode, to_model_input
from app.services.registry import LoadedModel


@dataclass(frozen=True)
class Prediction:
    probability: float
    label: str
    threshold: float
    model_name: str
    model_version: int
    image: DecodedImage
    elapsed_ms: float


def predict_image(
    data: bytes, model: LoadedModel, threshold: float | None, max_pixels: int
) -> Prediction:
    """Probability of the positive class for one uploaded image; raises ImageError subclasses."""
    started = time.perf_counter()
    decoded = decode(data, max_pixels=max_pixels)
    probability = _infer(model, _model_input(model, decoded))
    return _result(model, decoded, probability, threshold, time.perf_counter() - started)


def _model_input(model: LoadedModel, decoded: DecodedImage) -> np.ndarray:
    # (1, H, W, C) uint8, H/W/C from the model card
    return to_model_input(decoded.pixels, model.card.input_size, model.card.channels)[None]


def _infer(model: LoadedModel, batch: np.ndarray) -> float:
    return float(model.predict(batch)[0])


def _result(model: LoadedModel, decoded: DecodedImage, probability: float,
            threshold: float | None, seconds: float) -> Prediction:
    card = model.card
    threshold = card.threshold if threshold is None else threshold
    return Prediction(
        probability=probability,
        label=card.label_for(probability, threshold),
        threshold=threshold,
        model_name=card.name,
        model_version=card.version,
        image=decoded,
        elapsed_ms=seconds * 1000,
    )
