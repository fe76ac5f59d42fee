"""The Kermany chest X-ray folders -> decoded arrays, and a patient-grouped validation split.

Layout (Kaggle "chest-xray-pneumonia"): DATA_DIR/{train,test[,val]}/{NORMAL,PNEUMONIA}/*.jpeg.
Decoded 64x64 arrays are cached as .npz so that seven experiments and later runs never decode
the same JPEG twice.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from app.contract.card import CLASS_NAMES
from app.contract.preprocessing import PREPROCESSING_VERSION, load_model_input

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}

# person123_bacteria_456.jpeg -> person123 ; IM-0115-0001.jpeg -> IM-0115 ;
# NORMAL2-IM-1258-0001.jpeg -> NORMAL2-IM-1258 (a separate series, kept as its own group).
_PNEUMONIA_PATIENT = re.compile(r"^(person\d+)_")
_NORMAL_PATIENT = re.compile(r"^(.*?IM-\d+)-")


@dataclass(frozen=True)
class Arrays:
    """Model inputs (N, H, W, C) uint8 and labels (N,) for the parts of a run."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Split:
    """Image files of one split with their labels and patient ids, in a fixed order."""

    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) int64, index into CLASS_NAMES
    patients: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: np.ndarray) -> Split:
        return Split(
            paths=tuple(self.paths[i] for i in index),
            labels=self.labels[index],
            patients=tuple(self.patients[i] for i in index),
        )

    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.labels == i)) for i, name in enumerate(CLASS_NAMES)}


def patient_id(path: Path) -> str:
    """Group key for a file: the patient where the name carries one, else the file itself."""
    for pattern in (_PNEUMONIA_PATIENT, _NORMAL_PATIENT):
        match = pattern.match(path.name)
        if match:
            return match.group(1)
    return path.stem


def list_split(data_dir: Path, split: str) -> Split:
    """All images of DATA_DIR/split/{NORMAL,PNEUMONIA}, sorted by class then name."""
    root = Path(data_dir) / split
    if not root.is_dir():
        raise FileNotFoundError(f"no '{split}' folder in {data_dir}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASS_NAMES):
        class_dir = root / name
        if not class_dir.is_dir():
            raise FileNotFoundError(f"missing class folder {class_dir}")
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths.extend(files)
        labels.extend([label] * len(files))
    return Split(
        paths=tuple(paths),
        labels=np.asarray(labels, dtype=np.int64),
        patients=tuple(f"{CLASS_NAMES[y]}/{patient_id(p)}" for p, y in zip(paths, labels)),
    )


def split_train_validation(
    train: Split, val_fraction: float, seed: int
) -> tuple[Split, Split]:
    """Carve a stratified validation split out of train with no patient in both parts."""
    n_splits = max(2, round(1 / val_fraction))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    fit_index, val_index = next(folds.split(np.zeros(len(train)), train.labels, train.patients))
    return train.subset(np.sort(fit_index)), train.subset(np.sort(val_index))


def limit_per_class(split: Split, per_class: int) -> Split:
    """The first `per_class` files of each class (smoke runs)."""
    keep = np.concatenate([np.flatnonzero(split.labels == c)[:per_class]
                           for c in range(len(CLASS_NAMES))])
    return split.subset(keep)


def load_parts(data_dir: Path, val_fraction: float, seed: int,
               per_class: int | None = None) -> dict[str, Split]:
    """The full protocol's parts: "fit" and "val" (patient-grouped, out of train/) and "test"."""
    train, test = list_split(data_dir, "train"), list_split(data_dir, "test")
    if per_class:
        train, test = limit_per_class(train, per_class), limit_per_class(test, per_class)
    fit, val = split_train_validation(train, val_fraction, seed)
    return {"fit": fit, "val": val, "test": test}


def load_part_arrays(parts: dict[str, Split], size: tuple[int, int], channels: int,
                     cache_dir: Path | None = None) -> Arrays:
    """Decoded model inputs and labels of `load_parts`' parts."""
    x = {name: load_arrays(parts[name], size, channels, cache_dir) for name in ("fit", "val",
                                                                               "test")}
    return Arrays(x["fit"], parts["fit"].labels, x["val"], parts["val"].labels, x["test"],
                  parts["test"].labels)


def load_arrays(
    split: Split,
    size: tuple[int, int],
    channels: int,
    cache_dir: Path | None = None,
    workers: int = 4,
    version: str = PREPROCESSING_VERSION,
) -> np.ndarray:
    """Decode every file of `split` to the model input of preprocessing `version` (a model's
    card's, to feed a model trained before; this code's by default), (N, H, W, C) uint8,
    cached on disk."""
    cache_file = _cache_path(cache_dir, split, size, channels, version) if cache_dir else None
    if cache_file is not None and cache_file.exists():
        with np.load(cache_file) as cached:
            return cached["images"]

    def load(path: Path) -> np.ndarray:
        return load_model_input(path.read_bytes(), size, channels, version=version)

    # Pillow releases the GIL while decoding, so threads use both cores.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(load, split.paths))
    shape = (len(split), size[0], size[1], channels)
    array = np.stack(images) if images else np.zeros(shape, dtype=np.uint8)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, images=array)
        tmp.replace(cache_file)
    return array


def _cache_path(cache_dir: Path, split: Split, size: tuple[int, int], channels: int,
                version: str) -> Path:
    """A cache key that changes with the files, their sizes, the input shape and the
    preprocessing version (3 crops borders: a version 2 cache is not its input)."""
    digest = hashlib.sha256()
    digest.update(f"{version}|{size}|{channels}".encode())
    for path in split.paths:
        digest.update(f"|{path.resolve()}|{path.stat().st_size}".encode())
    return Path(cache_dir) / f"images-{digest.hexdigest()[:16]}.npz"
