r"""Measure served models against what real films carry, and where their heatmaps point.

    python -m training robustness --data-dir DATA --model-dir models \
        --models pneumonia/2,pneumonia_compact/1

For each model (default: every version under --model-dir): the validation split its card
names (the patient-grouped 10% of train/, seed 42, checked against the card's film counts),
decoded at the films' own size as the app decodes them. Each film is perturbed once per
family of training/augment.py's FAMILIES at each of its STRENGTHS (low, middle, high), drawn
from (seed, family, film) so that every model sees the same perturbed films, then prepared
as the app prepares a film for that model's card and scored by the exported SavedModel, as
the app loads it. The table (app/contract/robustness.py): per family and strength, the share
of films whose decision flips at the card's operating point, the flips by direction, and the
ROC AUC beside the clean one. Beside it, how much of each model's occlusion heatmap (the
app's own, on the card's grid) falls outside the patient's body (app/contract/body.py), on
the validation films (all of them by default; --heatmap-films draws a seeded sample).

Wall time on this project's 2-core machine, models 5 and 8 (pneumonia/2 and
pneumonia_compact/1) together, other work running beside it: 117 s, of which the heatmaps
took 10 s and 47 s; the perturbed films are made once for models with the same input.

Written: robustness.json beside each card, the card's `robustness` section, and the
`robustness` section of MODEL_DIR/report.json (a model measured again replaces its entry).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from app.contract.body import film_outside_share, mostly_outside  # noqa: E402
from app.contract.card import ModelCard, read_card  # noqa: E402
from app.contract.preprocessing import model_film, to_model_input  # noqa: E402
from app.contract.report import REPORT_FILE, read_report, write_report_sections  # noqa: E402
from app.contract.robustness import (  # noqa: E402
    RULE,
    STRENGTH_NAMES,
    HeatmapTruth,
    ModelRobustness,
    Perturbed,
    Robustness,
)
from training import defaults  # noqa: E402

Predict = Callable[[np.ndarray], np.ndarray]  # (N, h, w, c) 0-255 -> (N,) P(positive)
Explain = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # -> ((N,), (N, h, w) 0-1)
Family = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]  # (H, W) uint8 film
ModelInput = Callable[[np.ndarray], np.ndarray]  # (H, W) uint8 film -> (h, w, c) uint8
Log = Callable[[str], None]

BATCH = 256  # films per model call
HEATMAP_CHUNK = 16  # films per explain call: two model calls of up to 50 copies each
# The whole validation split: 13 s (model 5) and 28 s (model 8) on this project's 2 cores.
HEATMAP_FILMS = 522
AUC_TOLERANCE = 5e-3  # clean validation ROC AUC here against the card's (grey decode)


def _quiet(line: str) -> None:
    pass


class PerturbedInputs:
    """Model inputs of `films` under each family and strength, made once and shared by every
    model prepared by the same `model_input` (same card input and preprocessing version).

    Film i under family f is f(film i, default_rng((seed, crc32(f), i)), strength): the same
    draw at every strength, so strengths differ only in strength, and the same for every
    model, so old and new models are measured on the same perturbed films."""

    def __init__(self, films: list[np.ndarray], model_input: ModelInput, seed: int,
                 workers: int = 2) -> None:
        self.films, self.model_input, self.seed, self.workers = films, model_input, seed, workers
        self._made: dict[tuple[str, float] | None, np.ndarray] = {}

    def clean(self) -> np.ndarray:
        """(N, h, w, c) uint8: the films as they are."""
        if None not in self._made:
            self._made[None] = self._stack(self.model_input)
        return self._made[None]

    def perturbed(self, name: str, family: Family, strength: float) -> np.ndarray:
        """(N, h, w, c) uint8: every film under `family` at `strength`."""
        key = (name, strength)
        if key not in self._made:
            salt = zlib.crc32(name.encode())

            def one(index: int) -> np.ndarray:
                rng = np.random.default_rng((self.seed, salt, index))
                film = family(self.films[index], rng, strength)
                return self.model_input(np.ascontiguousarray(film, dtype=np.uint8))

            self._made[key] = self._stack(one, range(len(self.films)))
        return self._made[key]

    def _stack(self, make: Callable, items=None) -> np.ndarray:
        items = self.films if items is None else items
        # Threads: Pillow resizes, draws and encodes JPEG without the GIL for most of it.
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return np.stack(list(pool.map(make, items)))


def predict_batches(predict: Predict, images: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """(N,) float64 probabilities, `batch` films per call of `predict`."""
    out = [np.asarray(predict(images[i:i + batch]), np.float64).reshape(-1)
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """scikit-learn's ROC AUC; None where the films hold one class only."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def compare(labels: np.ndarray, clean: np.ndarray, perturbed: np.ndarray, threshold: float,
            strength: float) -> Perturbed:
    """Flips at `threshold` (flagged when p >= threshold, ModelCard.label_for's rule) of
    the perturbed probabilities against the clean ones, and the perturbed ROC AUC."""
    was, now = clean >= threshold, perturbed >= threshold
    up, down = int(np.sum(~was & now)), int(np.sum(was & ~now))
    return Perturbed(strength=strength, flip_rate=(up + down) / len(labels),
                     flips_to_flagged=up, flips_to_not_flagged=down,
                     roc_auc=roc_auc(labels, perturbed))


