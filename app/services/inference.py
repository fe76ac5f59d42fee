"""The one inference path: bytes -> decode -> model input -> probability -> labelled result.

Routes, pages and the folder command call `predict_image` (one file) or `predict_files`
(a worklist); both are synchronous (Pillow, pydicom, TensorFlow), so the routes are plain
`def` and FastAPI runs them in a worker thread, never on the event loop.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.contract.dicom import DicomInfo
from app.contract.guard import InputGuard
from app.contract.preprocessing import DecodedImage, ImageError, decode, to_model_input
from app.errors import ServerBusyError
from app.services.decoders import Decoder, InlineDecoder, Job
from app.services.registry import LoadedModel

_INLINE = InlineDecoder()
THUMBNAIL_SIZE = 96  # px, longest side, for the worklist
HEATMAP_SIZE = 512  # px, longest side, of the film and overlay returned with ?explain=true


@dataclass(frozen=True)
class ImageFacts:
    """What the response says about the file; the pixels themselves are not kept."""

    width: int
    height: int
    format: str
    mode: str
    dicom: DicomInfo | None

    @classmethod
    def of(cls, decoded: DecodedImage) -> ImageFacts:
        return cls(decoded.width, decoded.height, decoded.format, decoded.mode, decoded.dicom)

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.dicom.warnings if self.dicom else ()


@dataclass(frozen=True)
class Heatmap:
    """The film and a transparent overlay of the same size, as data: URIs of PNGs."""

    film: str
    overlay: str
    width: int
    height: int


@dataclass(frozen=True)
class Prediction:
    probability: float
    label: str
    threshold: float
    model_name: str
    model_version: int
    image: ImageFacts
    elapsed_ms: float
    thumbnail: str | None = None  # data: URI of a small PNG, when asked for
    guard_warnings: tuple[str, ...] = ()
    heatmap: Heatmap | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.image.warnings + self.guard_warnings


@dataclass(frozen=True)
class FileResult:
    """One file of a worklist: its prediction, or the error that kept it from being scored."""

    index: int
    filename: str
    prediction: Prediction | None
    error: ImageError | ServerBusyError | None  # busy: no decode worker was free in time


def predict_image(
    data: bytes, model: LoadedModel, threshold: float | None, max_pixels: int,
    explain: bool = False, decoder: Decoder | None = None,
) -> Prediction:
    """Probability of the positive class for one uploaded image; raises ImageError subclasses.
    With `explain` (and a model that can) the result carries its occlusion heatmap. The film
    is decoded by `decoder` (the app's worker pool), or in this thread."""
    started = time.perf_counter()
    prepared = _prepare(decoder, data, model, max_pixels, keep_pixels=explain)
    if explain and model.can_explain:
        probabilities, maps = model.explain(prepared.model_input[None])
        heatmap = _heatmap(prepared.pixels, maps[0])
    else:
        probabilities, heatmap = model.predict_shared(prepared.model_input[None]), None
    return to_prediction(model, prepared, float(probabilities[0]), threshold,
                   time.perf_counter() - started, heatmap=heatmap)


def predict_files(files: Sequence[tuple[str, bytes]], model: LoadedModel,
                  threshold: float | None, max_pixels: int,
                  thumbnails: bool = False, decoder: Decoder | None = None) -> list[FileResult]:
    """Every file in upload order; one model call for all that decode, and a file that does
    not never fails the others. Each film's pixels are dropped as soon as its model input,
    guard warnings and thumbnail are made, so a worklist holds one decoded film at a time."""
    started = time.perf_counter()
    prepared: dict[int, PreparedFilm] = {}
    errors: dict[int, ImageError] = {}
    for index, (_, data) in enumerate(files):
        try:
            prepared[index] = _prepare(decoder, data, model, max_pixels, thumbnail=thumbnails)
        except (ImageError, ServerBusyError) as exc:  # this file's answer, not the worklist's
            errors[index] = exc
    probabilities: dict[int, float] = {}
    if prepared:
        batch = np.stack([p.model_input for p in prepared.values()])
        probabilities = dict(zip(prepared, (float(p) for p in model.predict(batch))))
    seconds = (time.perf_counter() - started) / max(len(files), 1)
    results = []
    for index, (name, _) in enumerate(files):
        prediction = None
        if index in prepared:
            prediction = to_prediction(model, prepared[index], probabilities[index], threshold,
                                 seconds)
        results.append(FileResult(index, name, prediction, errors.get(index)))
    return results


@dataclass(frozen=True)
class PreparedFilm:
    """A decoded film reduced to what scoring needs; `pixels` only when a heatmap is drawn.
    Made in the request's thread, or in a worker process by the folder command."""

    model_input: np.ndarray  # (H, W, C) uint8
    facts: ImageFacts
    guard_warnings: tuple[str, ...]
    thumbnail: str | None
    pixels: np.ndarray | None  # at most HEATMAP_SIZE on its longest side


def _prepare(decoder: Decoder | None, data: bytes, model: LoadedModel, max_pixels: int,
             keep_pixels: bool = False, thumbnail: bool = False) -> PreparedFilm:
    job = Job(data, model.card.input_size, model.card.channels, model.guard, max_pixels,
              keep_pixels=keep_pixels, thumbnail=thumbnail)
    return (decoder or _INLINE).prepare(job)


def prepare_film(data: bytes, size: tuple[int, int], channels: int, guard: InputGuard | None,
                 max_pixels: int, keep_pixels: bool = False,
                 thumbnail: bool = False) -> PreparedFilm:
    """Bytes -> model input, image facts and guard warnings; raises ImageError subclasses."""
    decoded = decode(data, max_pixels=max_pixels, target=size)
    model_input = to_model_input(decoded.pixels, size, channels)
    warnings = () if guard is None else tuple(
        guard.warnings(model_input, decoded.pixels, decoded.width, decoded.height))
    return PreparedFilm(model_input, ImageFacts.of(decoded), warnings,
                     _thumbnail(decoded) if thumbnail else None,
                     _display(decoded.pixels) if keep_pixels else None)


def _display(pixels: np.ndarray) -> np.ndarray:
    """The film at the heatmap's display size: all a heatmap needs, and a small array to
    send back from a decode worker (a 50-megapixel colour film would be 150 MB)."""
    film = Image.fromarray(pixels)
    film.thumbnail((HEATMAP_SIZE, HEATMAP_SIZE))
    return np.asarray(film)


def _thumbnail(decoded: DecodedImage) -> str:
    image = Image.fromarray(decoded.pixels)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return _png_uri(image)


def _heatmap(pixels: np.ndarray, heat: np.ndarray) -> Heatmap:
    """The film at display size, and the (H, W) 0-1 map stretched over it as a transparent
    red-to-yellow layer: the page stacks them and lets the clinician fade the layer."""
    film = Image.fromarray(pixels)
    film.thumbnail((HEATMAP_SIZE, HEATMAP_SIZE))
    size = film.size
    level = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(
        size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    rgba = np.zeros((size[1], size[0], 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = (255 * level).astype(np.uint8)  # hotter is yellower
    rgba[..., 3] = (220 * np.clip(level * 1.4 - 0.2, 0, 1)).astype(np.uint8)  # cool is clear
    return Heatmap(film=_png_uri(film), overlay=_png_uri(Image.fromarray(rgba, "RGBA")),
                   width=size[0], height=size[1])


def _png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def to_prediction(model: LoadedModel, prepared: PreparedFilm, probability: float,
            threshold: float | None, seconds: float, heatmap: Heatmap | None = None
            ) -> Prediction:
    card = model.card
    threshold = card.threshold if threshold is None else threshold
    return Prediction(
        probability=probability,
        label=card.label_for(probability, threshold),
        threshold=threshold,
        model_name=card.name,
        model_version=card.version,
        image=prepared.facts,
        elapsed_ms=seconds * 1000,
        thumbnail=prepared.thumbnail,
        guard_warnings=prepared.guard_warnings,
        heatmap=heatmap,
    )
