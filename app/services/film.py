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

from app.contract.assessability import REASONS, OrientationDetector, contrast_reasons
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
    detector: OrientationDetector | None = None  # polarity and rotation


@dataclass(frozen=True)
class ImageFacts:
    """What the response says about the file; the pixels themselves are not kept."""

    width: int
    height: int
    format: str
    mode: str
    dicom: DicomInfo | None
    decode_warnings: tuple[str, ...] = ()  # how a plain file was read (16-bit range, ...)

    @classmethod
    def of(cls, decoded: DecodedImage) -> ImageFacts:
        return cls(decoded.width, decoded.height, decoded.format, decoded.mode, decoded.dicom,
                   decoded.warnings)

    @property
    def warnings(self) -> tuple[str, ...]:
        return (self.dicom.warnings if self.dicom else ()) + self.decode_warnings


@dataclass(frozen=True)
class PreparedFilm:
    """A decoded film reduced to what scoring needs; `pixels` only when a heatmap is drawn."""

    model_input: np.ndarray  # (H, W, C) uint8
    facts: ImageFacts
    guard_warnings: tuple[str, ...]  # the guard's and the detector's, for a person
    thumbnail: str | None  # data: URI of a PNG, THUMBNAIL_SIZE on its longest side
    pixels: np.ndarray | None  # at most HEATMAP_SIZE on its longest side
    reasons: tuple[str, ...] = ()  # why the model cannot judge it; empty: assessable

    @property
    def assessable(self) -> bool:
        return not self.reasons


def prepare_film(job: FilmJob) -> PreparedFilm:
    """Bytes -> model input, image facts, warnings and assessability; raises ImageError
    subclasses (app/contract/errors.py) only."""
    decoded = decode(job.data, max_pixels=job.max_pixels, target=job.size)
    model_input = to_model_input(decoded.pixels, job.size, job.channels)
    reasons, warnings = assess(job, decoded, model_input)
    return PreparedFilm(model_input, ImageFacts.of(decoded), warnings,
                        _thumbnail(decoded.pixels) if job.thumbnail else None,
                        display_size(decoded.pixels) if job.keep_pixels else None,
                        reasons)


def assess(job: FilmJob, decoded: DecodedImage,
           model_input: np.ndarray) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(reason codes, warnings) from the DICOM tags' reasons (their warnings are the tags')
    and cheap statistics of the decoded film: contrast, the input guard and the
    polarity/rotation detector, each with its sentence for a person."""
    reasons = list(decoded.dicom.reasons if decoded.dicom else ())
    warnings: list[str] = []
    for code in contrast_reasons(decoded.pixels):
        reasons.append(code)
        warnings.append(REASONS[code])
    if job.guard is not None:
        for code, text in job.guard.findings(model_input, decoded.pixels, decoded.width,
                                             decoded.height):
            reasons.append(code)
            warnings.append(text)
    if job.detector is not None and "no_contrast" not in reasons:
        for code in job.detector.judge(decoded.pixels).reasons:
            reasons.append(code)
            warnings.append(REASONS[code])
    return tuple(dict.fromkeys(reasons)), tuple(warnings)


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


def png_uri(image: Image.Image, quick: bool = False) -> str:
    """A Pillow image as a data: URI of a PNG: the smallest file, or with `quick` zlib's
    fastest level, for a picture as large as the heatmap's film (512 px): the smallest
    file cost 80 to 110 ms of CPU per film, the fastest level 5 to 15 ms for 15-25% more
    bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **({"compress_level": 1} if quick else {"optimize": True}))
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
