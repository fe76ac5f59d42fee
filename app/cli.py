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
- `validate --labels LABELS --out DIR`: the model measured on a site's labelled films, scored
  by the archive engine: DIR/validation.json and DIR/report.html (app/archive/validate.py).
- `site adopt DIR [--by NAME]`, `site revert`, `site show`: the site operating point of a
  validation adopted into the state folder, or removed, or shown (app/services/site.py);
  each is recorded in the worklist's audit trail.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up noise out

from pydantic import ValidationError  # noqa: E402

from app.config import Settings, get_settings  # noqa: E402
from app.contract.triage_score import FLAGGED_FROM_TEXT  # noqa: E402
from app.errors import StartupError  # noqa: E402

if TYPE_CHECKING:  # the archive extra's: imported where a command needs them
    from app.archive.engine import Engine
    from app.contract.validation import CardFigure, Proportion


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
    catalog.use_site(_site_profile(settings))
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
    from app import logs
    from app.services.batch import worklist_csv, worklist_summary

    logs.quiet_command()  # before TensorFlow: no CUDA line on a machine without a GPU
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
    from app import logs
    from app.archive.run import ArchiveError, Request, dry_run, score_archive
    from app.archive.sources import SourceError
    from app.services.saved_model import ModelNotFoundError
    from app.services.site import SiteProfileError

    settings = get_settings()
    request = Request(tuple(args.sources), args.out, args.model, tuple(args.include),
                      args.resume, args.shard_rows)
    logs.quiet_command()  # before TensorFlow and Ray: their start-up lines filtered
    engine = _engine(args)
    try:
        if args.dry_run:
            print(dry_run(request, settings))
            return 0
        manifest = score_archive(request, engine, settings, progress=not args.quiet)
    except (ArchiveError, SourceError, ModelNotFoundError, SiteProfileError) as exc:
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


def _engine_options(command: argparse.ArgumentParser) -> None:
    """The options of the archive engine (app/archive/engine.py Engine), for every command
    that scores on it (`archive score`, `validate`)."""
    command.add_argument("--address", default=None,
                         help="a Ray cluster: auto, or ray://head:10001 (default: Ray "
                              "embedded on this machine)")
    command.add_argument("--batch-size", type=int, default=256, help="films per model call")
    command.add_argument("--num-cpus", type=float, default=0.0,
                         help="CPUs each scoring actor holds (default 0: it borrows the decode "
                              "tasks' cores; on the CPU a model call is a small share of a "
                              "film's cost)")
    command.add_argument("--num-gpus", type=float, default=0.0,
                         help="GPUs each scoring actor holds (default 0)")
    command.add_argument("--actors", type=int, default=None,
                         help="scoring actors (default: up to one per node, or per GPU share)")
    command.add_argument("--files-per-task", type=int, default=32,
                         help="files each decode task reads and decodes (default 32)")
    command.add_argument("--cpus", type=int, default=None,
                         help="embedded Ray: CPUs to use (default: every core)")
    command.add_argument("--object-store-mb", type=int, default=512,
                         help="embedded Ray: the object store's cap in MiB (default 512)")


def _engine(args: argparse.Namespace) -> Engine:
    """The Engine the `_engine_options` ask for."""
    from app.archive.engine import Engine

    return Engine(address=args.address, cpus=args.cpus, object_store_mb=args.object_store_mb,
                  batch_size=args.batch_size, files_per_task=args.files_per_task,
                  actor_cpus=args.num_cpus, actor_gpus=args.num_gpus, actors=args.actors)


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
    _engine_options(score)
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


