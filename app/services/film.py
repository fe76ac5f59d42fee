"""Step one of the pipeline, and all a decode worker runs: film bytes -> PreparedFilm.

Imports the contract package, NumPy and Pillow only (no web framework, no TensorFlow): it is
what every decode worker process imports (a test checks the worker's `sys.modules`).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.contract.dicom import DicomInfo
from app.contract.guard import InputGuard
from app.contract.preprocessing import DecodedImage, decode, to_model_input

THUMBNAIL_SIZE = 96  # px, longest side, for the worklist
HEATMAP_SIZE = 512  # px, longest side, of the film and overlay returned with ?explain=true


@dataclass(frozen=True)
class FilmJob:
    """What a decode needs: the bytes and the model's input contract (from its card)."""

    data: bytes
    size: tuple[int, int]  # (height, width) of the model input
    channels: int
    guard: InputGuard | None
    max_pixels: int
    keep_pixels: bool = False  # the film at HEATMAP_SIZE, for a heatmap
    thumbnail: bool = False


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
class PreparedFilm:
    """A decoded film reduced to what scoring needs; `pixels` only when a heatmap is drawn."""

    model_input: np.ndarray  # (H, W, C) uint8
    facts: ImageFacts
    guard_warnings: tuple[str, ...]
    thumbnail: str | None  # data: URI of a PNG, THUMBNAIL_SIZE on its longest side
    pixels: np.ndarray | None  # at most HEATMAP_SIZE on its longest side


def prepare_film(job: FilmJob) -> PreparedFilm:
    """Bytes -> model input, image facts and guard warnings; raises ImageError subclasses
    (app/contract/errors.py) only."""
    decoded = decode(job.data, max_pixels=job.max_pixels, target=job.size)
    model_input = to_model_input(decoded.pixels, job.size, job.channels)
    warnings = () if job.guard is None else tuple(
        job.guard.warnings(model_input, decoded.pixels, decoded.width, decoded.height))
    return PreparedFilm(model_input, ImageFacts.of(decoded), warnings,
                        _thumbnail(decoded.pixels) if job.thumbnail else None,
                        display_size(decoded.pixels) if job.keep_pixels else None)


def display_size(pixels: np.ndarray) -> np.ndarray:
    """The film at the heatmap's display size: all a heatmap needs, and a small array to
    send back from a decode worker (a 50-megapixel colour film would be 150 MB)."""
    film = Image.fromarray(pixels)
    film.thumbnail((HEATMAP_SIZE, HEATMAP_SIZE))
    return np.asarray(film)


def _thumbnail(pixels: np.ndarray) -> str:
    image = Image.fromarray(pixels)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return png_uri(image)


def png_uri(image: Image.Image) -> str:
    """A Pillow image as a data: URI of a PNG."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
