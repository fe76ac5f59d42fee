"""One exported model as the app serves it: a SavedModel's signatures with its model card.

Finding models by name in MODEL_DIR is here too.

MODEL_DIR/<name>/<version>/ is a TensorFlow SavedModel (the layout TensorFlow Serving reads)
with model_card.json beside it. Everything the app needs to know about a model (input size,
channels, classes, threshold, signature) is read from that card, never hard-coded here.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import ModuleType

import numpy as np

from app.contract.assessability import OrientationDetector
from app.contract.card import CARD_FILE, CardError, ModelCard, read_card
from app.contract.guard import InputGuard
from app.contract.robustness import Robustness
from app.services.batcher import MicroBatcher, SharedCalls
from app.services.occlusion import Occlusion, saturated


class ModelNotFoundError(LookupError):
    pass


def available_models(model_dir: Path) -> dict[str, list[int]]:
    """name -> versions (ascending) of every folder in MODEL_DIR that carries a card."""
    found: dict[str, list[int]] = {}
    for card in sorted(Path(model_dir).glob(f"*/*/{CARD_FILE}")):
        version = card.parent.name
        if version.isdigit():
            found.setdefault(card.parent.parent.name, []).append(int(version))
    return {name: sorted(versions) for name, versions in found.items()}


def find_model(model_dir: Path, name: str, version: int | None = None) -> Path:
    """The folder of model `name` at `version`, or its newest version."""
    versions = available_models(model_dir).get(name, [])
    if not versions:
        raise ModelNotFoundError(f"no model '{name}' with a {CARD_FILE} under {model_dir}")
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise ModelNotFoundError(f"model '{name}' has versions {versions}, not {version}")
    return Path(model_dir) / name / str(version)


def read_checks(path: Path, card: ModelCard) -> tuple[InputGuard | None,
                                                     OrientationDetector | None]:
    """The input guard and the orientation detector saved beside the model at `path`, or
    None where its card describes none; CardError when the card names one that is missing.
    NumPy only (no TensorFlow): what a decoder needs of a model (pipeline.film_job)."""
    guard = InputGuard.read(path)
    if card.input_guard is not None and guard is None:
        raise CardError("input_guard.file", f"{card.input_guard.file} is missing")
    detector = OrientationDetector.read(path)
    if card.assessability is not None and detector is None:
        raise CardError("assessability.file", f"{card.assessability.file} is missing")
    return guard, detector


_IMPORT = threading.Lock()


def import_tensorflow() -> ModuleType:
    """TensorFlow, imported without Keras where Keras is not loaded yet.

    TensorFlow's __init__ imports `keras.src.optimizers` eagerly (to register optimizers a
    SavedModel may carry, b/196254385), and Keras 3 loads its whole API with it, scikit-learn,
    matplotlib and pandas included where they are installed (training's extra): 165 MiB
    resident and 1.3 s of start-up in the serving process, measured with the committed models.
    A served model is its exported signatures, which hold no Keras object, so the import is
    made while `keras` cannot be found (TensorFlow passes over that ImportError), then Keras
    is findable again: a later `tf.keras` or `tensorflow.keras` still loads it, in a process
    that wants it. Other threads importing Keras during the import (about 1.5 s) fail, so
    call it before they start (the app loads models in one thread).
    """
    with _IMPORT:
        if "tensorflow" in sys.modules or "keras" in sys.modules:
            import tensorflow as tf  # noqa: PLC0415

            return tf
        sys.modules["keras"] = None  # type: ignore[assignment]  # import keras -> ImportError
        try:
            import tensorflow as tf  # noqa: PLC0415 - heavy: only where a model is loaded
        finally:
            if "keras" in sys.modules and sys.modules["keras"] is None:
                del sys.modules["keras"]
        _restore_keras_path(tf)
        return tf


def _restore_keras_path(tf: ModuleType) -> None:
    """TensorFlow's __init__ puts Keras' API folders first on `tensorflow.__path__` (so that
    `import tensorflow.keras` finds them); found while Keras could not be, they are None:
    put back as TensorFlow's __init__ would have found them."""
    if None not in tf.__path__:
        return
    from tensorflow.python.tools import module_util  # noqa: PLC0415

    legacy = os.environ.get("TF_USE_LEGACY_KERAS", None) in ("true", "True", "1")
    names = ("tf_keras.api._v2.keras" if legacy else "keras.api._v2.keras",
             "keras._tf_keras.keras")  # the order __init__ leaves them in
    found = [module_util.get_parent_dir_for_name(name) for name in names]
    tf.__path__[:] = [folder for folder in found if folder] + \
        [folder for folder in tf.__path__ if folder is not None]


class ServedModel:
    """A SavedModel's serving signature plus its validated card; thread-safe to call."""

    def __init__(self, path: Path, card: ModelCard | None = None) -> None:
        self.path = Path(path)
        # The card is checked before TensorFlow is even imported: a refused card costs nothing.
        self.card = card or read_card(self.path)
        tf = import_tensorflow()  # heavy: only where a model is really loaded

        signature = self.card.signature
        self._input, self._output = signature.input, signature.output
        # The heatmap is measured through the serving signature on the card's grid, not by
        # the SavedModel's `explain` signature, which measures every position of it at once.
        self._occlusion = (None if self.card.explanation is None else
                           Occlusion(self.card.explanation, *self.card.input_size))
        self.guard, self.detector = read_checks(self.path, self.card)
        # The report page shows it; a model serves without it (training/robustness.py).
        try:
            self.robustness = Robustness.read(self.path)
        except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
            self.robustness = None
        loaded = tf.saved_model.load(str(self.path))
        self._serve = loaded.signatures[signature.name]
        # The full-grid map on the network's own logit: for the films whose served
        # probability is too sure to carry its logit (occlusion.saturated).
        self._explain_full = loaded.signatures.get(signature.explain)
        self._constant = tf.constant
        # Single films share model calls with those waiting beside them (batcher.py).
        self._batcher: MicroBatcher | SharedCalls = SharedCalls(self.predict)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, C) raw 0-255 pixels -> (N,) float32 P(positive class), in one call of
        the SavedModel's fixed-signature function."""
        if len(images) == 0:  # the SavedModel fails on an empty batch (batch norm, oneDNN)
            return np.zeros(0, dtype=np.float32)
        batch = self._constant(np.asarray(images, dtype=np.float32))
        return self._serve(**{self._input: batch})[self._output].numpy().reshape(-1)

    def micro_batch(self, wait_seconds: float, max_batch: int = 32) -> None:
        """From now on, `predict_shared` waits up to `wait_seconds` for company (a GPU's
        way); without it, calls share what is waiting, without a window."""
        self._batcher = MicroBatcher(self.predict, wait_seconds, max_batch)

    def predict_shared(self, images: np.ndarray) -> np.ndarray:
        """As `predict`, in a model call shared with the films of other threads waiting
        for one (batcher.py)."""
        return self._batcher.predict(images)

    @property
    def can_explain(self) -> bool:
        """The card describes a heatmap (its `explanation`); cards before it have none."""
        return self._occlusion is not None

    def explain(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, C) raw pixels -> ((N,) probability, (N, H, W) heatmap in 0-1): the
        occlusion map of the card's `explanation` (app/services/occlusion.py), in two calls
        of `predict` (one for a card without a coarse pass). LookupError without one."""
        if self._occlusion is None:
            raise LookupError("this model's card describes no explanation")
        probabilities, maps = self._occlusion.explain(self.predict, images)
        sure = saturated(probabilities)
        if sure.any() and self._explain_full is not None:
            # float32 rounds these to 1 (or 0): no occluded copy can show a drop of their
            # logit, and the two-pass map would be blank. The SavedModel's explain signature
            # measures the whole grid on the logit itself (training/export.py).
            batch = self._constant(np.asarray(images, dtype=np.float32)[sure])
            full = self._explain_full(**{self._input: batch})
            maps = maps.copy()
            maps[sure] = full[self.card.signature.heatmap].numpy()
        return probabilities, maps

    def warm_up(self) -> None:
        """One inference on a blank image so the first user does not pay for graph setup."""
        height, width = self.card.input_size
        blank = np.zeros((1, height, width, self.card.channels), dtype=np.float32)
        self.predict(blank)
        if self._occlusion is not None:  # its batches of film copies too
            self.explain(blank)
        if self.guard is not None:  # a guard that cannot run must fail here, not per request
            self.guard.warnings(blank[0].astype(np.uint8), blank[0, :, :, 0].astype(np.uint8),
                                width, height)
