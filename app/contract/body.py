"""The patient's body on a film, from the film itself, and how much of a heatmap lies outside
it: does the map point at the patient, or at the air, the markers and the film's edge?

A frontal chest film has three kinds of dark: the air around the patient (the darkest and
flattest, and it reaches the film's edge), the lungs (dark too, but enclosed by the chest
wall, the mediastinum and the diaphragm) and, rarely, gas below the diaphragm. So the body
is what is left when the dark region connected to the film's border is taken away, keeping
the largest piece (a marker letter or a lead in the air is not the patient) with its holes
filled (the lungs).

    body_mask(pixels)              (H, W) uint8 film -> (H, W) bool, True on the body
    outside_share(heat, mask)      the share of a heatmap's mass outside the body, 0-1
    film_outside_share(film, heat) both in one, for a map drawn over `film`
    heatmap_warning(share)         the sentence shown with a map mostly outside, or None

NumPy only: the serving path draws a heatmap in the app, and training measures the served
models' maps (training/robustness.py) with this same code.

The rule of the threshold (issue 28, item 5): "dark" is below `DARK_FRACTION` of the way
from the film's darkest percentile to its Otsu threshold. Looked at on random draws of 24
training films: Otsu alone (all of the way) took the lungs of many films for air, where the
chest wall at the film's edge is thin; 0.35 to 0.5 of the way kept the lungs inside and the
strips of air beside and above the patient outside, with the marker letters in them.
"""

from __future__ import annotations

import numpy as np

WORKING_SIDE = 128  # px: the film is reduced to about this longest side before the fill
DARK_FRACTION = 0.4  # of the way from the 1st percentile to the Otsu threshold
MOSTLY_OUTSIDE = 0.5  # a map with more of its mass outside the body than this is flagged
_DARKEST_PERCENTILE = 1.0


