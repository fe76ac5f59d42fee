"""Receive -> score -> commit: what the node does with one instance, whichever door (C-STORE,
STOW-RS) it came through.

An ingest is any callable `ingest(received, source) -> IngestResult`: `received` is the
instance as the door received it (`Received.read(data)`: its Part 10 bytes, left as they
arrived, and its header read from them once). It returns only once the outcome is committed
(the worklist store's transaction), so the door may then answer success. `ScoringIngest` is
the one the app uses: the film pipeline (`score_film`, the same steps as an upload, on the
bytes as they arrived), the results to send back (app/dicom/results.py) and an injected
`commit`, which the app backs with the worklist store and its delivery queue.

What an ingest raises, and what each door answers (app/dicom/statuses.py for DICOM):
- ModelNotReadyError, ServerBusyError (app/errors.py), NotStoredError: try again later;
- InvalidInstanceError: the data set lacks what any instance must have (its UIDs).
(`Received.read` raises UnreadableInstanceError for bytes whose header cannot be read: the
door answers it before there is anything to ingest.)
A film that must not or cannot be scored is not an exception: it is committed and listed with
its reason (`IngestResult.error`), and the door answers a warning or a failure status.

Patient name, ID and birth date are never read into anything here; only the non-identifying
facts the worklist keeps (InstanceFacts) are.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydicom import Dataset

from app.contract.errors import DicomNotScoredError, ImageError
from app.contract.identifiers import InstanceFacts, read_header
from app.dicom.results import MANUFACTURER
from app.errors import AppError, ModelNotReadyError
from app.services.catalog import ModelCatalog
from app.services.decode_pool import Decoder
from app.services.observer import NO_METRICS, Observer
from app.services.pipeline import Prediction, Scorer, score_film

log = logging.getLogger("app.dicom")


class NotStoredError(AppError):
    """The outcome could not be committed (the store is down or locked): nothing was kept,
    and the sender must try again. The app's `commit` raises it for its database's errors."""

    code = "not_stored"
    message = "The result could not be stored. Try again in a moment."


class UnreadableInstanceError(ValueError):
    """The bytes are not a DICOM Part 10 file whose header can be read (answered 0xC000,
    nothing committed)."""

    code = "unreadable_instance"


@dataclass(frozen=True)
class Received:
    """One instance as a door received it: its Part 10 bytes with their file meta, untouched
    (what the film pipeline decodes: pynetdicom's `event.encoded_dataset()`, a STOW-RS
    part), and its header without the pixels, read from them once (what the door, the
    ingest and the results need: UIDs, the patient and study modules)."""

    data: bytes = field(repr=False)
    header: Dataset = field(repr=False)

    @classmethod
    def read(cls, data: bytes) -> Received:
        """The header of `data`, read without its pixels; of a deflated data set, only its
        start (app/contract/identifiers.py: never inflated whole here). Raises
        UnreadableInstanceError."""
        try:
            header = read_header(data)
        except Exception as exc:  # noqa: BLE001 - pydicom's many errors on a bad stream
            raise UnreadableInstanceError(type(exc).__name__) from exc
        if header is None:
            raise UnreadableInstanceError("deflated header too long")
        return cls(data, header)


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
    def __call__(self, received: Received, source: str) -> IngestResult: ...


Commit = Callable[[IngestResult], None]  # raises NotStoredError when nothing was committed


class ResultsBuilder(Protocol):
    """Makes the objects to send back for one scored film (app/dicom/results.py)."""

    # Whether they show the film (a secondary capture): the film is then scored with its
    # heat map, and its prediction keeps both as arrays (`Prediction.display`).
    needs_display: bool

    def __call__(self, source: Dataset, prediction: Prediction) -> tuple[Dataset, ...]: ...


def catalog_scorer(catalog: ModelCatalog, decoder: Decoder, max_pixels: int,
                   metrics: Observer = NO_METRICS) -> Callable[[], Scorer]:
    """The default model's scorer at the catalog's threshold, decoding in `decoder`,
    reporting to `metrics`, as it is when called; ModelNotReadyError until the model is
    ready."""

    def scorer() -> Scorer:
        model = catalog.default
        if model is None:
            raise ModelNotReadyError(failed=catalog.failure is not None)
        return catalog.scorer(model, decoder, max_pixels, metrics=metrics)

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

    def __call__(self, received: Received, source: str) -> IngestResult:
        arrived = self._clock()
        header = received.header
        facts = InstanceFacts.of(header)
        scorer = self._scorer()  # ModelNotReadyError before any work
        prediction, error, results, results_error = None, _own_result(header), (), None
        if error is not None:
            scorer.metrics.refused(error.code)
        else:
            with scorer.decoder.admit():  # ServerBusyError: every decode slot is taken
                prediction, error = self._score(scorer, received.data)
            if prediction is not None and self._results is not None:
                try:
                    results = self._results(header, prediction)
                except Exception as exc:  # noqa: BLE001 - the score is kept and listed
                    log.exception("%s: results not made", facts.sop_instance_uid)
                    results_error = f"results not made ({type(exc).__name__})"
            if prediction is not None and prediction.display is not None:
                # The pixels were for the results only: not kept with the outcome.
                prediction = dataclasses.replace(prediction, display=None)
        result = IngestResult(facts=facts, source=source, received_at=arrived,
                              scored_at=self._clock() if prediction else None,
                              prediction=prediction, error=error, results=results,
                              results_error=results_error)
        self._commit(result)
        log.info("%s from %s: %s", facts.sop_instance_uid, source, _outcome(result))
        return result

    def _score(self, scorer: Scorer,
               data: bytes) -> tuple[Prediction, None] | tuple[None, ImageError]:
        """(prediction, None), the prediction with its display pixels when the results show
        the film; or (None, why not scored)."""
        display = self._results is not None and self._results.needs_display
        try:
            return score_film(scorer, data, explain=display, display=display), None
        except ImageError as exc:  # listed with its reason, never scored
            return None, exc


def _own_result(ds: Dataset) -> DicomNotScoredError | None:
    """A result this node made (results.py marks them so) that the PACS routed back to it:
    listed for what it is, never scored as a film."""
    if _text(ds, "Manufacturer") == MANUFACTURER and "DERIVED" in ds.get("ImageType", []):
        return DicomNotScoredError("own_result", "This image is a result made by this triage "
                                   "node; it is not scored again.")
    return None


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
