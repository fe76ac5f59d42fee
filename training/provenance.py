"""Where a run came from, for report.json and the card: the code, the software, the data."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from training.data import Split
from training.reference import DATASET_CREDIT, DATASET_CREDIT_SHORT


def code_version() -> str:
    """The git commit the code ran from, '+dirty' when it had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "training", "app"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty.strip() else "")


def environment() -> dict:
    import keras
    import numpy as np
    import sklearn

    return {"keras": keras.__version__, "backend": keras.backend.backend(),
            "numpy": np.__version__, "scikit_learn": sklearn.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count()}


def dataset_info(parts: dict[str, Split], val_fraction: float, seed: int,
                 per_class: int | None) -> dict:
    """The data a run used: the card's DataInfo, and report.json's `dataset`."""
    return {
        "name": "Kermany pediatric chest X-ray (Kaggle chest-xray-pneumonia layout)",
        "credit": DATASET_CREDIT,
        "credit_short": DATASET_CREDIT_SHORT,
        "counts": {"train": parts["fit"].counts(), "validation": parts["val"].counts(),
                   "test": parts["test"].counts()},
        "split": (f"validation = {val_fraction:.0%} of train/, stratified by class and "
                  f"grouped by patient (no patient in both), seed {seed}; test/ used once, "
                  "for this report"),
        "subset_per_class": per_class,
    }
