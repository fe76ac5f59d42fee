"""What the delivery queue keeps of one film's results until the PACS takes them: a recipe,
from which app/dicom/results.py builds the SR and the secondary capture (again, identically,
after a restart or a failed attempt), never the built objects.

A recipe holds the sanitised header (app/dicom/header.py: the identity and the Type 2 study
and patient elements the results must carry, nothing more of the header), the judgement
(the model's answer, its operating point and when it was made) and, for a secondary capture,
the film at display size and either its heat map or the model input it is computed from at
delivery (the node answers a C-STORE once the film is scored and committed: the map, two
model calls of up to 26 film copies, is drawn by the delivery worker; app/dicom/results.py).
Encoded as a few length-prefixed parts (`encode`): JSON, the header in the DICOM JSON model
(so its text needs no character set), and two PNGs (tens of KB for a film: the queue never
holds a built result).

The results' UIDs and dates are derived from the recipe alone (the source's UIDs, the model,
its operating point, the time it was made), so that every build of a recipe is the same
object, byte for byte: the PACS keeps one.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import metadata

import numpy as np
from PIL import Image
from pydicom import Dataset

from app.contract.site import CARD_TEXT
from app.contract.triage_score import score_text, triage_score
from app.services.pipeline import Display, Prediction

MAGIC = b"PTR1"  # a recipe; the queue's rows from before it hold Part 10 instances
_LENGTH = struct.Struct(">I")


@cache
def software_version() -> str:
    """The installed app's version (read once)."""
    try:
        return metadata.version("pneumonia-triage")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Judgement:
    """What the results say of the film: the model's answer (a Prediction's fields the
    results show), the time it was made (aware) and the software that made it."""

    probability: float
    threshold: float
    flagged: bool
    reasons: tuple[str, ...]
    model_name: str
    model_version: str
    made_at: datetime
    software: str
    # How the results name the threshold (OperatingPoint.text): the card's, or "site
    # operating point, validated on N films on DATE" (app/contract/site.py).
    operating_point: str = CARD_TEXT

    @classmethod
    def of(cls, prediction: Prediction, made_at: datetime) -> Judgement:
        point = getattr(prediction, "point", None)  # a stand-in prediction (tests) has none
        return cls(float(prediction.probability), float(prediction.threshold),
                   bool(prediction.flagged), tuple(getattr(prediction, "reasons", ())),
                   prediction.model_name, str(prediction.model_version), made_at,
                   software_version(), CARD_TEXT if point is None else point.text)

    @property
    def assessable(self) -> bool:
        return not self.reasons

    @property
    def triage_score(self) -> float | None:
        return triage_score(self.probability, self.threshold) if self.assessable else None

    @property
    def triage_score_text(self) -> str | None:
        score = self.triage_score
        return None if score is None else score_text(score)

    def as_json(self) -> dict:
        return {"probability": self.probability, "threshold": self.threshold,
                "flagged": self.flagged, "reasons": list(self.reasons),
                "model_name": self.model_name, "model_version": self.model_version,
                "made_at": self.made_at.isoformat(), "software": self.software,
                "operating_point": self.operating_point}

    @classmethod
    def from_json(cls, data: dict) -> Judgement:
        return cls(float(data["probability"]), float(data["threshold"]), bool(data["flagged"]),
                   tuple(data["reasons"]), str(data["model_name"]),
                   str(data["model_version"]), datetime.fromisoformat(data["made_at"]),
                   str(data["software"]),
                   # A recipe queued before site profiles: the card's.
                   str(data.get("operating_point", CARD_TEXT)))


