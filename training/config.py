"""What one full-data or stronger-protocol run is asked to do, and the data it reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training import defaults
from training.data import Arrays, Split, load_part_arrays, load_parts


@dataclass
class RunConfig:
    data_dir: Path
    out_dir: Path
    experiments: list[int]
    image_size: int = 64
    channels: int = 3
    val_fraction: float = defaults.VAL_FRACTION
    seed: int = defaults.SEED
    max_epochs: int | None = None  # cap for quick runs; None = each recipe's epochs
    limit_per_class: int | None = None  # tiny subsets for smoke runs
    cache_dir: Path | None = None
    export: bool = True
    model_version: int | None = None  # None = the next free version number
    force: bool = False  # replace an existing version
    target_sensitivity: float = defaults.TARGET_SENSITIVITY  # the exported operating point
    command: str = ""
    code_version: str = ""
    # --protocol real-films: each augmentation family's chance per film (training/augment.py
    # DEFAULT_PROBABILITIES where None).
    augment_probabilities: dict[str, float] | None = None

    def epochs_for(self, recipe_epochs: int) -> int:
        """An experiment's epochs under this run's cap."""
        return min(recipe_epochs, self.max_epochs or recipe_epochs)

    def load_data(self) -> tuple[dict[str, Split], Arrays]:
        """The fit/val/test parts (validation split by this run's seed) and their arrays."""
        parts = load_parts(self.data_dir, self.val_fraction, self.seed, self.limit_per_class)
        size = (self.image_size, self.image_size)
        return parts, load_part_arrays(parts, size, self.channels, self.cache_dir)
