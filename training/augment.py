"""On-the-fly augmentation of the training split, in NumPy on the CPU.

Reproduces what the original study's `ImageDataGenerator(shear_range=0.2, zoom_range=0.2,
horizontal_flip=True)` does to each image, including Keras' units: `shear_range` is an angle
in DEGREES (so 0.2 is a tiny shear), `zoom_range=0.2` draws independent row and column zooms
from [0.8, 1.2], the transform is bilinear about the image centre with edge pixels repeated
(`fill_mode="nearest"`), and half the images are mirrored left-right.

It runs in the input pipeline rather than as Keras layers (random-transform layers inside a
model were about 150x slower under JAX on a GPU), one whole epoch at a time, vectorised.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 16

# What each experiment's `augmentation` does, in the words the report and the card use.
DESCRIPTIONS = {
    "study": ("on the fly, a new random draw every epoch, training part only: Keras "
              "ImageDataGenerator semantics with shear_range=0.2 (degrees), zoom_range=0.2 "
              "(row and column zoom each in [0.8, 1.2]), horizontal_flip=True; bilinear, "
              "edges repeated"),
    "xray": ("on the fly, a new random draw every epoch, training part only: rotation "
             "within ±10°, zoom within ±10%, shift within ±5% of each side, contrast and "
             "brightness within ±10%; no mirroring; bilinear, edges repeated"),
}


def random_affine(
    images: np.ndarray,
    rng: np.random.Generator,
    shear_degrees: float = 0.2,
    zoom: float = 0.2,
    horizontal_flip: bool = True,
) -> np.ndarray:
    """(N, H, W, C) uint8/float -> (N, H, W, C) float32, one random transform per image."""
    n, height, width, _ = images.shape
    shear = np.deg2rad(rng.uniform(-shear_degrees, shear_degrees, n)).astype(np.float32)
    zoom_rows, zoom_cols = rng.uniform(1 - zoom, 1 + zoom, (2, n)).astype(np.float32)
    # Output (row, col) -> input (row, col), as Keras' apply_affine_transform: shear @ zoom.
    a = zoom_rows  # row <- row
    b = -np.sin(shear) * zoom_cols  # row <- col
    d = np.cos(shear) * zoom_cols  # col <- col
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                             np.arange(width, dtype=np.float32), indexing="ij")
    r0, c0 = np.float32((height - 1) / 2), np.float32((width - 1) / 2)
    dr, dc = rows - r0, cols - c0  # (H, W)
    src_r = a[:, None, None] * dr + b[:, None, None] * dc + r0  # (N, H, W)
    src_c = d[:, None, None] * dc + c0
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, n, _CHUNK):  # chunks keep the gathers in cache
        part = slice(start, start + _CHUNK)
        out[part] = _bilinear(images[part], src_r[part], src_c[part])
    if horizontal_flip:
        flip = rng.random(n) < 0.5
        out[flip] = out[flip, :, ::-1]
    return out


def _bilinear(images: np.ndarray, src_r: np.ndarray, src_c: np.ndarray) -> np.ndarray:
    """Sample (N, H, W, C) images at fractional (N, H, W) coordinates, edges repeated."""
    n, height, width, channels = images.shape
    src_r = np.clip(src_r, 0, height - 1)
    src_c = np.clip(src_c, 0, width - 1)
    r_lo = np.minimum(src_r.astype(np.int32), height - 2)  # coords >= 0, so int() floors
    c_lo = np.minimum(src_c.astype(np.int32), width - 2)
    fr = (src_r - r_lo)[..., None]
    fc = (src_c - c_lo)[..., None]
    # One flat gather per corner: much faster than 3-D fancy indexing.
    flat = images.reshape(n * height * width, channels)
    base = (np.arange(n, dtype=np.int32) * (height * width))[:, None, None] + r_lo * width + c_lo
    top_left = flat[base].astype(np.float32)
    top_right = flat[base + 1].astype(np.float32)
    bottom_left = flat[base + width].astype(np.float32)
    bottom_right = flat[base + width + 1].astype(np.float32)
    top = top_left + (top_right - top_left) * fc
    bottom = bottom_left + (bottom_right - bottom_left) * fc
    return top + (bottom - top) * fr


def random_xray(
    images: np.ndarray,
    rng: np.random.Generator,
    rotation_degrees: float = 10.0,
    zoom: float = 0.1,
    shift: float = 0.05,
    intensity: float = 0.1,
) -> np.ndarray:
    """(N, H, W, C) -> (N, H, W, C) float32: augmentation suited to frontal chest films.

    A small rotation (positioning), one isotropic zoom (distance to the detector), a shift
    (framing), and brightness and contrast (exposure), each drawn per image. No mirroring:
    the heart is on the left of a frontal film, and a mirrored one is not a film a clinic
    takes. Bilinear, edges repeated, as `random_affine`.
    """
    n, height, width, _ = images.shape
    angle = np.deg2rad(rng.uniform(-rotation_degrees, rotation_degrees, n)).astype(np.float32)
    scale = rng.uniform(1 - zoom, 1 + zoom, n).astype(np.float32)
    shift_r = (rng.uniform(-shift, shift, n) * height).astype(np.float32)
    shift_c = (rng.uniform(-shift, shift, n) * width).astype(np.float32)
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                             np.arange(width, dtype=np.float32), indexing="ij")
    r0, c0 = np.float32((height - 1) / 2), np.float32((width - 1) / 2)
    dr, dc = rows - r0, cols - c0
    # Output pixel -> input pixel: rotate and scale about the centre, then shift.
    src_r = cos[:, None, None] * dr - sin[:, None, None] * dc + r0 + shift_r[:, None, None]
    src_c = sin[:, None, None] * dr + cos[:, None, None] * dc + c0 + shift_c[:, None, None]
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        out[part] = _bilinear(images[part], src_r[part], src_c[part])
    # Contrast about the film's own mean, then brightness, within the 0-255 range.
    contrast = rng.uniform(1 - intensity, 1 + intensity, n).astype(np.float32)
    brightness = (rng.uniform(-intensity, intensity, n) * 255).astype(np.float32)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    return np.clip(out, 0, 255, out=out)
