"""The console command: `pneumonia-triage SUBCOMMAND` (also `python -m app SUBCOMMAND`).

- `serve` (the default): the web app on the host and port from the settings.
- `db upgrade`: migrate the worklist's database (PNEUMONIA_DATABASE_URL) to this version's
  schema; the embedded SQLite is migrated by `serve` itself.
- `score FOLDER --out worklist.csv`: triage a folder without the server. Every file under
  FOLDER (JPEG, PNG, MPO, DICOM with or without an extension; anything else gets its error in
  its row) goes through the server's pipeline, decoded by its worker pool on every core,
  with a progress bar on stderr. The CSV is the one the API and the page write: highest
  probability first, then the films that need a human look (not assessable), then errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up noise out

from pydantic import ValidationError  # noqa: E402

from app.config import Settings, get_settings  # noqa: E402
from app.contract.triage_score import FLAGGED_FROM_TEXT  # noqa: E402
from app.errors import StartupError  # noqa: E402


def find_files(folder: Path) -> list[Path]:
    """Every regular file under `folder`, in a stable order; hidden files and folders skipped."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def score_folder(folder: Path, workers: int, progress: bool = True,
                 model_name: str | None = None, settings: Settings | None = None):
    """(FileResult list in file order, model card) for every file under `folder`.

    The server's pipeline and decode pool (with its time and memory budget per film);
    `workers` films decoded at once; the model called once per pipeline chunk. The model is
    chosen, and its threshold set, by the same catalog rule as the app's ?model=NAME."""
    from tqdm import tqdm

    from app.services.catalog import ModelCatalog
    from app.services.decode_pool import DecodePool
    from app.services.pipeline import score_films

    settings = settings or get_settings()
    catalog = ModelCatalog()
    catalog.load(settings.model_copy(update={
        "offered_models": [] if model_name in (None, settings.model_name) else [model_name]}))
    if catalog.default is None:
        raise SystemExit(f"the model could not be loaded: {catalog.failure}")
    model = catalog.choose(model_name)
    if model is None:
        raise SystemExit(f"no model {model_name!r} in {settings.model_dir}")
    files = find_files(folder)
    pool = DecodePool(workers, timeout=settings.decode_timeout_seconds,
                      memory_mb=settings.decode_memory_mb)
    scorer = catalog.scorer(model, pool, settings.max_image_pixels)
    named: list[tuple[str, Callable[[], bytes]]] = [
        (str(f.relative_to(folder)), f.read_bytes) for f in files]
    results = []
    try:
        with tqdm(total=len(files), unit="file", disable=not progress,
                  file=sys.stderr) as bar:
            for result in score_films(scorer, named, parallel=workers):
                results.append(result)
                bar.update(1)
    finally:
        pool.close()
    return results, model.card


def _score(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    from app.services.batch import worklist_csv, worklist_summary

    settings = get_settings()
    workers = args.workers or settings.decode_workers or 1
    results, card = score_folder(args.folder, workers, progress=not args.quiet,
                                 model_name=args.model, settings=settings)
    args.out.write_text(worklist_csv(results))
    print(f"{worklist_summary(results)} Worklist written to {args.out} "
          f"(model {card.name} v{card.version}; flagged for priority read at a triage score "
          f"of {FLAGGED_FROM_TEXT} and above). {card.disclaimer}")
    return 0


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from app import logs

    settings = get_settings()
    # Before TensorFlow is imported (the model loads in the app's lifespan): its native
    # lines go through the filter, no CUDA line on a machine without a GPU, and every line
    # in PNEUMONIA_LOG_FORMAT (app/logs.py).
    logs.configure(settings.log_format, logs.route_native_stderr())
    from app.web.server import serve

    serve(settings)
    return 0


def _db_upgrade(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from app.store import database_url, schema_problem, upgrade

    settings = get_settings()
    url = database_url(settings.database_url, settings.state_dir)
    upgrade(url)
    problem = schema_problem(url)
    print("worklist database at the code's schema" if problem is None else problem)
    return 0 if problem is None else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pneumonia-triage",
        description="Pediatric chest X-ray pneumonia triage. A prioritisation aid, not a "
                    "diagnosis. Settings come from PNEUMONIA_* environment variables.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the web app (the default)")
    serve.set_defaults(run=_serve)
    score = commands.add_parser("score", help="triage a folder of films into a CSV worklist")
    score.add_argument("folder", type=Path, help="folder of X-rays (searched recursively)")
    score.add_argument("--out", type=Path, required=True, help="CSV file to write")
    score.add_argument("--model", default=None,
                       help="which model to ask, by name (default: PNEUMONIA_MODEL_NAME)")
    score.add_argument("--workers", type=int, default=None,
                       help="decoding processes (default: PNEUMONIA_DECODE_WORKERS)")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(run=_score)
    db = commands.add_parser("db", help="the worklist database")
    db_commands = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    db_commands.add_parser(
        "upgrade", help="migrate PNEUMONIA_DATABASE_URL (or the embedded SQLite) to this "
                        "version's schema; run once per release before the replicas start"
    ).set_defaults(run=_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `python -m app` alone serves, as it always has
        args = parser.parse_args(["serve"])
    try:
        return args.run(args, parser)
    except StartupError as exc:  # a port in use, a state folder it cannot write
        parser.exit(3, f"{parser.prog}: cannot start: {exc.message}\n")
    except ValidationError as exc:
        # Settings that cannot work (a short token, a memory budget they do not fit): the
        # reasons alone, never the values given (Settings hides them).
        reasons = "; ".join(error["msg"].removeprefix("Value error, ")
                            for error in exc.errors())
        parser.exit(2, f"{parser.prog}: the settings cannot work: {reasons}\n")


if __name__ == "__main__":
    sys.exit(main())
