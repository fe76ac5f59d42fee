"""Receive -> score -> commit: what the node does with one instance, whichever door (C-STORE,
STOW-RS) it came through.

An ingest is any callable `ingest(dataset, source) -> IngestResult`. It returns only once the
outcome is committed (the worklist store's transaction), so the door may then answer
success. `ScoringIngest` is the one the app uses: the film pipeline (`score_film`, the same
steps as an upload), the results to send back (app/dicom/results.py) and an injected
`commit`, which the app backs with the worklist store and its delivery queue.

What an ingest raises, and what each door answers (app/dicom/statuses.py for DICOM):
- ModelNotReadyError, ServerBusyError (app/errors.py), NotStoredError: try again later;
- InvalidInstanceError: the data set lacks what any instance must have (its UIDs).
A film that must not or cannot be scored is not an exception: it is committed and listed with
its reason (`IngestResult.error`), and the door answers a warning or a failure status.

Patient name, ID and birth date are never read into anything here; only the non-identifying
facts the worklist keeps (InstanceFacts) are.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
from pydicom import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from app.contract.errors import DicomNotScoredError, ImageError
from app.contract.identifiers import InstanceFacts
from app.dicom.results import MANUFACTURER, png_image
from app.errors import AppError, ModelNotReadyError
from app.metrics import NO_METRICS, Observer
from app.services.catalog import ModelCatalog
from app.services.decode_pool import Decoder
from app.services.pipeline import Prediction, Scorer, score_film

log = logging.getLogger("app.dicom")


class NotStoredError(AppError):
    """The outcome could not be committed (the store is down or locked): nothing was kept,
    and the sender must try again. The app's `commit` raises it for its database's errors."""

    code = "not_stored"
    message = "The result could not be stored. Try again in a moment."


@dataclass(frozen=True)
class IngestResult:
    """One committed instance: scored (`prediction`), or listed with why not (`error`).
    `results` are the DICOM objects to send back (an SR, and a secondary capture), which
    `commit` queues for delivery in the same transaction."""

    facts: InstanceFacts
    source: str  # "dicom:<calling AE title>" or "dicomweb"
    received_at: datetime  # aware, UTC
    scored_at: datetime | None
    prediction: Prediction | None
    error: ImageError | None
    results: tuple[Dataset, ...] = field(default=(), repr=False)
    # Why a scored film has no results to send (a header highdicom cannot build from):
    # the film is still listed with its score.
    results_error: str | None = None


class Ingest(Protocol):
    def __call__(self, dataset: Dataset, source: str) -> IngestResult: ...


Commit = Callable[[IngestResult], None]  # raises NotStoredError when nothing was committed


class ResultsBuilder(Protocol):
    """Makes the objects to send back for one scored film (app/dicom/results.py)."""

    # Whether they show the film (a secondary capture): the film is then scored with its
    # heatmap, which brings the film at display size with it.
    needs_film: bool

    def __call__(self, source: Dataset, prediction: Prediction,
                 film: np.ndarray | None) -> tuple[Dataset, ...]: ...


def catalog_scorer(catalog: ModelCatalog, decoder: Decoder, max_pixels: int,
                   metrics: Observer = NO_METRICS) -> Callable[[], Scorer]:
    """The default model's scorer at the catalog's threshold, decoding in `decoder`,
    reporting to `metrics`, as it is when called; ModelNotReadyError until the model is
    ready."""

    def scorer() -> Scorer:
        model = catalog.default
        if model is None:
            raise ModelNotReadyError(failed=catalog.failure is not None)
        return Scorer(model, catalog.threshold(model), decoder, max_pixels, metrics=metrics)

    return scorer


class ScoringIngest:
    """The node's ingest: one instance through the film pipeline, its results built, and
    the outcome committed. Thread-safe: every association calls it from its own thread."""

    def __init__(self, scorer: Callable[[], Scorer], commit: Commit,
                 results: ResultsBuilder | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._scorer = scorer
        self._commit = commit
        self._results = results
        self._clock = clock

    def __call__(self, dataset: Dataset, source: str) -> IngestResult:
        received = self._clock()
        facts = InstanceFacts.of(dataset)
        scorer = self._scorer()  # ModelNotReadyError before any work
        prediction, error, results, results_error = None, _own_result(dataset), (), None
        if error is not None:
            scorer.metrics.refused(error.code)
        else:
            with scorer.decoder.admit():  # ServerBusyError: every decode slot is taken
                prediction, error, film = self._score(scorer, dataset)
            if prediction is not None and self._results is not None:
                try:
                    results = self._results(dataset, prediction, film)
                except Exception as exc:  # noqa: BLE001 - the score is kept and listed
                    log.exception("%s: results not made", facts.sop_instance_uid)
                    results_error = f"results not made ({type(exc).__name__})"
        result = IngestResult(facts=facts, source=source, received_at=received,
                              scored_at=self._clock() if prediction else None,
                              prediction=prediction, error=error, results=results,
                              results_error=results_error)
        self._commit(result)
        log.info("%s from %s: %s", facts.sop_instance_uid, source, _outcome(result))
        return result

    def _score(self, scorer: Scorer, dataset: Dataset):
        """(prediction, None, film for the results) or (None, why not scored, None)."""
        data = part10_bytes(dataset)
        needs_film = self._results is not None and self._results.needs_film
        try:
            prediction = score_film(scorer, data, explain=needs_film)
        except ImageError as exc:  # listed with its reason, never scored
            return None, exc, None
        return prediction, None, _film(scorer, data, prediction) if needs_film else None


def part10_bytes(ds: Dataset) -> bytes:
    """`ds` (with its file meta, as received) as a DICOM Part 10 file, in memory: what the
    film pipeline reads. A deflated data set is written inflated (the pipeline reads both,
    and deflating again only costs time)."""
    meta = ds.file_meta
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _own_result(ds: Dataset) -> DicomNotScoredError | None:
    """A result this node made (results.py marks them so) that the PACS routed back to it:
    listed for what it is, never scored as a film."""
    if _text(ds, "Manufacturer") == MANUFACTURER and "DERIVED" in ds.get("ImageType", []):
        return DicomNotScoredError("own_result", "This image is a result made by this triage "
                                   "node; it is not scored again.")
    return None


def _film(scorer: Scorer, data: bytes, prediction: Prediction) -> np.ndarray:
    """The film at display size (at most 512 px) for a secondary capture: the heatmap's
    copy, or, for a model that draws no heatmap, decoded again through the same decoder."""
    if prediction.heatmap is not None:
        return np.asarray(png_image(prediction.heatmap.film))
    film = scorer.decoder.prepare(scorer.job(data, keep_pixels=True)).pixels
    assert film is not None
    return film


def _outcome(result: IngestResult) -> str:
    """For the log: the score or the error code; never anything of the patient."""
    if result.prediction is not None:
        p = result.prediction
        return f"scored {p.probability:.4f} ({'flagged' if p.flagged else 'not flagged'})"
    assert result.error is not None
    return f"not scored ({result.error.code})"


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None