def measure(predict: Predict, films: list[np.ndarray], labels: np.ndarray, threshold: float,
            model_input: ModelInput, families: Mapping[str, Family] | None = None,
            strengths: Mapping[str, tuple[float, float, float]] | None = None,
            seed: int = defaults.SEED, measured_on: str = "validation split",
            inputs: PerturbedInputs | None = None, log: Log = _quiet,
            batch: int = BATCH) -> Robustness:
    """The robustness table of one model.

    `films`: (H, W) uint8 source films; `labels`: (N,) 0/1; `threshold`: the card's
    operating point; `model_input`: a film -> the model's (h, w, c) uint8 input, as the app
    prepares it; `families`/`strengths`: training/augment.py's FAMILIES and STRENGTHS unless
    given (every family needs its three strengths, low to high). `inputs`: perturbed inputs
    already made for another model with the same `model_input` (else made here). Raises
    KeyError for a family without strengths, ValueError for no films."""
    if families is None or strengths is None:
        from training import augment

        families = augment.FAMILIES if families is None else families
        strengths = augment.STRENGTHS if strengths is None else strengths
    if not films:
        raise ValueError("no films to measure")
    labels = np.asarray(labels)
    inputs = inputs or PerturbedInputs(films, model_input, seed)
    clean = predict_batches(predict, inputs.clean(), batch)
    table: dict[str, list[Perturbed]] = {}
    for name, family in families.items():
        if name not in strengths:
            raise KeyError(f"family {name!r} has no strengths")
        started = time.perf_counter()
        table[name] = [compare(labels, clean, predict_batches(
            predict, inputs.perturbed(name, family, s), batch), threshold, s)
            for s in strengths[name]]
        log(f"  {name:<10} " + "  ".join(
            f"{level} {row.flip_rate:6.1%} (+{row.flips_to_flagged}/-{row.flips_to_not_flagged}"
            f") AUC {_auc_text(row.roc_auc)}" for level, row in zip(STRENGTH_NAMES, table[name]))
            + f"  [{time.perf_counter() - started:.1f} s]")
    return Robustness.of(table, measured_on=measured_on, films=len(films),
                         positives=int(np.sum(labels == 1)), threshold=threshold, seed=seed,
                         clean_roc_auc=roc_auc(labels, clean),
                         clean_flagged=int(np.sum(clean >= threshold)))