def body_mask(pixels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 (or (H, W, 3), read as its mean grey) -> (H, W) bool, True on the body.

    A film with no dark region at its border (the body fills it) is all body. Raises
    ValueError for an array that is not (H, W) or (H, W, 3), or is empty."""
    grey = _grey(pixels)
    small, factor = _reduce(grey)
    small = _box_blur(small)
    lowest = np.percentile(small, _DARKEST_PERCENTILE)
    threshold = lowest + DARK_FRACTION * (_otsu(small) - lowest)
    air = _connected_to_border(small <= threshold)
    body = _largest_piece(~air)
    body = ~_connected_to_border(~body)  # holes (the lungs, gas) filled
    full = np.repeat(np.repeat(body, factor, axis=0), factor, axis=1)
    # The rows and columns the reduction dropped (at most factor - 1) take the edge's value.
    full = np.pad(full, ((0, grey.shape[0] - full.shape[0]), (0, grey.shape[1] - full.shape[1])),
                  mode="edge")
    return full


def outside_share(heat: np.ndarray, mask: np.ndarray) -> float:
    """The share of a heatmap's mass outside the body: sum of heat outside / sum of heat.

    `heat`: (h, w) float >= 0 over the whole film (the occlusion map of
    app/services/occlusion.py is at the model input's size); `mask`: (H, W) bool of
    `body_mask`, of the same film at any size, resized to (h, w) by nearest neighbour. A map
    of zeros (nothing lowered the score) points nowhere: 0. Raises ValueError on a negative
    or non-finite heat, or shapes that are not 2-D."""
    heat = np.asarray(heat, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if heat.ndim != 2 or mask.ndim != 2:
        raise ValueError(f"heat {heat.shape} and mask {mask.shape} must both be 2-D")
    if not np.all(np.isfinite(heat)) or np.any(heat < 0):
        raise ValueError("heat must be finite and >= 0")
    total = heat.sum()
    if total <= 0:
        return 0.0
    return float(heat[~_resize_nearest(mask, heat.shape)].sum() / total)


def film_outside_share(film: np.ndarray, heat: np.ndarray) -> float:
    """The share of `heat`, a (h, w) map over all of `film` (the film it is drawn on, any
    size), outside the body that `film` shows: `outside_share(heat, body_mask(film))`."""
    return outside_share(heat, body_mask(film))


def mostly_outside(share: float) -> bool:
    """The rule of issue 28: a map with more than half its mass outside the body does not
    show what the model read in the lungs."""
    return share > MOSTLY_OUTSIDE


def heatmap_warning(share: float) -> str | None:
    """The sentence shown with a map that points mostly outside the body; None otherwise."""
    if not mostly_outside(share):
        return None
    return (f"The heatmap points mostly outside the body ({share:.0%} of it): it does not "
            "show what the model read in the lungs.")


def _grey(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[2] in (1, 3):
        pixels = pixels.mean(axis=2)
    if pixels.ndim != 2 or pixels.size == 0:
        raise ValueError(f"a film is (H, W) or (H, W, 3), not {pixels.shape}")
    return pixels.astype(np.float64)


def _reduce(grey: np.ndarray) -> tuple[np.ndarray, int]:
    """Block means by a whole factor so that the longest side is at most WORKING_SIDE."""
    factor = max(1, -(-max(grey.shape) // WORKING_SIDE))
    height, width = grey.shape[0] // factor * factor, grey.shape[1] // factor * factor
    if height == 0 or width == 0:  # a strip thinner than the factor: keep it whole
        return grey, 1
    blocks = grey[:height, :width].reshape(height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(1, 3)), factor


def _box_blur(image: np.ndarray) -> np.ndarray:
    """3x3 mean, edges repeated: JPEG noise in the air must not break its region."""
    padded = np.pad(image, 1, mode="edge")
    height, width = image.shape
    return sum(padded[i:i + height, j:j + width] for i in range(3) for j in range(3)) / 9


def _otsu(image: np.ndarray) -> float:
    """Otsu's threshold (1979) of a 0-255 image: the grey that best splits it in two."""
    hist = np.bincount(np.clip(image, 0, 255).astype(np.int64).ravel(), minlength=256)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    between = (mu[-1] * omega - mu) ** 2 / np.maximum(omega * (1 - omega), 1e-12)
    return float(np.argmax(between))


def _pieces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 4-connected pieces of `mask`, from its runs of pixels along rows joined where
    they overlap the row above (union-find over runs: a few hundred on a 128 px film, where
    a per-pixel flood fill takes as many whole-image steps as its longest path).

    Returns (labels (H, W) int, -1 off the mask; sizes (K,) pixels per piece; the pieces
    that touch the image's border (K,) bool)."""
    height, width = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)  # (H, W + 1)
    rows, starts = np.nonzero(edges == 1)  # row-major: the i-th start and end pair up
    ends = np.nonzero(edges == -1)[1]  # exclusive
    parent = list(range(len(starts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bounds = np.searchsorted(rows, np.arange(height + 1)).tolist()
    first, last = starts.tolist(), ends.tolist()  # Python ints: the loop's compares are fast
    for row in range(1, height):
        i, i_end, j, j_end = bounds[row - 1], bounds[row], bounds[row], bounds[row + 1]
        while i < i_end and j < j_end:  # both rows' runs, left to right
            if first[i] < last[j] and first[j] < last[i]:
                parent[root(i)] = root(j)
            if last[i] < last[j]:
                i += 1
            else:
                j += 1
    roots = np.array([root(i) for i in range(len(first))], dtype=np.int64)
    ids, piece = np.unique(roots, return_inverse=True)
    labels = np.full(mask.shape, -1, dtype=np.int64)
    for row, start, end, label in zip(rows.tolist(), first, last, piece.tolist()):
        labels[row, start:end] = label
    sizes = np.bincount(piece, weights=ends - starts, minlength=len(ids))
    border = np.zeros(len(ids), dtype=bool)
    border[piece[(rows == 0) | (rows == height - 1) | (starts == 0) | (ends == width)]] = True
    return labels, sizes, border


def _connected_to_border(mask: np.ndarray) -> np.ndarray:
    """The pixels of `mask` 4-connected to the image's border through `mask`."""
    labels, _, border = _pieces(mask)
    return np.isin(labels, np.flatnonzero(border))


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected piece of `mask`; empty stays empty."""
    labels, sizes, _ = _pieces(mask)
    if len(sizes) == 0:
        return mask
    return labels == int(np.argmax(sizes))


def _resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool -> `shape` by nearest neighbour, pixel centres aligned."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(int),
                      mask.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(int),
                      mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]