def _validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _archive_ready(parser)
    from app import logs
    from app.archive.sources import SourceError
    from app.archive.validate import REPORT_FILE, ValidateError, ValidateRequest, plan, validate
    from app.archive.validate_labels import LabelsError
    from app.contract.card import CardError
    from app.services.saved_model import ModelNotFoundError
    from app.services.site import SiteProfileError

    settings = get_settings()
    request = ValidateRequest(args.labels, args.out, args.model, args.target_sensitivity,
                              resume=args.resume,
                              **({} if args.seed is None else {"seed": args.seed}))
    try:
        planned = plan(request, settings)  # the labels checked whole: nothing scored yet
        logs.quiet_command()  # before TensorFlow and Ray: their start-up lines filtered
        made = validate(planned, _engine(args), settings, progress=not args.quiet)
    except (LabelsError, ValidateError, SourceError, ModelNotFoundError, CardError,
            SiteProfileError) as exc:
        parser.exit(2, f"{parser.prog} validate: {exc}\n")
    v = made.validation
    card = {f.figure: f for f in v.card_operating_point.card if f.split == "test"}
    site = v.site_operating_point
    print(f"{v.films.used} of {v.films.listed} films used ({v.films.refused} refused, "
          f"{v.films.not_assessable} need a human look); ROC AUC {v.auc.value:.3f} "
          f"(95% CI {v.auc.low:.3f}-{v.auc.high:.3f}); at the card's threshold "
          f"{v.model.threshold:.3f}: sensitivity {_share(v.card_operating_point.sensitivity)}"
          f"{_verdict(card.get('sensitivity'))}, specificity "
          f"{_share(v.card_operating_point.specificity)}{_verdict(card.get('specificity'))}; "
          f"site operating point for sensitivity >= {site.target_sensitivity:.2f}: threshold "
          f"{site.threshold:.3f}, specificity {_share(site.specificity)}. "
          f"{v.run.films_per_second} films/s. Wrote {args.out}/validation.json and "
          f"{args.out}/{REPORT_FILE}.")
    return 0


def _share(found: Proportion) -> str:
    return "-" if found.value is None else f"{found.value:.3f}"


def _verdict(found: CardFigure | None) -> str:
    return "" if found is None or found.verdict is None else f" ({found.verdict} the card's)"