def heatmap_truth(explain: Explain, films: list[np.ndarray], model_input: ModelInput,
                  count: int | None = HEATMAP_FILMS, seed: int = defaults.SEED,
                  map_film: Callable[[np.ndarray], np.ndarray] | None = None,
                  chunk: int = HEATMAP_CHUNK, log: Log = _quiet) -> HeatmapTruth:
    """How much of each film's occlusion map falls outside the body, over `count` films
    drawn from `films` with `seed` (all of them when None or more).

    `explain`: (N, h, w, c) model inputs -> (probabilities, (N, h, w) maps in 0-1), the
    app's own (ServedModel.explain); `map_film`: a film -> the part of it the map covers
    (the film itself unless preprocessing crops it); the body mask is found on that."""
    chosen = np.arange(len(films))
    if count is not None and count < len(films):
        chosen = np.sort(np.random.default_rng(seed).choice(len(films), count, replace=False))
    map_film = map_film or (lambda film: film)
    shares: list[float] = []
    started = time.perf_counter()
    for start in range(0, len(chosen), chunk):
        part = [films[i] for i in chosen[start:start + chunk]]
        _, maps = explain(np.stack([model_input(film) for film in part]))
        shares.extend(film_outside_share(map_film(film), heat)
                      for heat, film in zip(maps, part))
        if len(shares) % (8 * chunk) < chunk or len(shares) == len(chosen):
            log(f"  heatmaps {len(shares)}/{len(chosen)} "
                f"[{time.perf_counter() - started:.0f} s]")
    values = np.asarray(shares) if shares else np.zeros(1)
    return HeatmapTruth(films=len(shares), drawn_from=len(films), seed=seed,
                        outside_mean=float(values.mean()),
                        outside_median=float(np.median(values)),
                        mostly_outside=float(np.mean([mostly_outside(s) for s in values])))


def _auc_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# --- the command ------------------------------------------------------------------------------


def card_model_input(card: ModelCard) -> ModelInput:
    """A decoded (H, W) uint8 film -> this card's model input, as the app prepares it (by
    the card's preprocessing version: from version 3 without the film's borders)."""
    size, channels = card.input_size, card.channels
    version = card.input.preprocessing_version
    return lambda pixels: to_model_input(pixels, size, channels, version=version)


def card_map_film(card: ModelCard) -> Callable[[np.ndarray], np.ndarray]:
    """A decoded film -> the part of it the card's model sees, which its heatmap covers."""
    version = card.input.preprocessing_version
    return lambda pixels: model_film(pixels, version)[0]


def model_folders(model_dir: Path, names: str | None) -> list[Path]:
    """MODEL_DIR/<name>/<version> of 'name/version,...', or of every version there."""
    from app.services.saved_model import available_models

    if names:
        folders = []
        for item in names.split(","):
            name, _, version = item.strip().partition("/")
            if not name or not version.isdigit():
                raise ValueError(f"{item!r} is not NAME/VERSION (e.g. pneumonia/2)")
            folders.append(Path(model_dir) / name / version)
        return folders
    return [Path(model_dir) / name / str(v)
            for name, versions in available_models(model_dir).items() for v in versions]


def validation_films(data_dir: Path, card: ModelCard,
                     cache_dir: Path | None) -> tuple[list[np.ndarray], np.ndarray, str]:
    """The validation split as training drew it (training/data.py load_parts, the
    defaults' seed and fraction), checked against the card's counts: its films decoded at
    their own size in grey, as the app decodes them (training/films.py), and their labels."""
    from training.data import load_parts
    from training.films import load_films

    validation = load_parts(data_dir, defaults.VAL_FRACTION, defaults.SEED)["val"]
    if validation.counts() != card.data.counts["validation"]:
        raise SystemExit(f"{card.name} v{card.version}: the validation split "
                         f"{validation.counts()} is not the card's "
                         f"{card.data.counts['validation']}")
    films = list(load_films(validation, cache_dir))
    side = f"{films[0].shape[0]}x{films[0].shape[1]}" if films else "-"
    measured_on = (f"validation split ({len(films)} films, {defaults.VAL_FRACTION:.0%} of "
                   f"train/ grouped by patient, seed {defaults.SEED}), decoded at {side} px")
    return films, validation.labels, measured_on


