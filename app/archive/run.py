"""`archive score`: a run from its SRCs to committed shards and run.json, with a live
progress bar.

Resume is ours, not Ray's (its job checkpointing is beta): rows are committed in shards
(app/archive/output.py) every `shard_rows` rows or `shard_seconds`, whichever comes first;
`--resume` deletes what no marker commits, reads the committed (source, key) pairs and passes
them to the decode tasks, which read each file, and skip it unscored when its key is the one
written (a file written unread, over the byte limit, by its source alone). A run killed with
`kill -9` loses the rows since its last commit, and its resumption scores exactly those.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from app.archive import engine as ray_engine
from app.archive.engine import Cluster, Engine
from app.archive.output import Output
from app.archive.rows import SCHEMA
from app.archive.sources import Listed, list_sources
from app.archive.stages import Decoding, Scoring
from app.config import Settings
from app.contract.card import CARD_FILE, ModelCard, read_card
from app.contract.site import OperatingPoint
from app.services import site
from app.services.catalog import model_point, model_terms
from app.services.pipeline import film_job
from app.services.saved_model import find_model, read_checks


class ArchiveError(Exception):
    """A run that cannot start as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Request:
    """One `archive score`: what to score, where the rows go, with which model (None: the
    default, Settings.model_name), and how often rows are committed."""

    sources: tuple[str, ...]
    out: str
    model: str | None = None
    include: tuple[str, ...] = ()
    resume: bool = False
    shard_rows: int = 5000
    shard_seconds: float = 60.0


@dataclass
class Counts:
    """This run's files: listed, skipped as written before, and the rows it wrote."""

    listed: int = 0
    resumed: int = 0
    rows: int = 0
    flagged: int = 0
    not_flagged: int = 0
    needs_human_look: int = 0
    refused: int = 0
    errors: Counter = field(default_factory=Counter)  # refusal code -> files

    def add(self, rows: pa.Table) -> None:
        """Count a table of written rows (`resumed` ones already taken out)."""
        self.rows += rows.num_rows
        decisions = Counter(rows.column("decision").to_pylist())
        self.flagged += decisions["flagged"]
        self.not_flagged += decisions["not_flagged"]
        self.needs_human_look += decisions["needs_human_look"]
        self.refused += decisions[None]
        self.errors.update(code for code in rows.column("error").to_pylist() if code)

    def describe(self) -> dict[str, Any]:
        return {"listed": self.listed, "resumed": self.resumed, "rows": self.rows,
                "flagged": self.flagged, "not_flagged": self.not_flagged,
                "needs_human_look": self.needs_human_look, "refused": self.refused,
                "errors": dict(sorted(self.errors.items()))}


@dataclass
class Pace:
    """When the run started streaming, when its first rows came (the actors' model load and
    Ray's warm-up before them), and the files since: films/s with and without the start."""

    started: float = field(default_factory=time.monotonic)
    first: float | None = None
    files_since_first: int = 0

    def came(self, files: int) -> None:
        if self.first is None:
            self.first = time.monotonic()
        else:
            self.files_since_first += files

    def describe(self, files: int) -> dict[str, float | None]:
        now = time.monotonic()
        seconds = now - self.started
        steady = None if self.first is None or now <= self.first else round(
            self.files_since_first / (now - self.first), 2)
        return {"elapsed_seconds": round(seconds, 3),
                "files_per_second": round(files / seconds, 2) if seconds else None,
                "first_rows_after_seconds": None if self.first is None
                else round(self.first - self.started, 3),
                "steady_files_per_second": steady}


@dataclass(frozen=True)
class Model:
    """The model a run asks, read without TensorFlow: its folder, card and card's hash."""

    path: str
    card: ModelCard
    card_sha256: str

    @classmethod
    def resolve(cls, settings: Settings, name: str | None) -> Model:
        """Model `name` (None: the default, at Settings.model_version), as the catalog
        would choose it; raises ModelNotFoundError, CardError."""
        name = name or settings.model_name
        version = settings.model_version if name == settings.model_name else None
        path = find_model(settings.model_dir, name, version)
        card_bytes = (path / CARD_FILE).read_bytes()
        return cls(str(path), read_card(path), hashlib.sha256(card_bytes).hexdigest())


