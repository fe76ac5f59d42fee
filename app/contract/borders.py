"""Uniform borders of a film: black, white or grey strips at its sides, found so that they can
be cropped before the film is resized to the model input (app/contract/preprocessing.py,
from preprocessing version 3).

Why: a thin black edge of 2-4% of the width (a crop, a scanner's or a detector's border)
moved the pneumonia probability of a test film from 0.86 to 0.36-0.53 (issue 28). Measured
here on samples/person1568_virus_2723.jpeg with model pneumonia 2: a black left edge of 2%
and 4% moved 0.860 to 0.776 and 0.695 on the whole film, to 0.857 and 0.860 cropped. A
border carries nothing of the patient; resized with the film it squeezes the chest and puts
a dark band where the model learnt its own things: in the dataset's test split this crop
takes a black strip from 121 of the 234 normal films and from 30 of the 390 pneumonia ones.

What counts as a border line (a row or a column running the whole width or height of what is
left of the film): one whose values lie within a band of 2 x TOLERANCE grey levels, leaving
out the darkest and brightest (1 - UNIFORM_SHARE) / 2 of its pixels, so that JPEG noise and
a few stray pixels (a side marker, dust) do not break it. Black (0), white (255) and any
flat grey (the frame a collimator leaves) are all borders. Anatomy never is: a row or column
across a chest film crosses lung, mediastinum and soft tissue, and a dark lung field still
has the film's noise and texture. Lines are taken from each side inwards until the first
that is not uniform, then up to RINGING_LINES more that still are the strip but for JPEG's
ringing at the film's edge (their median at the strip's level, their central 80% flat);
sides in turn until none changes (a white strip on top hides a black one on the left until
it is gone). On made films the crop lands within 2 px of the border's edge, JPEG quality 75
included (tests/contract/test_border_crop.py).

What is never done: a side whose uniform strip is wider than MAX_SHARE of the film is not
cropped at all, since that is no thin border but something else (a small film pasted on a
large canvas, a blank image), which the input guard and the contrast check hold back as
they did; so a crop never leaves less than 1 - 2 * MAX_SHARE of either side, and never an
empty film.

On the dataset (224 px films): 151 of the 624 test films lose a strip, nearly all of it the
black air beside the body at the left or right (a side's strip: median 4.0% of the width,
90th percentile 7.6%, at most 14.7%), one film a black frame on four sides; on 1,000 random
training films, 206. All 33 test films with a side's strip of 15 px or more were looked at:
each crop stops in the air at the body's edge (some take a side marker with it), never in
the lungs.

Cost: line statistics on at most 2 x SAMPLES points per line, from coarse lines (every
`step`-th) to the single lines around the edge found, on the film as decoded, without
copying it. Measured on this repository's 2-core machine (NumPy 2.4, Python 3.11), median
of 50 calls: a 3000x2500 (height x width) grey film without a border 1.2 ms, with borders
on four sides 3.9 ms; its RGB copy 2.4 ms and 7.8 ms; a 224x224 film 0.5 ms; the 2570x2482
sample original (samples/NORMAL2-IM-1258-0001.jpeg) 2.2 ms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

TOLERANCE = 8  # grey levels either side of a line's middle; JPEG noise on a flat strip: 1-3
UNIFORM_SHARE = 0.96  # of a line's pixels that must lie within the band; the rest may stray
MAX_SHARE = 0.30  # of the film's height (width) that one side's crop may take
SAMPLES = 512  # points per line that its statistic is computed on (up to twice as many)
# Lines after a strip's last uniform one that may still be the strip, ringing: JPEG's 8x8
# blocks spread the film's edge over the strip's lines in the edge's block.
RINGING_LINES = 7
# Borders are found on the film reduced (a box filter, Pillow's `reduce`) until its longer
# side is at most this, and the box scaled back: so a large film decoded whole and the same
# film decoded at half size (preprocessing.py's reduced path) are cut at the same place.
# Found on the whole film, the half-size decode's smoother edge was cut 7 px (of 1,024)
# further in on 8 of 104 test films enlarged to 1,024 px, which moved the new model 5 by up
# to 0.17. Films up to this size, the dataset's 224 px among them, are searched as they are.
SEARCH_SIDE = 512


class Box(NamedTuple):
    """Where the kept film lies in the decoded one, in its pixels: rows top:bottom, columns
    left:right (the whole film: 0, 0, height, width)."""

    top: int
    left: int
    bottom: int
    right: int

    def margins(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Pixels cropped from the top, left, bottom and right of a (height, width) film."""
        return self.top, self.left, height - self.bottom, width - self.right


