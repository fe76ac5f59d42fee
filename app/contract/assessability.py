"""Can the model judge this film at all? Reason codes, and the polarity/rotation detector.

A film is *assessable* when nothing says the model's score would be meaningless for it. Each
doubt is a short, stable reason code (part of the API, the CSV and the page):

- `inverted`: the film looks like a negative (bone dark, lungs bright): the detector below.
- `rotated`: the film looks sideways or upside down (90, 180 or 270 degrees): the detector.
- `not_chest`: DICOM Body Part Examined (0018,0015) names another part of the body than the
  chest alone (CHESTABDOMEN, a babygram, too).
- `not_frontal`: DICOM View Position (0018,5101) is oblique, decubitus, or several views.
- `outside_intended_age`, `not_chest_radiograph`, `not_for_presentation`: the DICOM header
  says the film is outside the population on the model card (intended_use.py): the
  patient's age, a SOP class that is not a chest radiograph's (mammography, intra-oral,
  ...), raw detector pixels ("For Processing").
- `unlike_training`: the input guard (guard.py): coloured, far from a chest film's shape, or
  far from the training films' distribution. The model's output means nothing there either,
  so this alone makes a film not assessable (about 1% of in-distribution films: the guard's
  threshold is the training films' 99th percentile).
- `too_small`: under the input guard's minimum side: too little of a film to read.
- `no_contrast`: (almost) no grey levels left: a blank film, or one a window has clipped to
  black and white.

A film that is not assessable is never given a PNEUMONIA/NORMAL label or ranked by its
probability: it goes to a person ("needs a human look").

The detector: a linear score of a 32x32 thumbnail of the film, fitted (training/
assessability.py) so that an upright, positive film scores higher than its own rotated and
inverted copies. A film passes when it, as it is, outscores all seven of its other
orientations and polarities by `margin`; otherwise the best-scoring one says what is wrong.
Comparing the film with its own copies, not with a fixed threshold, is what makes a linear
score on 1,024 pixels enough. NumPy and Pillow only: it runs in the decode workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DETECTOR_FILE = "assessability.json"
THUMB = 32  # px: the detector's thumbnail side
FEATURES = THUMB * THUMB

REASONS: dict[str, str] = {
    "inverted": "The film looks inverted (a negative: bone dark, lungs bright); the model was "
                "trained on positive films only.",
    "rotated": "The film looks rotated (sideways or upside down); the model was trained on "
               "upright films only.",
    "not_chest": "The film is not of the chest alone.",
    "not_frontal": "The film is not a frontal (AP/PA) view.",
    "unlike_training": "The film looks unlike the chest films the model was trained on.",
    "too_small": "The image is too small to read.",
    "no_contrast": "The film shows (almost) no grey levels: it is blank, or a window clipped "
                   "it to black and white.",
    "outside_intended_age": "The patient's age is outside the ages the model was validated "
                            "on.",
    "not_chest_radiograph": "The DICOM class is not a chest radiograph's (mammography, "
                            "intra-oral, ...); the model was validated on chest radiographs.",
    "not_for_presentation": "The film holds raw detector pixels (For Processing), not an image "
                            "processed for viewing.",
}
LOOK = "needs a human look"  # the group and label of films that are not assessable
NOT_ASSESSABLE = "the model cannot judge these films, so it gives them no label."

# (quarter turns counter-clockwise, inverted) of every copy the film is compared with; the
# first is the film as it is.
ORIENTATIONS: tuple[tuple[int, bool], ...] = tuple(
    (turns, inverted) for inverted in (False, True) for turns in range(4))

# Below this standard deviation (0-255) or with this share of pixels at the two extremes,
# a film has no usable contrast.
MIN_STD = 4.0
MAX_CLIPPED = 0.9


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 -> (THUMB, THUMB) float64 in 0-1, aspect not preserved (the
    dataset's films are squashed squares, so a full-size film squashed is the same picture)."""
    image = Image.fromarray(pixels)
    if image.mode != "L":
        image = image.convert("L")
    # A large film is first box-reduced to at least 4 x THUMB a side: the antialiased resize
    # then averages the same areas for a sixth of the time (a dataset film, 224 px, is not
    # reduced: what the detector was fitted on).
    factor = min(image.size) // (4 * THUMB)
    if factor > 1:
        image = image.reduce(factor)
    small = image.resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float64) / 255.0