def plan_files(request: Request) -> tuple[Output, list[Listed]]:
    output = Output(request.out)
    return output, list_sources(request.sources, request.include, exclude=request.out)


def dry_run(request: Request, settings: Settings) -> str:
    """What a run would do, said in a few lines: nothing is read, scored or written."""
    model = Model.resolve(settings, request.model)
    output, listed = plan_files(request)
    written = output.written() if request.resume else {}
    again = sum(1 for item in listed if item.source in written)
    size = sum(item.size for item in listed)
    return (f"{len(listed)} files ({size / 2**20:.1f} MiB) listed from "
            f"{len(request.sources)} source(s); {again} written before (skipped where their "
            f"bytes are unchanged); model {model.card.name} v{model.card.version}; "
            f"rows to {request.out}/results/. Nothing was scored (--dry-run).")


def score_archive(request: Request, engine: Engine, settings: Settings,
                  progress: bool = True) -> dict[str, Any]:
    """Score every file the request lists on `engine`; run.json as it is at the end.
    Raises ArchiveError, ModelNotFoundError, CardError, SourceError before Ray starts."""
    model = Model.resolve(settings, request.model)
    output, listed = plan_files(request)
    before = output.manifest()
    if (before is not None or output.shards()) and not request.resume:
        raise ArchiveError(f"{request.out} holds an earlier run's results: add --resume to "
                           "go on with them, or choose another --out")
    if before is not None and before["model"]["card_sha256"] != model.card_sha256:
        old = before["model"]
        raise ArchiveError(f"{request.out} was scored with {old['name']} v{old['version']} "
                           f"(another card): resume it with that model, or choose another "
                           "--out")
    # The site profile too (app/contract/site.py), for the version it names; a damaged one
    # is SiteProfileError (a ValueError) before Ray starts.
    profile = site.load(settings.state_dir)
    _, ages = model_terms(settings, model.card.name, card=model.card, site=profile)
    point = model_point(settings, model.card, profile)
    if before is not None and before["model"].get("threshold") != point.threshold:
        # One output, one operating point: rows flagged at two would read as one worklist.
        raise ArchiveError(
            f"{request.out} was scored at the threshold {before['model'].get('threshold')}"
            f", and this run's is {point.threshold:g} ({point.text}): resume it at that "
            "operating point, or choose another --out")
    cleared = output.clear_uncommitted()
    written = output.written()
    guard, detector = read_checks(model.path, model.card)
    run_id = uuid.uuid4().hex[:12]
    decoding = Decoding(film_job(model.card, guard, detector, settings.max_image_pixels, b"",
                                 site_age_years=ages), settings.max_upload_bytes)
    scoring = Scoring(str(settings.model_dir), model.card.name, model.card.version, point,
                      ages, settings.max_image_pixels, run_id,
                      threads=max(1, round(engine.actor_cpus)))
    files = pa.table({"source": [item.source for item in listed],
                      "size": pa.array([item.size for item in listed], pa.int64()),
                      "written": pa.array([written.get(item.source) for item in listed],
                                          pa.string())})
    counts = Counts(listed=len(listed))
    manifest = _manifest(request, engine, settings, model, run_id, before, point, ages)
    manifest["cleared_uncommitted_files"] = cleared
    cluster = ray_engine.start(engine)
    manifest["engine"] = cluster.describe()
    output.write_manifest(manifest)
    pace = Pace()
    try:
        nodes = _drive(output, cluster, engine, files, decoding, scoring, request, counts,
                       run_id, progress, pace)
    except BaseException as exc:
        _finish(output, manifest, counts, pace,
                "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    finally:
        ray_engine.stop()
    manifest["engine"]["scored_on"] = nodes
    return _finish(output, manifest, counts, pace, "finished")


def _drive(output: Output, cluster: Cluster, engine: Engine, files: pa.Table,
           decoding: Decoding, scoring: Scoring, request: Request, counts: Counts,
           run_id: str, progress: bool, pace: Pace) -> dict[str, int]:
    """Stream the rows in, commit them in shards; rows per node that scored them."""
    from tqdm import tqdm

    pending: list[pa.Table] = []
    seen = Counts()  # committed or not: what the bar shows
    nodes: Counter = Counter()
    shards = [0]
    last = time.monotonic()

    def commit() -> None:
        nonlocal last
        if pending:
            rows = pa.concat_tables(pending)
            output.commit(rows, f"part-{run_id}-{shards[0]:05d}")
            shards[0] += 1
            counts.add(rows)
            pending.clear()
        last = time.monotonic()

    with tqdm(total=files.num_rows, unit="file", disable=not progress, file=sys.stderr,
              smoothing=0.1) as bar:
        try:
            for rows in ray_engine.stream(engine, cluster, files, decoding, scoring):
                pace.came(rows.num_rows)
                resumed = rows.column("resumed")
                counts.resumed += pc.sum(resumed).as_py() or 0
                nodes.update(rows.column("scored_on").to_pylist())
                kept = rows.filter(pc.invert(resumed)).select(SCHEMA.names)
                if kept.num_rows:
                    pending.append(kept)
                    seen.add(kept)
                bar.update(rows.num_rows)
                bar.set_postfix({"flagged": seen.flagged, "look": seen.needs_human_look,
                                 "refused": seen.refused, "resumed": counts.resumed},
                                refresh=False)
                if sum(t.num_rows for t in pending) >= request.shard_rows \
                        or time.monotonic() - last >= request.shard_seconds:
                    commit()
        finally:  # rows in hand are whole: kept, whatever stopped the run
            commit()
    return dict(nodes)


def _manifest(request: Request, engine: Engine, settings: Settings, model: Model,
              run_id: str, before: dict[str, Any] | None, point: OperatingPoint,
              ages: tuple[float, float] | None) -> dict[str, Any]:
    earlier = [] if before is None else [*before.get("earlier_runs", []),
                                        _summary_of(before)]
    return {
        "run_id": run_id, "status": "running", "started_at": _now(), "ended_at": None,
        "host": socket.gethostname(), "pid": os.getpid(),
        "sources": list(request.sources), "include": list(request.include),
        "model": {"name": model.card.name, "version": model.card.version,
                  "card_sha256": model.card_sha256, "threshold": point.threshold,
                  "operating_point": {"source": point.source, "text": point.text},
                  "site_age_years": list(ages) if ages else None},
        "settings": {"batch_size": engine.batch_size, "files_per_task": engine.files_per_task,
                     "decode_cpus": engine.decode_cpus, "actor_cpus": engine.actor_cpus,
                     "actor_gpus": engine.actor_gpus, "actors": engine.actors,
                     "embedded_cpus": engine.cpus,
                     "object_store_mb": engine.object_store_mb if engine.address is None
                     else None,
                     "max_file_bytes": settings.max_upload_bytes,
                     "max_image_pixels": settings.max_image_pixels,
                     "shard_rows": request.shard_rows, "shard_seconds": request.shard_seconds,
                     "resume": request.resume},
        "earlier_runs": earlier,
    }


def _summary_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return {name: manifest.get(name) for name in ("run_id", "status", "started_at",
                                                  "ended_at", "counts", "model")}


def _finish(output: Output, manifest: dict[str, Any], counts: Counts, pace: Pace,
            status: str) -> dict[str, Any]:
    manifest.update(status=status, ended_at=_now(), counts=counts.describe(),
                    **pace.describe(counts.rows + counts.resumed),
                    committed_rows=sum(shard.rows for shard in output.shards()))
    output.write_manifest(manifest)
    return manifest


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
