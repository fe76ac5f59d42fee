"""Reproduce the original study's experiments, write the report and export model 5.

    python -m training run --data-dir DIR --experiments all --out models
    python -m training run --protocol study --data-dir DIR --out models
    python -m training run --protocol stronger --data-dir DIR --out models
    python -m training run --protocol real-films --data-dir DIR --out models

Flags with no command before them are this command, as before there were commands:
`python -m training --data-dir DIR ...` (the Makefile's form) is `python -m training run
--data-dir DIR ...`.

--protocol full (the default) trains on all of train/ with a validation split and exports
model 5 as a SavedModel with its model card. --protocol study runs the study as its notebook
did, over several seeds, plus an ablation from it to the full-data protocol; it adds to
report.json and exports nothing. --protocol stronger trains the models beyond the study (8
on) over several seeds, adds them to report.json and exports the best on validation beside
model 5. --protocol real-films retrains the served models 5 and 8 on augmentations that draw
what real films carry (text, markers, tubes, borders, ...; training/real_films.py) and exports
each as a new version.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from training import defaults
from training.experiments import (
    EXPORT_NAMES,
    NEW_NUMBERS,
    REAL_FILM_NUMBERS,
    STUDY_NUMBERS,
    parse_selection,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `python -m training run`."""
    parser.add_argument("--protocol", choices=("full", "study", "stronger", "real-films"),
                        default="full",
                        help="full: all of train/ with a validation split (default); "
                             "study: the original study's protocol; stronger: models 8 on; "
                             "real-films: the served models 5 and 8 retrained on real-film "
                             "augmentations")
    parser.add_argument("--data-dir", type=Path,
                        default=os.environ.get("PNEUMONIA_DATA_DIR"),
                        help="folder with train/ and test/ (default: $PNEUMONIA_DATA_DIR)")
    parser.add_argument("--experiments", default="all",
                        help="'all' (1-7; stronger: 8 on; real-films: 5 and 8), or numbers "
                             "such as '5' or '1,5' or '3-7'")
    parser.add_argument("--out", type=Path, default=Path("models"),
                        help="where report.json, figures/ and the exported model go")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="cap every experiment's epochs, for a quick run")
    parser.add_argument("--limit-per-class", type=int, default=None,
                        help="use only the first N images of each class and split (smoke runs)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"),
                        help="where decoded image arrays are cached")
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    parser.add_argument("--val-fraction", type=float, default=defaults.VAL_FRACTION)
    parser.add_argument("--model-version", type=int, default=None,
                        help="version folder to export to (default: the next free number)")
    parser.add_argument("--target-sensitivity", type=float,
                        default=defaults.TARGET_SENSITIVITY,
                        help="sensitivity the exported model's threshold is chosen for, on "
                             "the validation split")
    parser.add_argument("--force", action="store_true",
                        help="replace the --model-version folder if it exists")
    parser.add_argument("--seeds", type=int, default=None,
                        help="study and stronger protocols: seeds per model, from --seed "
                             f"upwards (default {defaults.STUDY_SEEDS} and "
                             f"{defaults.STRONGER_SEEDS})")
    parser.add_argument("--ablation-seeds", type=int, default=defaults.ABLATION_SEEDS,
                        help="study protocol: seeds per ablation step (0 = no ablation)")
    parser.add_argument("--study-counts", type=_counts, default=defaults.STUDY_COUNTS,
                        help="study protocol: NORMAL,PNEUMONIA images drawn per seed "
                             "(the study's 84,1134; smaller only for smoke runs)")
    parser.add_argument("--augment-probabilities", type=_probabilities, default=None,
                        metavar="FAMILY=P,...",
                        help="real-films protocol: each augmentation family's chance per film "
                             "(e.g. 'geometry=0.8,contrast=0.6'); the others keep "
                             "training/augment.py's defaults")
    parser.add_argument("--no-export", action="store_true",
                        help="skip the SavedModel export (e.g. under the JAX backend)")


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Resolve and check what the flags cannot check alone: the experiment numbers and
    seeds for the protocol, and a --model-version that would overwrite a served model;
    `parser.error` (exit 2) for what is wrong."""
    allowed = {"stronger": NEW_NUMBERS, "real-films": REAL_FILM_NUMBERS}.get(args.protocol,
                                                                           STUDY_NUMBERS)
    try:
        args.experiments = parse_selection(args.experiments, allowed)
    except ValueError as exc:
        parser.error(f"--experiments: {exc}")
    if args.seeds is None:
        args.seeds = defaults.STRONGER_SEEDS if args.protocol == "stronger" \
            else defaults.STUDY_SEEDS
    if args.seeds < 1:
        parser.error("--seeds must be 1 or more")
    if args.data_dir is None:
        parser.error("--data-dir is required (or set PNEUMONIA_DATA_DIR)")
    if args.model_version is not None and args.model_version < 1:
        parser.error("--model-version must be 1 or more")
    names = [EXPORT_NAMES[n] for n in args.experiments if n in EXPORT_NAMES]
    existing = [args.out / name / str(args.model_version) for name in names]
    existing = next((path for path in existing if path.exists()), None)
    if args.model_version is not None and existing is not None and not args.force \
            and not args.no_export and args.protocol != "study":
        # Refuse before hours of training, not at export time.
        parser.error(f"{existing} exists: a served model is never overwritten; "
                     "pick another --model-version, leave it out, or add --force")


def _probabilities(text: str) -> dict[str, float]:
    """'geometry=0.8,contrast=0.6' -> the default probabilities with those changed."""
    from training.augment import DEFAULT_PROBABILITIES, RealFilmAugmentation

    chosen = dict(DEFAULT_PROBABILITIES)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        chosen[name.strip()] = float(value)
    RealFilmAugmentation(chosen)  # ValueError for an unknown family or a bad probability
    return chosen


def _counts(text: str) -> tuple[int, int]:
    normal, pneumonia = (int(part) for part in text.split(","))
    if normal < 1 or pneumonia < 1:
        raise ValueError("both counts must be positive")
    return normal, pneumonia


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _check_args(args, parser)
    command = args.command_line  # as typed; the report records it
    if args.protocol == "study":
        return _study(args, command)
    if args.protocol == "stronger":
        return _stronger(args, command)
    if args.protocol == "real-films":
        from training.real_films import run_real_films  # imports Keras

        run_real_films(_run_config(args, command), log=lambda line: print(line, flush=True))
        return 0
    from training.full import run_full  # imports Keras: after argument errors

    run_full(_run_config(args, command), log=lambda line: print(line, flush=True))
    return 0


def _run_config(args: argparse.Namespace, command: str):
    from training.config import RunConfig

    return RunConfig(
        data_dir=args.data_dir, out_dir=args.out, experiments=args.experiments,
        val_fraction=args.val_fraction, seed=args.seed, max_epochs=args.max_epochs,
        limit_per_class=args.limit_per_class, cache_dir=args.cache_dir,
        export=not args.no_export, model_version=args.model_version, force=args.force,
        target_sensitivity=args.target_sensitivity, command=command,
        augment_probabilities=args.augment_probabilities)


def _stronger(args: argparse.Namespace, command: str) -> int:
    from training.stronger import run_stronger  # imports Keras

    config = _run_config(args, command)
    run_stronger(config, seeds=list(range(args.seed, args.seed + args.seeds)),
                 log=lambda line: print(line, flush=True))
    return 0


def _study(args: argparse.Namespace, command: str) -> int:
    from training.provenance import code_version
    from training.study import StudyConfig, run_study  # imports Keras

    config = StudyConfig(
        data_dir=args.data_dir, out_dir=args.out, experiments=args.experiments,
        seeds=list(range(args.seed, args.seed + args.seeds)),
        ablation_seeds=list(range(args.seed, args.seed + args.ablation_seeds)),
        val_fraction=args.val_fraction, counts=args.study_counts, max_epochs=args.max_epochs,
        cache_dir=args.cache_dir, command=command, code_version=code_version())
    run_study(config, log=lambda line: print(line, flush=True))
    return 0

