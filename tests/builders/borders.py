"""Films with uniform borders, for the border crop (app/contract/borders.py): a film inside
black, white or grey strips, the box it lies at, and a made chest film whose dark lung
fields reach its edges (which has no border to find)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from app.contract.borders import Box
from tests.builders.images import encode

SIDES = ("top", "left", "bottom", "right")


def bordered(film: np.ndarray, value: int, **widths: int) -> tuple[np.ndarray, Box]:
    """`film` ((H, W) or (H, W, 3) uint8) inside strips of `value`, `widths` px wide on the
    sides named; and the Box where the film lies in the result."""
    top, left, bottom, right = (widths.get(side, 0) for side in SIDES)
    height, width = film.shape[:2]
    canvas = np.full((top + height + bottom, left + width + right, *film.shape[2:]), value,
                     dtype=np.uint8)
    canvas[top:top + height, left:left + width] = film
    return canvas, Box(top, left, top + height, left + width)


def widths_of(share: float, sides: tuple[str, ...], height: int, width: int) -> dict[str, int]:
    """Strip widths, px, of `share` of the (height, width) film's side on each side named."""
    return {side: round(share * (height if side in ("top", "bottom") else width))
            for side in sides}


def jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """The pixels as a JPEG of `quality` gives them back: ringing at every edge."""
    data = encode(Image.fromarray(pixels), "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(data)))


def off_by(box: tuple[int, ...], truth: tuple[int, ...]) -> int:
    """px between a found box (or margins) and the made one, on its worst side."""
    return max(abs(found - true) for found, true in zip(box, truth))


def chest_with_dark_lungs(height: int = 400, width: int = 360, seed: int = 1) -> np.ndarray:
    """(H, W) uint8: a made chest film whose dark lung fields reach the left and right edges
    (a tight crop of a real film): ribs and fine noise in them, brighter shoulders above
    and abdomen below, as on a film; no border."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    film = 150.0 - 40 * np.exp(-((cols - width / 2) / (width / 6)) ** 2)  # mediastinum
    lungs = (rows > 0.2 * height) & (rows < 0.8 * height) & \
        (np.abs(cols - width / 2) > width / 8)
    ribs = 12 * np.sin(rows / height * 2 * np.pi * 9) ** 2  # bands across each lung
    film = np.where(lungs, 30 + ribs, film) + rng.normal(0, 3, (height, width))
    return np.clip(film, 0, 255).astype(np.uint8)
