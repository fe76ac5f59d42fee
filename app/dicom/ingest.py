"""Receive -> score -> commit: what the node does with one instance, whichever door (C-STORE,
STOW-RS) it came through.

An ingest is any callable `ingest(received, source) -> IngestResult`: `received` is the
instance as the door received it (`Received.read(data)`: its Part 10 bytes, left as they
arrived, and its header read from them once). It returns only once the outcome is committed
(the worklist store's transaction), so the door may then answer success. `ScoringIngest` is
the one the app uses: the film pipeline (`score_film`, the same steps as an upload, on the
bytes as they arrived), the recipe of the results to send back (app/dicom/results.py,
recipe.py: made from a sanitised copy of the header, header.py) and an injected `commit`,
which the app backs with the worklist store and its delivery queue. A film whose results
cannot be made is still committed and listed, with the reason (app/dicom/failures.py).

What an ingest raises, and what each door answers (app/dicom/statuses.py for DICOM):
- ModelNotReadyError, ServerBusyError (app/errors.py), NotStoredError: try again later;
- InvalidInstanceError: the data set lacks what any instance must have (its UIDs), or one
  of them is not a valid UID (InvalidUidError): final.
(`Received.read` raises UnreadableInstanceError for bytes whose header cannot be read, or
whose sequences nest too deep: the door answers it before there is anything to ingest.)
A film that must not or cannot be scored is not an exception: it is committed and listed with
its reason (`IngestResult.error`), and the door answers a warning or a failure status. An
instance the node does not score (an SR, a presentation state, another image, its own
result: app/dicom/classes.py) is acknowledged and ignored (`IngestResult.ignored`), never
committed. A film that is not what its UIDs say (another patient's under a study's UID,
other pixels under a stored SOP Instance UID) is a conflict that `commit` reports
(`IngestResult.conflict`): no results of it are sent.

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

from app.contract.errors import ImageError
from app.contract.identifiers import InstanceFacts, patient_key, pixel_hash, read_header_at
from app.contract.nesting import NestingTooDeepError
from app.dicom.classes import ignored_kind
from app.dicom.failures import ResultsFailure, ResultsNotMade
from app.dicom.recipe import Recipe
from app.errors import AppError, ModelNotReadyError
from app.services.catalog import ModelCatalog
from app.services.decode_pool import Decoder
from app.services.observer import NO_METRICS, Observer
from app.services.pipeline import Prediction, Scorer, score_film
from app.services.weight import dicom_decoded_bytes, places

log = logging.getLogger("app.dicom")


class NotStoredError(AppError):
    """The outcome could not be committed (the store is down or locked): nothing was kept,
    and the sender must try again. The app's `commit` raises it for its database's errors."""

    code = "not_stored"
    message = "The result could not be stored. Try again in a moment."


class UnreadableInstanceError(ValueError):
    """The bytes are not a DICOM Part 10 file whose header can be read, or its sequences
    nest too deep to read (answered 0xC000, nothing committed); `comment` says which."""

    code = "unreadable_instance"

    def __init__(self, cause: str, comment: str = "data set not readable") -> None:
        super().__init__(cause, comment)
        self.comment = comment


@dataclass(frozen=True)
class Received:
    """One instance as a door received it: its Part 10 bytes with their file meta, untouched
    (what the film pipeline decodes: pynetdicom's `event.encoded_dataset()`, a STOW-RS
    part), and its header without the pixels, read from them once (what the door, the
    ingest and the results need: UIDs, the patient and study modules)."""

    data: bytes = field(repr=False)
    header: Dataset = field(repr=False)
    pixels_at: int = 0  # where the pixels' element begins in `data` (len(data): none)

    @classmethod
    def read(cls, data: bytes) -> Received:
        """The header of `data`, read without its pixels; of a deflated data set, only its
        start (app/contract/identifiers.py: never inflated whole here). Raises
        UnreadableInstanceError."""
        try:
            header, pixels_at = read_header_at(data)
        except NestingTooDeepError as exc:
            raise UnreadableInstanceError(type(exc).__name__, exc.message) from exc
        except Exception as exc:  # noqa: BLE001 - pydicom's many errors on a bad stream
            raise UnreadableInstanceError(type(exc).__name__) from exc
        if header is None:
            raise UnreadableInstanceError("deflated header too long")
        return cls(data, header, pixels_at)


@dataclass(frozen=True)
class IngestResult:
    """One committed instance: scored (`prediction`), or listed with why not (`error`).
    `results` is what `commit` queues for delivery in the same transaction: the recipe of
    the objects to send back (an SR, and a secondary capture), encoded (app/dicom/recipe.py;
    the delivery worker builds them from it)."""

    facts: InstanceFacts
    source: str  # "dicom:<calling AE title>" or "dicomweb"
    received_at: datetime  # aware, UTC
    scored_at: datetime | None
    prediction: Prediction | None
    error: ImageError | None
    results: tuple[bytes, ...] = field(default=(), repr=False)
    # Why a scored film has no results to send (app/dicom/failures.py ResultsFailure, e.g.
    # identity: a UID that is not valid DICOM): the film is still listed with its score,
    # and with this reason.
    results_error: str | None = None
    # Whose film and which pixels (app/contract/identifiers.py): the store compares them
    # with the study's and with a film stored before under the same SOP Instance UID.
    patient_key: str | None = field(default=None, repr=False)
    content_hash: str | None = field(default=None, repr=False)
    # An instance taken but not scored, never committed: its kind (IGNORED_KINDS).
    ignored: str | None = None
    # What `commit` found (CONFLICT_KINDS): "patient", listed apart; "instance", not kept.
    conflict: str | None = None


class Ingest(Protocol):
    def __call__(self, received: Received, source: str) -> IngestResult: ...


# Returns the conflict the store found (CONFLICT_KINDS) or None; raises NotStoredError when
# nothing was committed.
Commit = Callable[[IngestResult], str | None]


class ResultsBuilder(Protocol):
    """Makes the recipe of the objects to send back for one scored film
    (app/dicom/results.py ResultBuilder)."""

    # Whether they show the film (a secondary capture): its prediction then keeps the film
    # and its model input as arrays (`Prediction.display`), the heat map's source.
    needs_display: bool

    def recipe(self, source: Dataset, prediction: Prediction) -> Recipe:
        """Raises ResultsNotMade when the film's identity cannot be carried."""
        ...


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
    """The node's ingest: one instance through the film pipeline, the recipe of its results
    made (the delivery worker builds them), and the outcome committed. Thread-safe: every
    association calls it from its own thread."""

    def __init__(self, scorer: Callable[[], Scorer], commit: Commit,
                 results: ResultsBuilder | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 secret: bytes | None = None, metrics: Observer = NO_METRICS,
                 keep_display: bool = False) -> None:
        self._scorer = scorer
        self._commit = commit
        self._results = results
        # The film at display size goes to `commit` too, for the worklist's study view
        # (Settings.worklist_thumbnails, issue 31); otherwise only the results see it.
        self._keep_display = keep_display
        self._clock = clock
        # The per-install secret of the patient key (app/dicom/identity.py); None: films
        # carry no key, and no study is checked for another patient's films.
        self._secret = secret
        self._metrics = metrics  # what is counted before any scorer exists

    def __call__(self, received: Received, source: str) -> IngestResult:
        arrived = self._clock()
        header = received.header
        facts = InstanceFacts.of(header)  # InvalidInstanceError, InvalidUidError: final
        ignored = ignored_kind(header)
        if ignored is not None:  # acknowledged, never listed, scored or sent back
            self._metrics.ignored(ignored)
            log.info("%s from %s: ignored (%s)", facts.sop_instance_uid, source, ignored)
            return IngestResult(facts=facts, source=source, received_at=arrived,
                                scored_at=None, prediction=None, error=None, ignored=ignored)
        scorer = self._scorer()  # ModelNotReadyError before any work
        # Before the recipe reads the header's identity as text (patient_key's rule).
        key = None if self._secret is None else patient_key(header, self._secret)
        prediction, error, results, results_error = None, None, (), None
        # The places its header says it costs, waited for in the admission's line (in this
        # association's thread); ServerBusyError when the line is full or the wait too long.
        decoded = dicom_decoded_bytes(header) or len(received.data)
        with scorer.decoder.admit(places(decoded, scorer.decoder.admission.limit)):
            prediction, error = self._score(scorer, received.data)
        if prediction is not None and self._results is not None:
            results, results_error = self._recipe(facts, header, prediction)
        if prediction is not None and prediction.display is not None \
                and not self._keep_display:
            # The pixels were for the results only: not kept with the outcome.
            prediction = dataclasses.replace(prediction, display=None)
        result = IngestResult(facts=facts, source=source, received_at=arrived,
                              scored_at=self._clock() if prediction else None,
                              prediction=prediction, error=error, results=results,
                              results_error=results_error,
                              patient_key=key,
                              content_hash=pixel_hash(received.data, received.pixels_at))
        conflict = self._commit(result)
        if conflict is not None:  # committed as a conflict: nothing of it goes to the PACS
            self._metrics.conflict(conflict)
            result = dataclasses.replace(result, conflict=str(conflict), results=())
        log.info("%s from %s: %s", facts.sop_instance_uid, source, _outcome(result))
        return result

    def _recipe(self, facts: InstanceFacts, header: Dataset,
                prediction: Prediction) -> tuple[tuple[bytes, ...], str | None]:
        """The results' recipe, encoded; or none, and why (counted, and logged by reason,
        exception type and tag: never a value of the header, nor a traceback quoting one).
        The film keeps its score either way."""
        assert self._results is not None
        try:
            return (self._results.recipe(header, prediction).encode(),), None
        except ResultsNotMade as exc:
            reason, detail = exc.reason, str(exc)
        except Exception as exc:  # noqa: BLE001 - a header no one foresaw: listed, counted
            reason, detail = ResultsFailure.BUILD, type(exc).__name__
        log.warning("%s: results not made: %s", facts.sop_instance_uid, detail)
        self._metrics.results_failed(reason.value)
        return (), reason.value

    def _score(self, scorer: Scorer,
               data: bytes) -> tuple[Prediction, None] | tuple[None, ImageError]:
        """(prediction, None), the prediction with its display pixels (and the model input
        its heat map is drawn from at delivery: the C-STORE is answered without waiting
        for it) when the results show the film or the study view keeps it; or (None, why
        not scored)."""
        shown = self._results is not None and self._results.needs_display
        try:
            return score_film(scorer, data, display=shown or self._keep_display), None
        except ImageError as exc:  # listed with its reason, never scored
            return None, exc


def _outcome(result: IngestResult) -> str:
    """For the log: the score or the error code; never anything of the patient."""
    if result.conflict is not None:
        return f"conflict ({result.conflict}): no results sent"
    if result.prediction is not None:
        p = result.prediction
        if not p.assessable:  # its raw output is no score: it was not judged
            return f"not assessed ({', '.join(p.reasons)})"
        return f"scored {p.probability:.4f} ({'flagged' if p.flagged else 'not flagged'})"
    assert result.error is not None
    return f"not scored ({result.error.code})"


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None
