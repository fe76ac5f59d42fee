"""Step one of the pipeline, and all a decode worker runs: film bytes -> PreparedFilm.

Imports the contract package, NumPy and Pillow only (no web framework, no TensorFlow): it is
what every decode worker process imports (a test checks the worker's `sys.modules`).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from app.contract.assessability import REASONS, OrientationDetector, contrast_reasons
from app.contract.borders import Box
from app.contract.dicom import DicomInfo
from app.contract.drift import film_digest
from app.contract.drift import input_statistics as drift_statistics
from app.contract.guard import InputGuard, guard_features
from app.contract.intended_use import IntendedUse
from app.contract.preprocessing import (
    PREPROCESSING_VERSION,
    DecodedImage,
    decode,
    model_film,
    resize_to_input,
)

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
    # The card's population, widened by the site's ages: the intended-use gate.
    intended_use: IntendedUse = field(default_factory=IntendedUse)
    # The card's input.preprocessing_version: from 3 the model, its heatmap's film and the
    # thumbnail see the film without its uniform borders (app/contract/preprocessing.py).
    preprocessing_version: str = PREPROCESSING_VERSION
    # The model's folder, where `guard` and `detector` were read from: a job sent to a
    # decode worker carries this reference instead of their matrices (61 of a job's 67 KB;
    # `lean`), and the worker reads them once (`_checks_of`). None: the objects only.
    checks_from: str | None = None

    def lean(self) -> FilmJob:
        """This job as a decode worker gets it: the guard and detector by reference."""
        if self.checks_from is None or (self.guard is None and self.detector is None):
            return self
        return replace(self, guard=None, detector=None)

    def checks(self) -> tuple[InputGuard | None, OrientationDetector | None]:
        """(guard, detector): the job's own, or those of the model folder it names."""
        if self.checks_from is None or self.guard is not None or self.detector is not None:
            return self.guard, self.detector
        return _checks_of(self.checks_from)


@dataclass(frozen=True)
class ImageFacts:
    """What the response says about the file; the pixels themselves are not kept."""

    width: int
    height: int
    format: str
    mode: str
    dicom: DicomInfo | None
    decode_warnings: tuple[str, ...] = ()  # how a plain file was read (16-bit range, ...)
    # px of the upright file cropped from its top, left, bottom and right as uniform
    # borders before scoring (preprocessing version 3); all 0: the whole film was scored.
    borders_cropped: tuple[int, int, int, int] = (0, 0, 0, 0)

    @classmethod
    def of(cls, decoded: DecodedImage, box: Box | None = None) -> ImageFacts:
        """The facts of a decoded file; `box`: where the scored film lies in its pixels
        (preprocessing.model_film), which may be a reduced decode of the file."""
        cropped = (0, 0, 0, 0)
        if box is not None:
            height, width = decoded.pixels.shape[:2]
            down, across = decoded.height / height, decoded.width / width  # 2: a half decode
            top, left, bottom, right = box.margins(height, width)
            cropped = (round(top * down), round(left * across), round(bottom * down),
                       round(right * across))
        return cls(decoded.width, decoded.height, decoded.format, decoded.mode, decoded.dicom,
                   decoded.warnings, cropped)

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
    # The drift monitor's input statistics (app/contract/drift.py `input_statistics`: no
    # `score`), computed here from what the checks computed anyway, so that the serving
    # process computes none of them.
    statistics: tuple[tuple[str, float], ...] = ()
    digest: bytes | None = None  # film_digest(model_input), for the drift window

    @property
    def assessable(self) -> bool:
        return not self.reasons


def prepare_film(job: FilmJob) -> PreparedFilm:
    """Bytes -> model input, image facts, warnings and assessability; raises ImageError
    subclasses (app/contract/errors.py) only."""
    decoded = decode(job.data, max_pixels=job.max_pixels, target=job.size)
    # The film the model sees (its borders cropped, from version 3): the heatmap, drawn on
    # the model input, is stretched over all of it (pipeline.draw_heatmap, the SC's burn-in).
    film, box = model_film(decoded.pixels, job.preprocessing_version)
    model_input = resize_to_input(film, job.size, job.channels)
    guard, _ = job.checks()
    distance = None if guard is None else float(guard.distances(guard_features(model_input))[0])
    reasons, warnings = assess(job, decoded, model_input, distance)
    return PreparedFilm(model_input, ImageFacts.of(decoded, box), warnings,
                        _thumbnail(film) if job.thumbnail else None,
                        display_size(film) if job.keep_pixels else None,
                        reasons, input_statistics(model_input, distance),
                        film_digest(model_input))


def input_statistics(model_input: np.ndarray,
                     guard_distance: float | None) -> tuple[tuple[str, float], ...]:
    """The drift statistics of one (H, W, C) uint8 model input (app/contract/drift.py's,
    the guard's distance given rather than computed again)."""
    found = [(name, float(values[0]))
             for name, values in drift_statistics(model_input[None], None).items()]
    if guard_distance is not None:
        found.append(("guard_distance", guard_distance))
    return tuple(found)


@lru_cache(maxsize=8)
def _checks_of(folder: str) -> tuple[InputGuard | None, OrientationDetector | None]:
    """A model folder's guard and detector, read once per process (a decode worker's)."""
    return InputGuard.read(Path(folder)), OrientationDetector.read(Path(folder))


def assess(job: FilmJob, decoded: DecodedImage, model_input: np.ndarray,
           guard_distance: float | None = None
           ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(reason codes, warnings) from the DICOM tags' reasons (their warnings are the tags'),
    the intended-use gate (the DICOM header against the card's population) and cheap
    statistics of the decoded film: contrast, the input guard and the polarity/rotation
    detector, each with its sentence for a person. `guard_distance`: the guard's distance
    of `model_input`, when the caller has computed it already."""
    guard, detector = job.checks()
    reasons = list(decoded.dicom.reasons if decoded.dicom else ())
    found, warnings = job.intended_use.findings(decoded.dicom)
    for code, text in found:
        reasons.append(code)
        warnings.append(text)
    for code in contrast_reasons(decoded.pixels):
        reasons.append(code)
        warnings.append(REASONS[code])
    if guard is not None:
        for code, text in guard.findings(model_input, decoded.pixels, decoded.width,
                                         decoded.height, distance=guard_distance):
            reasons.append(code)
            warnings.append(text)
    if detector is not None and "no_contrast" not in reasons:
        for code in detector.judge(decoded.pixels).reasons:
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
