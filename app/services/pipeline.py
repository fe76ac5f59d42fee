"""The one film pipeline: bytes -> decoded film -> model input -> prediction -> result.

Every door calls it: `/predict` and the page (`score_film`), `/predict/batch`, the page's
worklist and the folder command (`score_films`), and later the worklist store and the DICOM
node. Decoding runs in the decoder it is given (the app's worker pool, or the calling
thread); the model call and the heatmap run here. Synchronous (Pillow, pydicom, TensorFlow):
web routes call it from worker threads, never on the event loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

import numpy as np
from PIL import Image

from app.contract.assessability import OrientationDetector
from app.contract.body import film_outside_share, heatmap_warning
from app.contract.card import ModelCard
from app.contract.errors import ImageError, RequestBudgetError
from app.contract.guard import InputGuard
from app.contract.intended_use import IntendedUse
from app.contract.preprocessing import precheck
from app.contract.site import OperatingPoint
from app.contract.triage_score import score_text, triage_score
from app.errors import ServerBusyError
from app.services.decode_pool import Admission, Decoder, InlineDecoder
from app.services.film import FilmJob, ImageFacts, PreparedFilm, png_uri
from app.services.observer import NO_METRICS, Observer
from app.services.saved_model import ServedModel
from app.services.weight import decoded_bytes, places

CHUNK = 64  # films per model call when scoring many
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Heatmap:
    """The film and a transparent overlay of the same size, as data: URIs of PNGs."""

    film: str
    overlay: str
    width: int
    height: int
    outside_body: float = 0.0  # share of the map's mass outside the body (app/contract/body.py)

    @property
    def warning(self) -> str | None:
        """Said with a map that points mostly outside the body (issue 28); None otherwise."""
        return heatmap_warning(self.outside_body)


@dataclass(frozen=True)
class Display:
    """The film as decoded for display, and its heat map, as arrays: for a door that draws
    its own picture of the result (the DICOM node's secondary capture), which then needs no
    PNG made and read back."""

    film: np.ndarray  # (H, W) uint8, at most HEATMAP_SIZE px on its longest side
    heat: np.ndarray | None  # (h, w) float32 in 0-1 at the model input's size; None: no map
    # (h, w, C) uint8: what the model saw, from which a door that draws the map later (the
    # DICOM node, at delivery: app/dicom/recipe.py) computes it; None: not kept.
    model_input: np.ndarray | None = None

    @property
    def outside_body(self) -> float | None:
        """As Heatmap's, from the arrays themselves (so a display rebuilt from the DICOM
        delivery queue's recipe has it too); None: no map."""
        return None if self.heat is None else film_outside_share(self.film, self.heat)

    @property
    def heat_warning(self) -> str | None:
        share = self.outside_body
        return None if share is None else heatmap_warning(share)


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one film. A film that is not assessable (`reasons`) has no
    label and is never flagged: `probability` is then the model's raw, unvalidated output,
    kept for audit and never shown as a result (app/web/schemas.py names it so)."""

    probability: float
    label: str | None  # None when not assessable
    flagged: bool  # label is the card's positive class: a priority read
    threshold: float
    model_name: str
    model_version: int
    image: ImageFacts
    elapsed_ms: float
    thumbnail: str | None = None  # data: URI of a small PNG, when asked for
    guard_warnings: tuple[str, ...] = ()
    heatmap: Heatmap | None = None
    reasons: tuple[str, ...] = ()  # app/contract/assessability.py's codes
    # Only when the door asked for it (score_film's `display`): a few hundred KB per film.
    display: Display | None = field(default=None, repr=False, compare=False)
    # Where `threshold` comes from (ModelCatalog.operating_point); None: the card's.
    operating_point: OperatingPoint | None = None

    @property
    def assessable(self) -> bool:
        return not self.reasons

    @property
    def point(self) -> OperatingPoint:
        """The operating point it was judged at, as every door names it."""
        return self.operating_point or OperatingPoint(self.threshold)

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.image.warnings + self.guard_warnings

    @property
    def triage_score(self) -> float | None:
        """The probability on the scale where the operating point is 0.5
        (app/contract/triage_score.py); None for a film the model cannot judge."""
        return triage_score(self.probability, self.threshold) if self.assessable else None

    @property
    def triage_score_text(self) -> str | None:
        """'97': the triage score out of 100 as people read it; None when not assessable."""
        score = self.triage_score
        return None if score is None else score_text(score)


@dataclass(frozen=True)
class FileResult:
    """One file of many: its prediction, or the error that kept it from being scored."""

    index: int
    filename: str
    prediction: Prediction | None
    error: ImageError | ServerBusyError | None  # busy: no decode worker was free in time


@dataclass(frozen=True)
class Scorer:
    """One model at one threshold, decoding through one decoder: what every door needs."""

    model: ServedModel
    threshold: float  # from ModelCatalog.threshold, the one rule
    decoder: Decoder
    max_pixels: int
    # Explanations' own budget: an occlusion map costs two model calls of up to 26 film
    # copies (app/services/occlusion.py), so a few clients asking for one each time must not
    # take the model from everyone else.
    explanations: Admission | None = None
    metrics: Observer = NO_METRICS  # the app's counts and drift (app/metrics.py)
    # The ages a site has validated besides the card's (ModelCatalog's rule); None: none.
    site_age_years: tuple[float, float] | None = None
    # Where `threshold` comes from (ModelCatalog.operating_point, whose threshold it is);
    # None: a scorer made by hand (tests, benchmarks) names its threshold the card's.
    point: OperatingPoint | None = None

    def __post_init__(self) -> None:
        if self.point is not None and self.point.threshold != self.threshold:
            raise ValueError(f"threshold {self.threshold} is not its operating point's "
                             f"({self.point.threshold})")

    def explains(self, explain: bool) -> bool:
        """Whether asking for `explain` makes this scorer draw a heatmap, and so take a place
        in the explanations' budget (the model can, and there is a budget)."""
        return explain and self.model.can_explain and self.explanations is not None

    def job(self, data: bytes, keep_pixels: bool = False, thumbnail: bool = False) -> FilmJob:
        model = self.model
        folder = getattr(model, "path", None)  # a stand-in model (tests) has none
        return film_job(model.card, model.guard, model.detector, self.max_pixels, data,
                        site_age_years=self.site_age_years, keep_pixels=keep_pixels,
                        thumbnail=thumbnail, checks_from=None if folder is None else str(folder))

    def places(self, data: bytes) -> int:
        """The decoder's admission places `data` takes, from its header
        (app/services/weight.py)."""
        return places(decoded_bytes(data), self.decoder.admission.limit)

    def prediction(self, film: PreparedFilm, probability: float, seconds: float,
                   heatmap: Heatmap | None = None,
                   display: Display | None = None) -> Prediction:
        """The one rule: a label (and a flag) only for a film the model can judge."""
        card = self.model.card
        label = card.label_for(probability, self.threshold) if film.assessable else None
        prediction = Prediction(
            probability=probability, label=label, flagged=label == card.positive_class,
            threshold=self.threshold, model_name=card.name, model_version=card.version,
            image=film.facts, elapsed_ms=seconds * 1000, thumbnail=film.thumbnail,
            guard_warnings=film.guard_warnings, heatmap=heatmap, reasons=film.reasons,
            display=display, operating_point=self.point)
        self.metrics.scored(self.model, film.model_input, prediction,
                            statistics=film.statistics, digest=film.digest)
        return prediction


def film_job(card: ModelCard, guard: InputGuard | None,
             detector: OrientationDetector | None, max_pixels: int, data: bytes, *,
             site_age_years: tuple[float, float] | None = None, keep_pixels: bool = False,
             thumbnail: bool = False, checks_from: str | None = None) -> FilmJob:
    """The decode job of `data` for a model: its card's input size, channels and
    preprocessing version, its input guard and orientation detector (saved_model.read_checks),
    films over `max_pixels` refused, and the intended-use gate of its card's population
    widened by the site's ages (None: the card's only). Scorer.job's, and the archive's
    (app/archive/), which decodes where no model is loaded. `checks_from`: the model's
    folder, so that a decode worker reads the guard and detector there once rather than
    getting them with every job (FilmJob.lean)."""
    return FilmJob(data, card.input_size, card.channels, guard, max_pixels,
                   keep_pixels=keep_pixels, thumbnail=thumbnail, detector=detector,
                   preprocessing_version=card.input.preprocessing_version,
                   intended_use=IntendedUse(card.intended_population, site_age_years),
                   checks_from=checks_from)


def score_film(scorer: Scorer, data: bytes, explain: bool = False,
               admit: bool = False, display: bool = False) -> Prediction:
    """One film: its prediction, with its occlusion heatmap when `explain` (and the model
    can). `admit`: take the film's places in the decoder's admission here (as many as its
    header says it costs: `Scorer.places`, waiting in the admission's line), after its place
    among the explanations (a film waiting for a heatmap must not hold a decode place that
    a plain film could use); otherwise the caller holds them. `display`: the prediction keeps
    the film at display size and the heat map as arrays (`Prediction.display`) instead of
    the heatmap's PNGs; without it no pixels outlive the call. Raises ImageError
    subclasses (app/contract/errors.py), or ServerBusyError when no decode worker is free,
    when the admission's line is full or the film waited its time in it, or when `explain`
    finds the explanations' budget and its queue full."""
    try:
        return _score_film(scorer, data, explain, admit, display)
    except ImageError as exc:
        scorer.metrics.refused(exc.code)
        raise


def _score_film(scorer: Scorer, data: bytes, explain: bool, admit: bool,
                display: bool) -> Prediction:
    explain = explain and scorer.model.can_explain
    budget = scorer.explanations if explain and scorer.explanations else Admission(None)
    precheck(data)  # refusals that need no decoder, made before one is taken
    # ServerBusyError before any decoding when the explanations' budget and queue are full,
    # or after its wait in the queue; then the same for the decoder's admission, where the
    # film takes the places its header says it costs.
    with budget.admit(), \
            scorer.decoder.admit(scorer.places(data)) if admit else nullcontext():
        started = time.perf_counter()
        film = _decode(scorer, scorer.job(data, keep_pixels=explain or display))
        model = scorer.model
        heat = None
        called = time.perf_counter()
        if explain and film.assessable:  # no map of an unvalidated score
            probabilities, maps = model.explain(film.model_input[None])
            heat = maps[0]
        else:
            probabilities = model.predict_shared(film.model_input[None])
        scorer.metrics.inferred(time.perf_counter() - called)
        heatmap = shown = None
        if display:
            assert film.pixels is not None  # the job kept them
            # The model input too while there is no map yet, for a door that draws it
            # later (the DICOM node), when the model can draw one.
            source = film.model_input if heat is None and model.can_explain else None
            shown = Display(film.pixels, heat, source)
        elif heat is not None:
            heatmap = draw_heatmap(film.pixels, heat)
    return scorer.prediction(film, float(probabilities[0]), time.perf_counter() - started,
                             heatmap=heatmap, display=shown)


Source = bytes | Callable[[], bytes]  # a file's bytes, or a function that reads them


def score_films(scorer: Scorer, files: Iterable[tuple[str, Source]],
                thumbnails: bool = False, parallel: int = 1,
                chunk: int = CHUNK, budget_seconds: float | None = None,
                display: bool = False) -> Iterator[FileResult]:
    """Many films, in the order given: one FileResult each, yielded as each chunk of
    `chunk` films is scored in one model call. A file that cannot be scored carries its
    error and never fails the others. `files` holds (name, bytes or a function that reads
    them, or raises the file's ImageError), read lazily: a file is asked for only once a
    decoding place is free, so at most `parallel` files' bytes are held here at once (the
    folder command uses every worker; a request uses one, leaving the pool to other
    requests, and streams its body: app/web/upload.py `FileStream`). Each film's bytes are
    let go once it is decoded, its pixels once its model input, guard warnings and
    thumbnail are made. Past `budget_seconds` of the server's own time from the start, the
    files left get RequestBudgetError, unread: time spent waiting for `files` to give the
    next one (a client still sending it) is not counted, so a slow but steady upload is
    not cut short for its own pace. An error raised by `files` itself (a body that breaks
    off) is raised here, after the results of the files before it. `display`: each
    prediction keeps the film at display size (`Prediction.display`, no heat map), for the
    worklist's study view."""
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    waited = [0.0]  # seconds spent waiting for `files`

    def timed(items: Iterable[tuple[str, Source]]) -> Iterator[tuple[str, Source]]:
        items = iter(items)
        while True:
            started = time.monotonic()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                waited[0] += time.monotonic() - started
            yield item
            del item

    def prepare(item: tuple[int, tuple[str, Source]]):
        index, (name, source) = item
        del item
        started = time.perf_counter()
        try:
            if deadline is not None and time.monotonic() - waited[0] > deadline:
                raise RequestBudgetError(budget_seconds)
            data = source() if callable(source) else source
            del source
            precheck(data)
            film = _decode(scorer, scorer.job(data, thumbnail=thumbnails, keep_pixels=display),
                           bulk=True)
            return index, name, film, None, time.perf_counter() - started
        except (ImageError, ServerBusyError) as exc:  # this file's answer, not the others'
            if isinstance(exc, ImageError):
                scorer.metrics.refused(exc.code)
            # Kept with the result: without its traceback, whose frames hold the file.
            exc.__traceback__ = exc.__cause__ = exc.__context__ = None
            return index, name, None, exc, time.perf_counter() - started

    prepared = _in_turn(prepare, enumerate(timed(files)), parallel)
    while batch := list(islice(prepared, chunk)):
        started = time.perf_counter()
        ready = [p for p in batch if p[2] is not None]
        probabilities = {}
        if ready:
            out = scorer.model.predict(np.stack([p[2].model_input for p in ready]))
            scorer.metrics.inferred(time.perf_counter() - started)
            probabilities = {p[0]: float(q) for p, q in zip(ready, out)}
        model_seconds = (time.perf_counter() - started) / max(len(ready), 1)
        for index, name, film, error, seconds in batch:
            # `display`: the film at display size, for the worklist's study view (issue 31).
            prediction = None if film is None else scorer.prediction(
                film, probabilities[index], seconds + model_seconds,
                display=None if film.pixels is None else Display(film.pixels, None))
            yield FileResult(index, name, prediction, error)


def _in_turn(prepare: Callable[[T], R], items: Iterator[T], parallel: int) -> Iterator[R]:
    """`prepare(item)` of each item, in order, at most `parallel` at once; an item is read
    only when a place is free, and no reference to it is kept here once it is prepared."""
    if parallel <= 1:
        yield from map(prepare, items)
        return
    with ThreadPoolExecutor(max_workers=parallel) as threads:
        window: deque[Future[R]] = deque()
        for item in items:
            window.append(threads.submit(prepare, item))
            del item
            if len(window) >= parallel:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def one_or_many(files: Iterable[tuple[str, Source]]
                ) -> tuple[tuple[str, bytes] | None, Iterator[tuple[str, Source]]]:
    """((name, bytes) of the only file, an empty iterator) when `files` holds one; (None,
    all of them in order) when it holds more. Reads at most two files to tell. The page's
    rule: one film is shown as a result, many as a worklist. Raises the one file's
    ImageError (its source's, e.g. FileTooLargeError)."""
    items = iter(files)
    head = list(islice(items, 2))
    if len(head) == 1:
        (name, source), = head
        return (name, source() if callable(source) else source), iter(())
    return None, _handing_over(head, items)


def _handing_over(head: list, rest: Iterator) -> Iterator:
    while head:
        yield head.pop(0)  # popped, not kept: the file leaves with its consumer
    yield from rest


def _decode(scorer: Scorer, job: FilmJob, bulk: bool = False) -> PreparedFilm:
    """The decoder's film (in a worker process or inline), timed here in the serving
    process, a refused film's decode included; a busy pool is not counted. `bulk`: one
    film of many, which the pool keeps off some of its workers."""
    started = time.perf_counter()
    try:
        film = scorer.decoder.prepare(job, bulk=bulk)
    except ImageError:
        scorer.metrics.decoded(time.perf_counter() - started)
        raise
    scorer.metrics.decoded(time.perf_counter() - started)
    return film


def inline_scorer(model: ServedModel, threshold: float, max_pixels: int) -> Scorer:
    """A Scorer that decodes in the calling thread: for tools and tests."""
    return Scorer(model, threshold, InlineDecoder(), max_pixels)


# The layer's colour and opacity for each of the 256 heat levels: red to yellow (hotter is
# yellower), and clear below a fifth of the hottest.
_LEVELS = np.arange(256) / 255
HEAT_COLOURS = np.stack([np.full(256, 255), np.arange(256), np.zeros(256)], -1).astype(np.uint8)
HEAT_OPACITY = np.round(220 * np.clip(_LEVELS * 1.4 - 0.2, 0, 1)).astype(np.uint8)


def draw_heatmap(pixels: np.ndarray, heat: np.ndarray) -> Heatmap:
    """The film at display size, and the (H, W) 0-1 map stretched over it as a transparent
    red-to-yellow layer: the page stacks them and lets the clinician fade the layer."""
    film = Image.fromarray(pixels)
    size = film.size
    return Heatmap(film=png_uri(film, quick=True),
                   overlay=png_uri(heat_layer(heat, size), quick=True),
                   width=size[0], height=size[1],
                   outside_body=film_outside_share(pixels, heat))


def heat_layer(heat: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The (h, w) 0-1 map stretched to `size` (width, height) px as a transparent
    red-to-yellow layer: a palette image, one entry (colour and opacity) per heat level,
    which converts to the same RGBA pixels as a full-colour one and, as a PNG, has a
    quarter of the bytes to compress."""
    level = Image.fromarray((heat * 255).astype(np.uint8)).resize(
        size, Image.Resampling.BILINEAR)
    layer = Image.fromarray(np.asarray(level), "P")
    layer.putpalette(HEAT_COLOURS.tobytes())
    layer.info["transparency"] = HEAT_OPACITY.tobytes()
    return layer