def measure_model(version_dir: Path, data_dir: Path, cache_dir: Path | None,
                  families: Mapping[str, Family] | None, heatmap_films: int | None,
                  seed: int, shared: dict, log: Log) -> ModelRobustness:
    """One served model's table and heatmap truth; `shared` keeps the perturbed inputs of
    models with the same input contract."""
    from app.services.saved_model import ServedModel

    card = read_card(version_dir)
    model = ServedModel(version_dir, card)  # as the app loads it
    films, labels, measured_on = validation_films(data_dir, card, cache_dir)
    model_input = card_model_input(card)
    key = (card.input_size, card.channels, card.input.preprocessing_version)
    if key not in shared:
        shared[key] = PerturbedInputs(films, model_input, seed)
    log(f"{card.name} v{card.version}: {len(films)} validation films, threshold "
        f"{card.threshold:.4f}")
    table = measure(model.predict, films, labels, card.threshold, model_input,
                    families=families, seed=seed, measured_on=measured_on,
                    inputs=shared[key], log=log)
    expected = card.metrics["validation"].roc_auc
    if expected is not None and table.clean_roc_auc is not None \
            and abs(table.clean_roc_auc - expected) > AUC_TOLERANCE:
        log(f"  WARNING: clean ROC AUC {table.clean_roc_auc:.4f}, the card says "
            f"{expected:.4f}")
    truth = None
    if model.can_explain:
        truth = heatmap_truth(model.explain, films, model_input, heatmap_films, seed,
                              map_film=card_map_film(card), log=log)
        log(f"  heatmap outside the body: mean {truth.outside_mean:.1%}, median "
            f"{truth.outside_median:.1%}, mostly outside on {truth.mostly_outside:.1%} "
            f"of {truth.films} films")
    log(f"  clean ROC AUC {_auc_text(table.clean_roc_auc)} (card {_auc_text(expected)}); "
        f"robust to: {', '.join(table.robust_to) or 'none'}; not robust to: "
        f"{', '.join(table.not_robust_to) or 'none'}")
    return ModelRobustness(**table.model_copy(update={"heatmap": truth}).model_dump(),
                           name=card.name, version=card.version)


def write(version_dir: Path, result: ModelRobustness) -> Path:
    """robustness.json beside the card, and the card's `robustness` section."""
    table = Robustness(**result.model_dump(exclude={"name", "version"}))
    path = table.write(version_dir)
    card = read_card(version_dir)
    card.model_copy(update={"robustness": table.info()}).write(version_dir)
    return path


def report_section(model_dir: Path, results: list[ModelRobustness], command: str,
                   seconds: float) -> dict:
    """report.json's `robustness`: these results, and the earlier entries of other models."""
    from training.provenance import code_version

    path = Path(model_dir) / REPORT_FILE
    earlier = read_report(path).robustness if path.is_file() else None
    measured = {(r.name, r.version) for r in results}
    kept = [m for m in (earlier.models if earlier else []) if (m.name, m.version) not in measured]
    models = sorted(kept + results, key=lambda m: (m.name, m.version))
    return {"created": datetime.now(UTC).isoformat(timespec="seconds"), "command": command,
            "code_version": code_version(), "rule": RULE,
            "models": [m.model_dump(mode="json") for m in models],
            "wall_seconds": round(seconds, 1)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `python -m training robustness`."""
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("PNEUMONIA_DATA_DIR"),
                        help="folder with train/ and test/ (default: $PNEUMONIA_DATA_DIR)")
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--models", default=None,
                        help="NAME/VERSION,... (default: every version under --model-dir)")
    parser.add_argument("--families", default=None,
                        help="FAMILY,... of training/augment.py (default: all)")
    parser.add_argument("--heatmap-films", type=int, default=HEATMAP_FILMS,
                        help="validation films whose heatmaps are measured (a seeded sample)")
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"))


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.data_dir is None:
        parser.error("--data-dir or PNEUMONIA_DATA_DIR is required")
    try:
        folders = model_folders(args.model_dir, args.models)
    except ValueError as exc:
        parser.error(str(exc))
    families = None
    if args.families:
        from training.augment import FAMILIES

        unknown = set(args.families.split(",")) - set(FAMILIES)
        if unknown:
            parser.error(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
        families = {name: FAMILIES[name] for name in args.families.split(",")}
    log = lambda line: print(line, flush=True)  # noqa: E731
    started = time.perf_counter()
    shared: dict = {}
    results = []
    for folder in folders:
        result = measure_model(folder, args.data_dir, args.cache_dir, families,
                               args.heatmap_films, args.seed, shared, log)
        log(f"  wrote {write(folder, result)} and its card section")
        results.append(result)
    seconds = time.perf_counter() - started
    write_report_sections(args.model_dir, {"robustness": report_section(
        args.model_dir, results, args.command_line, seconds)})
    log(f"wrote the robustness section of {args.model_dir / REPORT_FILE}; wall time "
        f"{seconds:.0f} s")
    return 0


if __name__ == "__main__":  # as `python -m training robustness`
    from training.command import run_alone

    sys.exit(run_alone(sys.modules[__name__]))
