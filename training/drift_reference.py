r"""Write `drift_reference.json` beside models exported before training wrote one.

    python -m training drift-reference --data-dir DIR models/pneumonia/2 \
        models/pneumonia_compact/1

For each model folder: the validation split its card names (the patient-grouped 10% of
train/, seed 42, checked against the card's film counts), decoded to model input as the app
decodes it, scored by the exported SavedModel itself (so the scores are the calibrated ones
the app serves; the validation ROC AUC must agree with the card's), and the reference of
app/contract/drift.py written from them. New exports write it in training/release.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from app.contract.card import ModelCard, read_card  # noqa: E402
from app.contract.drift import DriftReference  # noqa: E402
from app.contract.guard import InputGuard  # noqa: E402
from training import defaults  # noqa: E402
from training.data import load_arrays, load_parts  # noqa: E402

AUC_TOLERANCE = 1e-3  # float32 SavedModel against the float64 evaluation at export


def served_probabilities(version_dir: Path, card: ModelCard, images: np.ndarray,
                         batch: int = 256) -> np.ndarray:
    """(N,) probabilities of the SavedModel's serving signature for (N, H, W, C) inputs."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(version_dir)).signatures[card.signature.name]
    out = [serve(**{card.signature.input: tf.constant(images[i:i + batch], tf.float32)})
           [card.signature.output].numpy().reshape(-1) for i in range(0, len(images), batch)]
    return np.concatenate(out).astype(np.float64)


def write_reference(version_dir: Path, data_dir: Path, cache_dir: Path | None) -> Path:
    card = read_card(version_dir)
    parts = load_parts(data_dir, defaults.VAL_FRACTION, defaults.SEED)
    validation = parts["val"]
    if validation.counts() != card.data.counts["validation"]:
        raise SystemExit(f"{version_dir}: the validation split {validation.counts()} is not "
                         f"the card's {card.data.counts['validation']}")
    images = load_arrays(validation, card.input_size, card.channels, cache_dir,
                         version=card.input.preprocessing_version)
    scores = served_probabilities(version_dir, card, images)
    expected = card.metrics["validation"].roc_auc
    found = _roc_auc(validation.labels, scores)
    if expected is not None and abs(found - expected) > AUC_TOLERANCE:
        raise SystemExit(f"{version_dir}: validation ROC AUC {found:.4f}, the card says "
                         f"{expected:.4f}: not the films or the model it was validated on")
    reference = DriftReference.of(scores, images, InputGuard.read(version_dir))
    path = reference.write(version_dir)
    print(f"{path}: {reference.films} validation films, ROC AUC {found:.4f} "
          f"(card {expected}), statistics {', '.join(reference.statistics)}")
    return path


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `python -m training drift-reference`."""
    parser.add_argument("models", nargs="+", type=Path, help="MODEL_DIR/<name>/<version>")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("PNEUMONIA_DATA_DIR"),
                        required="PNEUMONIA_DATA_DIR" not in os.environ)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"))


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    for version_dir in args.models:
        write_reference(version_dir, args.data_dir, args.cache_dir)
    return 0


if __name__ == "__main__":  # the form before `python -m training drift-reference`
    from training.command import run_alone

    sys.exit(run_alone(sys.modules[__name__]))