def orient(thumb: np.ndarray, turns: int, inverted: bool) -> np.ndarray:
    """The thumbnail turned `turns` quarter turns counter-clockwise, then inverted."""
    turned = np.rot90(thumb, turns)
    return 1.0 - turned if inverted else turned


def features(thumbs: np.ndarray) -> np.ndarray:
    """(N, THUMB, THUMB) or (THUMB, THUMB) -> (N, FEATURES) or (FEATURES,): each thumbnail
    standardised (zero mean, unit variance), so brightness and contrast do not count."""
    single = thumbs.ndim == 2
    flat = (thumbs[None] if single else thumbs).reshape(-1, FEATURES)
    centred = flat - flat.mean(axis=1, keepdims=True)
    scaled = centred / np.maximum(centred.std(axis=1, keepdims=True), 1e-6)
    return scaled[0] if single else scaled


@dataclass(frozen=True)
class Verdict:
    """What the detector found: the reasons (empty: upright and positive) and how sure."""

    reasons: tuple[str, ...]
    margin: float  # the film's score minus the best of its other copies
    turns: int  # quarter turns counter-clockwise that would make it upright
    inverted: bool


@dataclass(frozen=True)
class OrientationDetector:
    weights: np.ndarray  # (FEATURES,)
    bias: float
    margin: float  # a film passes when it outscores all its copies by more than this
    measured: dict  # upright pass rate and catch rates on the test split, for the card

    def scores(self, thumb: np.ndarray) -> np.ndarray:
        """(8,) score of each copy in ORIENTATIONS."""
        copies = np.stack([orient(thumb, t, i) for t, i in ORIENTATIONS])
        return features(copies) @ self.weights + self.bias

    def judge(self, pixels: np.ndarray) -> Verdict:
        return self.judge_thumbnail(thumbnail(pixels))

    def judge_thumbnail(self, thumb: np.ndarray) -> Verdict:
        scores = self.scores(thumb)
        best = int(np.argmax(scores[1:])) + 1
        margin = float(scores[0] - scores[best])
        if margin > self.margin:
            return Verdict((), margin, 0, False)
        turns, inverted = ORIENTATIONS[best]
        reasons = (("inverted",) if inverted else ()) + (("rotated",) if turns else ())
        return Verdict(reasons, margin, turns, inverted)

    def to_json(self) -> dict:
        return {"method": f"linear score of a standardised {THUMB}x{THUMB} thumbnail; a film "
                          "passes when it outscores its 3 rotations and 4 inverted copies by "
                          "the margin", "thumbnail": THUMB, "weights": self.weights.tolist(),
                "bias": self.bias, "margin": self.margin, "measured": self.measured}

    def write(self, version_dir: Path) -> Path:
        path = Path(version_dir) / DETECTOR_FILE
        path.write_text(json.dumps(self.to_json()) + "\n")
        return path

    @classmethod
    def read(cls, version_dir: Path) -> OrientationDetector | None:
        path = Path(version_dir) / DETECTOR_FILE
        if not path.is_file():
            return None
        values = json.loads(path.read_text())
        weights = np.asarray(values["weights"], dtype=np.float64)
        if values.get("thumbnail") != THUMB or weights.shape != (FEATURES,) or \
                not np.all(np.isfinite(weights)):
            raise ValueError(f"{DETECTOR_FILE}: expected {FEATURES} finite weights for a "
                             f"{THUMB}x{THUMB} thumbnail")
        return cls(weights, float(values["bias"]), float(values["margin"]),
                   dict(values.get("measured", {})))


def contrast_reasons(pixels: np.ndarray) -> tuple[str, ...]:
    """('no_contrast',) for a film that is (nearly) one grey, or almost all black and white;
    measured on a strided sample of at most ~16,000 pixels of one channel (a grey film's
    channels are equal; a coloured picture is the input guard's to flag): on a small film
    this check once cost as much as its decode."""
    step = max(1, int(np.sqrt(pixels.shape[0] * pixels.shape[1] / 16_384)))
    sample = pixels[::step, ::step]
    sample = (sample[..., 1] if sample.ndim == 3 else sample).astype(np.float32)
    clipped = np.count_nonzero((sample <= 0) | (sample >= 255)) / sample.size
    if float(sample.std()) < MIN_STD or clipped > MAX_CLIPPED:
        return ("no_contrast",)
    return ()
