"""Training films at their own resolution, for augmentations that draw what real films carry.

Burned-in text, side markers, tubes and borders are drawn on the film as a technologist's
console or a viewer puts them there, at the film's resolution, and only then does the film go
through the app's own preprocessing (app/contract/preprocessing.py: border crop, resize) to
the model input. Drawing them on the 64 px model input instead would teach the model marks
that no real film carries (a 2 px letter), and would skip the crop the app applies.

The dataset's films are 224x224 (shared/data/README.md): the decoded grey films of the fit
part take 224 * 224 bytes each, 235 MB for 4,694 films, cached on disk like the model inputs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from app.contract.preprocessing import PREPROCESSING_VERSION, decode, to_model_input
from training.data import Split

FilmAugment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def load_films(split: Split, cache_dir: Path | None = None, workers: int = 4) -> np.ndarray:
    """Every file of `split` decoded as the app decodes it, in grey: (N, H, W) uint8.

    The films must share one size (the dataset's are 224x224); ValueError otherwise, as
    a stack of mixed sizes would need a resize that the app never applies.
    """
    cache_file = _cache_path(cache_dir, split) if cache_dir else None
    if cache_file is not None and cache_file.exists():
        with np.load(cache_file) as cached:
            return cached["films"]

    def load(path: Path) -> np.ndarray:
        pixels = decode(path.read_bytes()).pixels
        if pixels.ndim == 3:  # a grey film in an RGB JPEG: Pillow's L, as to_model_input
            pixels = np.asarray(Image.fromarray(pixels, mode="RGB").convert("L"))
        return pixels

    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without the GIL
        films = list(pool.map(load, split.paths))
    if len({film.shape for film in films}) > 1:
        raise ValueError("the films are of several sizes; real-film augmentation needs one")
    array = np.stack(films) if films else np.zeros((0, 1, 1), dtype=np.uint8)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, films=array)
        tmp.replace(cache_file)
    return array


def model_input(pixels: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """A decoded (H, W) uint8 film -> (height, width, channels) uint8 model input, exactly as
    the app prepares a film for a model of this PREPROCESSING_VERSION (the border crop
    included): the one function of app/contract/preprocessing.py, not a copy of it."""
    return to_model_input(pixels, size, channels, version=PREPROCESSING_VERSION)


class FilmBatches(keras.utils.PyDataset):
    """Shuffled (images, labels) batches, each film augmented at its own resolution and then
    prepared as the app prepares it: (B, height, width, channels) float32 0-255, (B,) float32.

    Epoch e's order comes from the seed sequence (seed, e), batch i's augmentation from
    (seed, e, i), as AugmentedBatches (training/train.py): a run is the same whatever order
    Keras asks for batches in.
    """

    once = None  # a new draw every epoch, never one draw reused (AugmentedBatches' `once`)

    def __init__(self, films: np.ndarray, labels: np.ndarray, batch_size: int,
                 augment: FilmAugment, size: tuple[int, int], channels: int, seed: int,
                 workers: int = 1) -> None:
        # Threads: Pillow draws, encodes and resizes without the GIL for much of the time.
        super().__init__(workers=workers, use_multiprocessing=False)
        self.films = films  # (N, H, W) uint8
        self.labels = labels.astype(np.float32)
        self.batch_size, self.augment, self.seed = batch_size, augment, seed
        self.size, self.channels = size, channels
        self._epoch = (0, self._order(0))

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, order = self._epoch
        part = order[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng((self.seed, epoch, index))
        images = np.stack([model_input(self.augment(self.films[i], rng), self.size,
                                       self.channels) for i in part])
        return images.astype(np.float32), self.labels[part]

    def on_epoch_end(self) -> None:
        epoch = self._epoch[0] + 1
        self._epoch = (epoch, self._order(epoch))

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.labels))


def _cache_path(cache_dir: Path, split: Split) -> Path:
    digest = hashlib.sha256(f"films|{PREPROCESSING_VERSION}".encode())
    for path in split.paths:
        digest.update(f"|{path.resolve()}|{path.stat().st_size}".encode())
    return Path(cache_dir) / f"films-{digest.hexdigest()[:16]}.npz"