def _validate_parser(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser(
        "validate", help="measure the model on this site's labelled films (the archive "
                         "extra): DIR/validation.json and DIR/report.html")
    check.add_argument("--labels", required=True, metavar="LABELS",
                       help="a CSV with columns source,label[,subgroup:NAME...] (paths "
                            "relative to the CSV, or URIs; label 1/0 or pneumonia/normal), "
                            "or a folder with NORMAL/ and PNEUMONIA/ subfolders")
    check.add_argument("--out", required=True, metavar="DIR",
                       help="output folder: validation.json, report.html, scores/")
    check.add_argument("--model", default=None,
                       help="which model to validate, by name (default: PNEUMONIA_MODEL_NAME)")
    check.add_argument("--target-sensitivity", type=float, default=None,
                       help="the site operating point's sensitivity (default: the card's)")
    check.add_argument("--seed", type=int, default=None,
                       help="the bootstrap's seed (default: a fixed one, recorded)")
    _engine_options(check)
    check.add_argument("--resume", action="store_true",
                       help="go on with DIR/scores: films already scored are not again")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(run=_validate)


def _site_profile(settings: Settings):
    """The site profile in the state folder, or None; a damaged one stops the command with
    its message (app/services/site.py load)."""
    from app.services import site

    try:
        return site.load(settings.state_dir)
    except site.SiteProfileError as exc:
        raise SystemExit(f"pneumonia-triage: {exc}") from None


def _site(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Adopt, revert or show the site profile, each recorded in the audit trail by `--by`
    (default: the OS user); nothing changes unless the trail can record it."""
    from contextlib import nullcontext

    from app.contract.site import MAX_ACTOR
    from app.services import site
    from app.web.main import open_store

    settings = get_settings()
    who = site.who_runs_this() if args.by is None else args.by.strip()
    if not who or len(who) > MAX_ACTOR:  # checked before anything changes
        problem = ("names no one" if not who
                   else f"is longer than {MAX_ACTOR} characters")
        parser.exit(2, f"{parser.prog}: --by {problem}\n")
    store = open_store(settings)
    try:
        if (problem := store.schema_problem()) is not None:
            parser.exit(2, f"{parser.prog}: the audit trail cannot record it, the worklist "
                           f"database is not ready: {problem}\n")
        try:
            # A change and its record in turn; `show` changes nothing (a read-only folder).
            with (nullcontext() if args.site_command == "show"
                  else site.changing(settings.state_dir)):
                if args.site_command == "adopt":
                    change, profile = "adopted", site.adopt(settings.state_dir, args.dir, who)
                elif args.site_command == "revert":
                    change, profile = "reverted", site.revert(settings.state_dir)
                else:
                    change, profile = "shown", site.load(settings.state_dir)
                site.record(store, change, profile, who)
        except site.SiteProfileError as exc:
            parser.exit(2, f"{parser.prog}: {exc}\n")
    finally:
        store.close()
    print(_site_text(change, profile, settings.state_dir))
    if change == "adopted" and (warning := _not_served(settings, profile)):
        print(f"Warning: {warning}", file=sys.stderr)
    return 0


def _not_served(settings: Settings, profile) -> str | None:
    """Why the server with these settings would not apply `profile` to the films it scores
    by default: its model version is not in MODEL_DIR, or is not the version served (then
    only requests asking NAME/VERSION get it). None when it applies."""
    from app.services.saved_model import available_models

    name, version = profile.model_name, profile.model_version
    versions = available_models(settings.model_dir).get(name, [])
    if version not in versions:
        return (f"{settings.model_dir} holds no {name} v{version}: the server ignores this "
                "profile (and says so on /readyz).")
    served = settings.model_version if name == settings.model_name and \
        settings.model_version is not None else versions[-1]
    if version != served:
        return (f"the server serves {name} v{served}, not v{version}: the profile applies "
                f"only to requests that ask ?model={name}/{version}, and /readyz warns.")
    return None


def _site_text(change: str, profile, state_dir: Path) -> str:
    if profile is None:
        return ("No site profile: every model uses its card's operating point."
                if change != "adopted" else "")
    from app.contract.site import VALIDATIONS_FOLDER

    point = (f"site operating point {profile.threshold:.4g} for {profile.model_name} "
             f"v{profile.model_version} (the card's: {profile.card_threshold:.4g}), validated "
             f"on {profile.films_used} films on {profile.validated_on}")
    report = state_dir / VALIDATIONS_FOLDER / profile.validation_id / "report.html"
    if change == "adopted":
        return (f"Adopted the {point}, by {profile.adopted_by}; recorded in the audit trail. "
                "The server applies it from its next start (restart it); `score` and "
                f"`archive score` at once. Report: {report}. Undo: pneumonia-triage site "
                "revert.")
    if change == "reverted":
        return (f"Reverted the {point}: the card's operating point applies from the "
                f"server's next start. The validation stays at {report}.")
    return (f"The {point}; adopted by {profile.adopted_by} at "
            f"{profile.adopted_at.isoformat()}; validation {profile.validation_sha256}. "
            f"Report: {report}.")


def _site_parser(commands: argparse._SubParsersAction) -> None:
    site = commands.add_parser(
        "site", help="the site operating point adopted from a local validation")
    sub = site.add_subparsers(dest="site_command", metavar="SITE_COMMAND", required=True)
    adopt = sub.add_parser("adopt", help="adopt DIR's site operating point (DIR: what "
                                         "`validate --out DIR` wrote) for its model version")
    adopt.add_argument("dir", type=Path, metavar="DIR")
    revert = sub.add_parser("revert", help="remove the site profile: the card's operating "
                                           "point again")
    show = sub.add_parser("show", help="the site profile in force")
    for command in (adopt, revert, show):
        command.add_argument("--by", default=None, metavar="NAME",
                             help="who, for the audit trail (default: the OS user)")
        command.set_defaults(run=_site)


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
    _validate_parser(commands)
    _site_parser(commands)
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
