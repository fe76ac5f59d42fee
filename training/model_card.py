"""The model card: the JSON contract written beside every exported SavedModel.

Training writes it (`write_card`); the app reads it (`ModelCard`). Input size, channels,
class order, threshold and signature names live here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CARD_FILE = "model_card.json"
SIGNATURE = {"name": "serving_default", "input": "images", "output": "probability"}


def write_card(version_dir: Path, card: dict[str, Any]) -> Path:
    path = Path(version_dir) / CARD_FILE
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


@dataclass(frozen=True)
class ModelCard:
    """Typed access to the fields the app needs; `raw` keeps the rest for the report page."""

    raw: dict[str, Any]

    @classmethod
    def read(cls, version_dir: Path) -> ModelCard:
        return cls(json.loads((Path(version_dir) / CARD_FILE).read_text()))

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def version(self) -> int:
        return int(self.raw["version"])

    @property
    def signature(self) -> dict[str, str]:
        return dict(self.raw["signature"])

    @property
    def class_names(self) -> list[str]:
        return list(self.raw["class_names"])

    @property
    def positive_class(self) -> str:
        return str(self.raw["positive_class"])

    @property
    def negative_class(self) -> str:
        return next(c for c in self.class_names if c != self.positive_class)

    @property
    def threshold(self) -> float:
        return float(self.raw["threshold"])

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return int(self.raw["input"]["height"]), int(self.raw["input"]["width"])

    @property
    def channels(self) -> int:
        return int(self.raw["input"]["channels"])

    def label_for(self, probability: float, threshold: float) -> str:
        return self.positive_class if probability >= threshold else self.negative_class