@dataclass(frozen=True)
class Recipe:
    """One film's results, unbuilt. `display`: the film ((H, W) uint8, at most 512 px) and
    its heat map ((h, w) in 0-1, held to 1/255) for the secondary capture; None: SR only."""

    header: Dataset
    judgement: Judgement
    display: Display | None = None

    @classmethod
    def of(cls, header: Dataset, judgement: Judgement, display: Display | None) -> Recipe:
        """A recipe whose display is already as `decode` will give it back (the heat map in
        steps of 1/255; without one, the model input kept to draw it from; neither for a
        film the model cannot judge, which gets no map), so that the results built from it
        now and after a round trip through the queue are the same."""
        if display is not None:
            heat = None if display.heat is None else \
                _heat_levels(display.heat).astype(np.float32) / np.float32(255)
            source = display.model_input if heat is None and judgement.assessable else None
            display = Display(display.film, heat, source)
        # The header as `decode` gives it back too (an empty text value is '' there).
        return cls(Dataset.from_json(header.to_json_dict()), judgement, display)

    def encode(self) -> bytes:
        pixels: list[tuple[str, bytes]] = []
        if self.display is not None:
            pixels.append(("film", _png(self.display.film)))
            if self.display.heat is not None:
                pixels.append(("heat", _png(_heat_levels(self.display.heat))))
            elif self.display.model_input is not None:
                pixels.append(("model_input", _png(self.display.model_input)))
        parts = [json.dumps({"judgement": self.judgement.as_json(),
                             "header": self.header.to_json_dict(),
                             "pixels": [name for name, _ in pixels]}).encode(),
                 *(png for _, png in pixels)]
        return MAGIC + b"".join(_LENGTH.pack(len(part)) + part for part in parts)

    @classmethod
    def decode(cls, data: bytes) -> Recipe:
        """Raises ValueError for bytes that are not a recipe."""
        if not is_recipe(data):
            raise ValueError("not a results recipe")
        parts = unpack(data[len(MAGIC):])
        head = json.loads(parts[0])
        # Recipes queued before the model input was kept name no parts: a film and a map.
        names = head.get("pixels", ["film", "heat"][:len(parts) - 1])
        pixels = dict(zip(names, parts[1:]))
        display = None
        if "film" in pixels:
            heat = _array(pixels["heat"]).astype(np.float32) / np.float32(255) \
                if "heat" in pixels else None
            source = _array(pixels["model_input"], gray=False) \
                if "model_input" in pixels else None
            display = Display(_array(pixels["film"]), heat, source)
        return cls(Dataset.from_json(head["header"]), Judgement.from_json(head["judgement"]),
                   display)

    def with_heat(self, heat: np.ndarray | None) -> Recipe:
        """This recipe with the heat map drawn from its model input (held, as `of` holds
        one, to steps of 1/255); as it is when `heat` is None."""
        if heat is None or self.display is None:
            return self
        levels = _heat_levels(heat).astype(np.float32) / np.float32(255)
        return Recipe(self.header, self.judgement, Display(self.display.film, levels))


def is_recipe(data: bytes) -> bool:
    return data[:len(MAGIC)] == MAGIC


def unpack(payload: bytes) -> list[bytes]:
    """Length-prefixed parts (a 4-byte big-endian length before each)."""
    items, at = [], 0
    while at < len(payload):
        (length,) = _LENGTH.unpack_from(payload, at)
        at += _LENGTH.size
        if at + length > len(payload):
            raise ValueError("a part runs past the end")
        items.append(payload[at:at + length])
        at += length
    return items


def _heat_levels(heat: np.ndarray) -> np.ndarray:
    """(h, w) in 0-1 -> (h, w) uint8 in 0-255."""
    return np.round(np.clip(heat, 0.0, 1.0) * 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1: five times faster than the default for a few per cent more bytes; these
    # are kept for minutes, until the PACS takes the results.
    if pixels.ndim == 3 and pixels.shape[2] == 1:  # a grey model input
        pixels = pixels[:, :, 0]
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _array(png: bytes, gray: bool = True) -> np.ndarray:
    """A PNG's pixels: grey (H, W) uint8, or with `gray` off as stored (an RGB model input:
    (H, W, 3); a grey one: (H, W, 1), as the model takes it)."""
    with Image.open(io.BytesIO(png)) as image:
        if gray:
            return np.asarray(image.convert("L"))
        pixels = np.asarray(image.convert("RGB" if image.mode in ("RGB", "P") else "L"))
        return pixels if pixels.ndim == 3 else pixels[:, :, None]