def crop_borders(pixels: np.ndarray) -> tuple[np.ndarray, Box]:
    """(H, W) or (H, W, 3) uint8 film -> (the film without its uniform borders, a view of
    `pixels`; the Box it was cut at). A film without borders comes back as it is, with
    Box(0, 0, H, W). Raises ValueError for an array that is not an (H, W[, 3]) uint8 film."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or \
            (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) uint8 film, got {pixels.shape} "
                         f"{pixels.dtype}")
    height, width = pixels.shape[:2]
    factor = -(-max(height, width) // SEARCH_SIDE)
    if factor > 1:
        from PIL import Image  # a large film only

        small = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).reduce(factor))
        top, left, bottom, right = _search(small)
        box = Box(min(top * factor, height), min(left * factor, width),
                  min(bottom * factor, height), min(right * factor, width))
        if small.shape[0] * factor != height and bottom == small.shape[0]:
            box = box._replace(bottom=height)  # reduce() keeps a last partial block
        if small.shape[1] * factor != width and right == small.shape[1]:
            box = box._replace(right=width)
    else:
        box = Box(*_search(pixels))
    return pixels[box.top:box.bottom, box.left:box.right], box


def _search(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the film inside its uniform borders."""
    height, width = pixels.shape[:2]
    whole = (0, 0, height, width)
    # The most each side may take; a strip wider than that is no border: the side stays.
    limits = (int(MAX_SHARE * height), int(MAX_SHARE * width)) * 2
    closed: set[int] = set()
    box = list(whole)
    changed = True
    while changed:
        changed = False
        for side in [s for s in range(4) if s not in closed]:
            taken = abs(box[side] - whole[side])
            run = _uniform_run(pixels, box, side, limits[side] - taken + 1)
            if taken + run > limits[side]:
                # Too wide for a border: this side stays, and the others are found again
                # without its crop (their lines run across its strip once more).
                closed.add(side)
                box, changed = list(whole), True
                break
            if run:
                box[side] += run if side < 2 else -run
                changed = True
    top, left, bottom, right = box
    return top, left, bottom, right


def _uniform_run(pixels: np.ndarray, box: list[int], side: int, most: int) -> int:
    """How many lines of `box`, from `side` (0 top, 1 left, 2 bottom, 3 right) inwards, are
    uniform; at most `most` are looked at."""
    top, left, bottom, right = box
    # (lines, points) of this side, outermost first, as a view of the film.
    if side == 0:
        lines = pixels[top:top + most, left:right]
    elif side == 2:
        lines = pixels[max(bottom - most, top):bottom, left:right][::-1]
    else:
        across = pixels[top:bottom, left:left + most] if side == 1 else \
            pixels[top:bottom, max(right - most, left):right][:, ::-1]
        lines = np.swapaxes(across, 0, 1)
    count, length = lines.shape[:2]
    if count == 0 or length == 0:
        return 0
    points = lines[:, :: max(1, length // SAMPLES)]  # (count, <= 2 * SAMPLES[, 3]), a view
    # Coarse lines first: the border ends between the last uniform coarse line and the
    # next; only the lines between them are looked at one by one.
    step = max(1, count // 64)
    coarse = _uniform(_grey(points[::step]))
    first = int(np.argmin(coarse)) if not coarse.all() else len(coarse)
    start = max(0, (first - 1) * step)
    fine = _uniform(_grey(points[start:min(count, first * step + 1)]))
    run = start + (int(np.argmin(fine)) if not fine.all() else len(fine))
    if 0 < run < count:  # the strip's last lines, where JPEG rings at the film's edge
        level = float(np.median(_grey(points[run - 1:run])))
        ringing = _ringing(_grey(points[run:run + RINGING_LINES]), level)
        run += int(np.argmin(ringing)) if not ringing.all() else len(ringing)
    return run


def _grey(points: np.ndarray) -> np.ndarray:
    """(N, M) or (N, M, 3) uint8 samples -> (N, M) grey levels (colour: the channels' mean;
    a strip uniform in grey is uniform in colour on a film)."""
    if points.ndim == 2:
        return points
    wide = points.astype(np.uint16)  # a small copy; sum(axis=2) on the view is slower
    return (wide[..., 0] + wide[..., 1] + wide[..., 2]) // 3


def _levels(points: np.ndarray, shares: tuple[float, ...]) -> np.ndarray:
    """(N, M) -> (N, len(shares)) int32: each line's value below which `share` of its
    points lie (a partition, not a sort)."""
    length = points.shape[1]
    ranks = [min(length - 1, int(share * length)) for share in shares]
    return np.partition(points, ranks, axis=1)[:, ranks].astype(np.int32)


def _uniform(points: np.ndarray) -> np.ndarray:
    """(N, M) grey samples of N lines -> (N,) bool: whether the central UNIFORM_SHARE of
    each line's values lies within 2 * TOLERANCE grey levels."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    stray = (1 - UNIFORM_SHARE) / 2  # at each end, left out
    low, high = _levels(points, (stray, 1 - stray)).T
    return high - low <= 2 * TOLERANCE


def _ringing(points: np.ndarray, level: float) -> np.ndarray:
    """(N, M) grey samples of the lines after a strip at `level` -> (N,) bool: whether each
    is still the strip, ringing: its median within TOLERANCE of the strip's, and its
    central 80% within 2 * TOLERANCE (a film line's median is the film's)."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    low, middle, high = _levels(points, (0.1, 0.5, 0.9)).T
    return (np.abs(middle - level) <= TOLERANCE) & (high - low <= 2 * TOLERANCE)
