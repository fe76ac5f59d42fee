"""The heatmap: occlusion sensitivity (Zeiler and Fergus, 2014) of the pneumonia logit,
measured through the model's serving signature on the grid its card's `explanation` gives.

A patch of the film's mean grey hides one position of the grid at a time; each pixel's heat
is the mean drop of the logit over the measured positions that hid it, scaled to 0-1: the
regions whose occlusion lowers the pneumonia score most are the hottest. This is the map
the SavedModel's `explain` signature draws (training/export.py), with the same formula.

Why coarse to fine: the full grid (16 px patches every 4 px of the 64x64 input: 169 copies
of the film in one call) cost 27 ms of model 5 and 173 ms of model 8 on this project's
2-core machine, against 1 to 3 ms for the film alone. The coarse pass (every 12 px: 25
copies) finds the region that matters and the second pass measures the full grid around it
(up to 24 more), so the hottest region is measured as densely as before and the rest about
as coarsely as the full map's own grid noise: on 40 validation films the two-pass map kept
the full map's hottest 16 px cell on 29 (model 5) and 34 (model 8), where the full map with
its grid moved by 2 px keeps it on 26 and 31 (benchmarks/explain.py).

Needs NumPy only: the model is a `predict` function, (N, H, W, C) raw pixels -> (N,)
probability, called twice (or once, for a card without `coarse_stride`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.contract.card import Explanation

Predict = Callable[[np.ndarray], np.ndarray]

# float32's largest value below 1. The signature's probability is float32: its logit is
# exact to about 0.02 up to 14 and rounds to 16.6 above it, so a film that sure reads as
# 16.6 and its map shows only the regions that bring it below that. 3 of model 5's 522
# validation films were (none of model 8's); their maps kept the signature's hottest cell.
_BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))


def saturated(probability: np.ndarray) -> np.ndarray:
    """(N,) probability -> (N,) bool: those float32 holds as 1 or 0, whose logit it has
    lost: 21 of model 5 v3's 522 validation films, 3 of v2's, none of model 8's."""
    p = np.asarray(probability, np.float32)
    return (p >= np.float32(_BELOW_ONE)) | (p <= np.finfo(np.float32).tiny)


def logit(probability: np.ndarray) -> np.ndarray:
    """(N,) probability -> (N,) float64 log-odds. The serving signature's probability is
    sigmoid(a * z + b) of the network's logit z, a > 0 (the card's `calibration`), so
    differences of this are a times the differences of z, and the map's 0-1 scaling
    removes a: the same map as the logit's."""
    p = np.clip(np.asarray(probability, np.float64), np.finfo(np.float32).tiny, _BELOW_ONE)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Occlusion:
    """The occlusion map of a model whose input is `height` x `width` px."""

    explanation: Explanation
    height: int
    width: int

    def grid(self) -> np.ndarray:
        """(P, 2) int top-left corners (row, column) in px of every position of the full
        grid, row by row, as the `explain` signature orders them."""
        rows, cols = (np.arange(0, side - self.explanation.patch + 1, self.explanation.stride)
                      for side in (self.height, self.width))
        return np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)

    def first_pass(self) -> np.ndarray:
        """(Q, 2) the positions measured first: every `coarse_stride` px of the grid and
        its last row and column (so that the coarse pass reaches every border), or the
        whole grid without a `coarse_stride`."""
        grid = self.grid()
        coarse = self.explanation.coarse_stride
        if coarse is None or len(grid) == 0:
            return grid
        keep = np.ones(len(grid), bool)
        for axis in (0, 1):
            starts = grid[:, axis]
            keep &= (starts % coarse == 0) | (starts == starts.max())
        return grid[keep]

    def second_pass(self, best: np.ndarray, measured: np.ndarray) -> np.ndarray:
        """(R, 2) the grid positions within `refine` px (on both axes) of `best`, (2,),
        that `measured`, (Q, 2), lacks; none without a `coarse_stride`."""
        if self.explanation.coarse_stride is None:
            return np.zeros((0, 2), int)
        grid = self.grid()
        near = np.all(np.abs(grid - best) <= self.explanation.refine, axis=1)
        done = (grid[:, None, :] == measured[None]).all(-1).any(1)
        return grid[near & ~done]

    def explain(self, predict: Predict, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, C) raw 0-255 pixels -> ((N,) probability, (N, H, W) float32 heatmap in
        0-1), in at most two calls of `predict`: the films with their coarse pass's copies,
        then every film's second pass. A film that no position lowers gets a map of 0."""
        images = np.asarray(images, np.float32)
        n = len(images)
        first = self.first_pass()
        out = predict(np.concatenate([images, *(self._occlude(x, first) for x in images)]))
        probabilities = out[:n]
        z = logit(probabilities)  # (N,)
        drops = z[:, None] - logit(out[n:]).reshape(n, len(first))  # (N, Q)
        seconds = [self.second_pass(first[np.argmax(d)], first) if len(d) else first[:0]
                   for d in drops]
        measured = [(first, d) for d in drops]
        if sum(map(len, seconds)):
            more = logit(predict(np.concatenate(
                [self._occlude(x, s) for x, s in zip(images, seconds)])))
            ends = np.cumsum([len(s) for s in seconds])
            measured = [(np.concatenate([first, s]), np.concatenate([d, z[i] - part]))
                        for i, (s, d, part) in enumerate(zip(seconds, drops,
                                                             np.split(more, ends[:-1])))]
        heat = [self._spread(positions, d) for positions, d in measured]
        return probabilities, np.stack(heat) if heat else np.zeros((0, self.height,
                                                                     self.width), np.float32)

    def _occlude(self, image: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(H, W, C) film -> (len(positions), H, W, C) copies, each with one patch hidden
        by the film's mean grey."""
        copies = np.repeat(image[None], len(positions), axis=0)
        fill, side = image.mean(), self.explanation.patch
        for copy, (row, col) in zip(copies, positions):
            copy[row:row + side, col:col + side] = fill
        return copies

    def _spread(self, positions: np.ndarray, drops: np.ndarray) -> np.ndarray:
        """Each position's drop (clipped at 0: a region that raises the score is not
        evidence) averaged over the positions that hid each pixel: (H, W) in 0-1. Pixels
        that no position hid stay 0."""
        side = self.explanation.patch
        rows, cols = np.arange(self.height), np.arange(self.width)
        inside_r = ((rows >= positions[:, :1]) & (rows < positions[:, :1] + side))  # (P, H)
        inside_c = ((cols >= positions[:, 1:]) & (cols < positions[:, 1:] + side))  # (P, W)
        inside_r, inside_c = inside_r.astype(np.float64), inside_c.astype(np.float64)
        heat = inside_r.T @ (np.maximum(drops, 0)[:, None] * inside_c)
        heat /= np.maximum(inside_r.T @ inside_c, 1.0)
        return (heat / (heat.max() + 1e-8)).astype(np.float32)
