"""Histogram equalisation inside model 8: each film's own cumulative histogram."""

import numpy as np

from training.layers import HistogramEqualization


def equalized_reference(image: np.ndarray) -> np.ndarray:
    """(H, W, C) 0-255 -> (H, W): each pixel's share of the film at or below its grey level."""
    gray = np.clip(np.round(image.astype(np.float64).mean(axis=-1)), 0, 255).astype(int)
    return np.array([[np.mean(gray <= v) for v in row] for row in gray])


def test_histogram_equalization_is_each_films_own_cumulative_histogram():
    rng = np.random.default_rng(0)
    films = rng.integers(0, 256, (3, 12, 10, 3)).astype(np.float32)
    films[1] = np.repeat(rng.integers(0, 4, (12, 10, 1)), 3, axis=2)  # many ties
    films[2] = 7.0  # a flat film: every pixel is at or below its own level
    out = np.asarray(HistogramEqualization()(films))
    assert out.shape == (3, 12, 10, 1)
    for film, got in zip(films, out):
        np.testing.assert_allclose(got[..., 0], equalized_reference(film), atol=1e-6)


def test_histogram_equalization_ignores_exposure_and_contrast():
    """The point of the layer: a film taken brighter or with more contrast (a monotone change
    of its grey levels) gives the network the same input."""
    rng = np.random.default_rng(1)
    film = rng.integers(0, 120, (1, 16, 16, 1)).astype(np.float32)
    brighter = film * 2 + 10  # 0-119 -> 10-248, order kept
    layer = HistogramEqualization()
    np.testing.assert_allclose(np.asarray(layer(film)), np.asarray(layer(brighter)), atol=1e-6)
