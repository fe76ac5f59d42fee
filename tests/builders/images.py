"""Small generated images for tests: the dataset itself never enters the repo."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def xray_like(height: int = 96, width: int = 80, seed: int = 0) -> np.ndarray:
    """(H, W) uint8: a smooth bright 'chest' on a dark background with a little noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    blob = np.exp(-(((rows - height / 2) / (height / 3)) ** 2
                    + ((cols - width / 2) / (width / 3)) ** 2))
    image = 200 * blob + rng.normal(0, 12, (height, width)) + 20
    return np.clip(image, 0, 255).astype(np.uint8)


def body_ellipse(height: int, width: int, grow: float = 0.0) -> np.ndarray:
    """(H, W) bool: the body of `chest_on_air`, an ellipse filling most of the film, `grow`
    px wider on every side."""
    rows, cols = np.mgrid[0:height, 0:width]
    return (((rows - height / 2) / (height * 0.47 + grow)) ** 2
            + ((cols - width / 2) / (width * 0.36 + grow)) ** 2 < 1)


def chest_on_air(height: int = 224, width: int = 224, seed: int = 0,
                 marker: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(film (H, W) uint8, body (H, W) bool, lungs (H, W) bool): a body ellipse (grey 170)
    on air (grey 12) at both sides, two lungs (grey 45) inside it, noise as a JPEG's, and
    optionally a bright 'R' marker block in the air at the top left."""
    rows, cols = np.mgrid[0:height, 0:width]
    body = body_ellipse(height, width)
    lungs = np.zeros_like(body)
    for centre in (0.36, 0.64):
        lungs |= (((rows - height * 0.45) / (height * 0.27)) ** 2
                  + ((cols - width * centre) / (width * 0.1)) ** 2 < 1)
    film = np.where(body, 170.0, 12.0)
    film[lungs] = 45
    if marker:
        film[10:26, 8:20] = 240
    film += np.random.default_rng(seed).normal(0, 4, film.shape)
    return np.clip(film, 0, 255).astype(np.uint8), body, lungs


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def jpeg_bytes(height: int = 96, width: int = 80, mode: str = "L", seed: int = 0) -> bytes:
    image = Image.fromarray(xray_like(height, width, seed))
    return encode(image.convert(mode), "JPEG", quality=95)


def png_bytes(height: int = 96, width: int = 80, mode: str = "L", seed: int = 0) -> bytes:
    return encode(Image.fromarray(xray_like(height, width, seed)).convert(mode), "PNG")


def png16_bytes(height: int = 96, width: int = 80, seed: int = 0) -> bytes:
    """16-bit grayscale PNG using the whole 0-65535 range."""
    wide = xray_like(height, width, seed).astype(np.uint16) * 257
    return encode(Image.fromarray(wide), "PNG")


def exif_rotated_jpeg(height: int = 60, width: int = 100, orientation: int = 6) -> bytes:
    """A landscape JPEG whose EXIF says 'rotate 90° clockwise to display' (orientation 6)."""
    image = Image.fromarray(xray_like(height, width))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def make_dataset_tree(root: Path, per_class: dict[str, dict[str, int]], size: int = 72) -> Path:
    """A Kaggle-layout folder: root/{split}/{NORMAL,PNEUMONIA}/*.jpeg with patient-style names.

    per_class: {"train": {"NORMAL": 12, "PNEUMONIA": 12}, "test": {...}}. Pneumonia patients
    get two films each, so a patient-grouped split has something to keep together.
    """
    for split, counts in per_class.items():
        for label, count in counts.items():
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = xray_like(size, size, seed=hash((split, label, i)) % 2**32)
                if label == "PNEUMONIA":
                    pixels = np.clip(pixels.astype(int) + 40, 0, 255).astype(np.uint8)
                    name = f"person{i // 2}_bacteria_{i}.jpeg"
                else:
                    name = f"IM-{i // 2:04d}-{i % 2 + 1:04d}.jpeg"
                (folder / name).write_bytes(encode(Image.fromarray(pixels), "JPEG"))
    return root


def model_output(body: dict) -> float:
    """A response's (or batch entry's) model output, whether or not the film is assessable:
    generated blobs are small and unlike chest films, so they are not, and their output is
    `unvalidated_probability` (checking decoding, not clinical meaning)."""
    return body["probability"] if body["assessable"] else body["unvalidated_probability"]
