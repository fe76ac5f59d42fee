"""The console command: `pneumonia-triage SUBCOMMAND` (also `python -m app SUBCOMMAND`).

- `serve` (the default): the web app on the host and port from the settings.
- `db upgrade`: migrate the worklist's database (PNEUMONIA_DATABASE_URL) to this version's
  schema; the embedded SQLite is migrated by `serve` itself.
- `score FOLDER --out worklist.csv`: triage a folder without the server. Every file under
  FOLDER (JPEG, PNG, MPO, DICOM with or without an extension; anything else gets its error in
  its row) goes through the server's pipeline, decoded by its worker pool on every core,
  with a progress bar on stderr. The CSV is the one the API and the page write: highest
  probability first, then the films that need a human look (not assessable), then errors.
- `archive score SRC... --out DIR`, `archive status DIR`, `archive import DIR`: an archive
  (a PACS export, a folder tree, object storage) scored on Ray Data, embedded on this
  machine or on a cluster, resumable, into Parquet (app/archive/; the `archive` extra).
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


ARCHIVE_EXTRA = ("the archive commands need Ray Data: pip install 'pneumonia-triage[archive]'")


def _archive_ready(parser: argparse.ArgumentParser) -> None:
    from importlib.util import find_spec

    if find_spec("ray") is None or find_spec("pyarrow") is None:
        parser.exit(2, f"{parser.prog}: {ARCHIVE_EXTRA}\n")


def _archive_score(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _archive_ready(parser)
    from app.archive.engine import Engine
    from app.archive.run import ArchiveError, Request, dry_run, score_archive
    from app.archive.sources import SourceError
    from app.services.saved_model import ModelNotFoundError

    settings = get_settings()
    request = Request(tuple(args.sources), args.out, args.model, tuple(args.include),
                      args.resume, args.shard_rows)
    engine = Engine(address=args.address, cpus=args.cpus, object_store_mb=args.object_store_mb,
                    batch_size=args.batch_size, files_per_task=args.files_per_task,
                    actor_cpus=args.num_cpus, actor_gpus=args.num_gpus, actors=args.actors)
    try:
        if args.dry_run:
            print(dry_run(request, settings))
            return 0
        manifest = score_archive(request, engine, settings, progress=not args.quiet)
    except (ArchiveError, SourceError, ModelNotFoundError) as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    counts = manifest["counts"]
    print(f"{counts['rows']} rows written to {args.out}/results/ ({counts['flagged']} "
          f"flagged, {counts['not_flagged']} not flagged, {counts['needs_human_look']} need a "
          f"human look, {counts['refused']} not scored; {counts['resumed']} written before), "
          f"{manifest['files_per_second']} files/s on {manifest['engine']['nodes']} node(s). "
          f"Model {manifest['model']['name']} v{manifest['model']['version']}; flagged for "
          f"priority read at a triage score of {FLAGGED_FROM_TEXT} and above.")
    return 0


def _archive_status(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _archive_ready(parser)
    import json

    from app.archive.run import ArchiveError
    from app.archive.status import status, status_text

    try:
        found = status(args.out)
    except ArchiveError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    print(json.dumps(found, indent=2) if args.json else status_text(found))
    return 0


def _archive_import(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _archive_ready(parser)
    from app.archive.worklist import import_rows
    from app.dicom.identity import install_secret
    from app.web.main import open_store

    settings = get_settings()
    store = open_store(settings)
    try:
        if (problem := store.schema_problem()) is not None:
            parser.exit(2, f"{parser.prog}: the worklist database is not ready: {problem}\n")
        try:
            imported = import_rows(args.out, store, install_secret(settings),
                                   settings.max_upload_bytes)
        except ValueError as exc:
            parser.exit(2, f"{parser.prog}: {exc}\n")
    finally:
        store.close()
    found = imported.describe()
    print(f"{found['rows']} rows on the worklist, in {found['entries']} studies (a film "
          f"listed before, or twice, is kept once); not listed: "
          f"{found['skipped'] or 'none'}; conflicts: {found['conflicts'] or 'none'}; "
          f"{found['without_patient_key']} DICOM films without a patient key (their file "
          "could not be read again).")
    return 0


def _archive_parser(commands: argparse._SubParsersAction) -> None:
    archive = commands.add_parser(
        "archive", help="score an archive on Ray Data into Parquet, resumably (the archive "
                        "extra); for a folder of a few thousand films `score` is enough")
    sub = archive.add_subparsers(dest="archive_command", metavar="ARCHIVE_COMMAND",
                                 required=True)
    score = sub.add_parser("score", help="score every film the sources name")
    score.add_argument("sources", nargs="+", metavar="SRC",
                       help="folders, globs, file lists (.txt: one path or URI a line) or "
                            "URIs pyarrow reads (s3://bucket/prefix/)")
    score.add_argument("--out", required=True, help="output folder (or URI): run.json and "
                                                    "results/*.parquet")
    score.add_argument("--model", default=None,
                       help="which model to ask, by name (default: PNEUMONIA_MODEL_NAME)")
    score.add_argument("--address", default=None,
                       help="a Ray cluster: auto, or ray://head:10001 (default: Ray "
                            "embedded on this machine)")
    score.add_argument("--batch-size", type=int, default=256, help="films per model call")
    score.add_argument("--num-cpus", type=float, default=0.0,
                       help="CPUs each scoring actor holds (default 0: it borrows the decode "
                            "tasks' cores; on the CPU a model call is a small share of a "
                            "film's cost)")
    score.add_argument("--num-gpus", type=float, default=0.0,
                       help="GPUs each scoring actor holds (default 0)")
    score.add_argument("--actors", type=int, default=None,
                       help="scoring actors (default: up to one per node, or per GPU share)")
    score.add_argument("--files-per-task", type=int, default=32,
                       help="files each decode task reads and decodes (default 32)")
    score.add_argument("--cpus", type=int, default=None,
                       help="embedded Ray: CPUs to use (default: every core)")
    score.add_argument("--object-store-mb", type=int, default=512,
                       help="embedded Ray: the object store's cap in MiB (default 512)")
    score.add_argument("--include", action="append", default=[], metavar="PATTERN",
                       help="only files whose name or path matches (fnmatch; repeatable)")
    score.add_argument("--resume", action="store_true",
                       help="go on with DIR's run: films already written are not scored "
                            "again")
    score.add_argument("--shard-rows", type=int, default=5000,
                       help="rows per committed shard (default 5000; also every 60 s)")
    score.add_argument("--dry-run", action="store_true",
                       help="list the files and say what would be done; score nothing")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(run=_archive_score)
    status = sub.add_parser("status", help="what an output folder holds, and its run's state")
    status.add_argument("out", metavar="DIR")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.set_defaults(run=_archive_status)
    imports = sub.add_parser("import", help="put DIR's scored films on the worklist (one "
                                            "entry per study, as the DICOM node does)")
    imports.add_argument("out", metavar="DIR")
    imports.set_defaults(run=_archive_import)


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
    _archive_parser(commands)
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
