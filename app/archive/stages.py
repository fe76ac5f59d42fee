"""The two steps Ray Data runs: decode (`prepare_files`, a stateless task on any CPU) and
score (`ScoreFilms`, an actor that loads the SavedModel once and calls it once per batch).

Both are the app's own steps: the decode job is pipeline.film_job's (the card's input size
and channels, the input guard and orientation detector, the intended-use gate, the
preprocessing version), after the pipeline's `precheck`, through film.prepare_film; the
prediction is Scorer.prediction's, at the threshold and site ages the catalog's rule gives
(catalog.model_terms). A file's failure is its row's error, never the run's: a file that
cannot be read, is over the byte limit or cannot be decoded gets its code and sentence.
Unexpected exceptions are named by type only: their text may quote a header.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from app.archive.rows import Prepared, identify, row, table
from app.archive.sources import read_source
from app.contract.errors import FileTooLargeError, ImageError
from app.contract.preprocessing import precheck
from app.contract.site import OperatingPoint
from app.services.film import FilmJob, prepare_film

# Codes of the archive's own refusals (the film pipeline's are app/contract/errors.py's).
UNREADABLE = "file_unreadable"
FAILED = "decode_failed"


@dataclass(frozen=True)
class Decoding:
    """What every decode task needs, sent once: the model's decode job without bytes
    (pipeline.film_job) and the byte limit of one file (Settings.max_upload_bytes)."""

    job: FilmJob
    max_bytes: int


def prepare_files(batch: dict[str, np.ndarray], decoding: Decoding) -> dict[str, np.ndarray]:
    """Ray Data's decode step: {"source", "size", "written"} columns (`written`: the key an
    earlier run wrote for that source, "" for one it wrote unread, None: not written) ->
    {"prepared": Prepared objects}; a file written before with the same key is passed on
    as `resumed`, unscored."""
    out = [prepare_file(str(source), int(size), written, decoding)
           for source, size, written in zip(batch["source"], batch["size"], batch["written"])]
    prepared = np.empty(len(out), dtype=object)
    prepared[:] = out
    return {"prepared": prepared}


def prepare_file(source: str, size: int, written: str | None,
                 decoding: Decoding) -> Prepared:
    started = time.perf_counter()
    if written == "":  # written before without being read (too large, unreadable)
        return Prepared(source, size, resumed=True)
    if size > decoding.max_bytes:  # never read
        too_large = FileTooLargeError(decoding.max_bytes)
        return Prepared(source, size, error=(too_large.code, too_large.message))
    try:
        data = read_source(source, decoding.max_bytes)
    except OSError as exc:
        return Prepared(source, size, error=(UNREADABLE, f"The file could not be read "
                                                         f"({type(exc).__name__})."))
    if len(data) > decoding.max_bytes:  # it grew since it was listed
        too_large = FileTooLargeError(decoding.max_bytes)
        return Prepared(source, len(data), error=(too_large.code, too_large.message))
    identity = identify(data)
    if written is not None and identity.key == written:
        return Prepared(source, len(data), identity, resumed=True)
    try:
        precheck(data)
        film = prepare_film(replace(decoding.job, data=data))
    except ImageError as exc:
        error = (exc.code, exc.message)
    except Exception as exc:  # noqa: BLE001 - a film no check foresaw: its row, not the run
        error = (FAILED, f"The file could not be decoded ({type(exc).__name__}).")
    else:
        return Prepared(source, len(data), identity, film,
                        seconds=time.perf_counter() - started)
    return Prepared(source, len(data), identity, error=error,
                    seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class Scoring:
    """What every scoring actor needs: the model (its folder), the operating point and the
    site's ages the catalog's rule gives it (None: its card's), the pixel limit, the run."""

    model_dir: str
    name: str
    version: int
    point: OperatingPoint | None
    site_age_years: tuple[float, float] | None
    max_pixels: int
    run_id: str
    threads: int = 1  # TensorFlow's threads in one actor


class ScoreFilms:
    """Ray Data's scoring step, one per actor: the model loaded and warmed up once
    (catalog.load_model), then one model call per batch of prepared films."""

    def __init__(self, scoring: Scoring) -> None:
        # Before TensorFlow is imported in this process: its pools sized to the actor's
        # share of the machine, not to every core (the decode tasks need those).
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(scoring.threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from pathlib import Path

        from app.services.catalog import load_model
        from app.services.decode_pool import InlineDecoder
        from app.services.pipeline import Scorer

        model = load_model(Path(scoring.model_dir), scoring.name, scoring.version)
        point = scoring.point or OperatingPoint(model.card.threshold)
        self.scorer = Scorer(model, point.threshold, InlineDecoder(), scoring.max_pixels,
                             site_age_years=scoring.site_age_years, point=point)
        self.run_id = scoring.run_id
        self.node = _node()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        prepared: list[Prepared] = list(batch["prepared"])
        ready = [p for p in prepared if p.film is not None]
        started = time.perf_counter()
        probabilities = self.scorer.model.predict(
            np.stack([p.film.model_input for p in ready])) if ready else []
        share = (time.perf_counter() - started) / max(len(ready), 1)
        scored = dict(zip(map(id, ready), (float(q) for q in probabilities)))
        card, now = self.scorer.model.card, datetime.now(UTC)
        rows = []
        for p in prepared:
            prediction = None if p.film is None else self.scorer.prediction(
                p.film, scored[id(p)], p.seconds + share)
            rows.append(row(p, prediction, card.name, card.version, self.run_id, now)
                        | {"scored_on": self.node})
        return table(rows)


def _node() -> str | None:
    """The Ray node this process runs on (None outside Ray: a test calling the step)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
