"""FastAPI dependencies: what routes get, shown in their signatures. The one place that
reaches `app.state`.

The cheap ones are `async def` so that FastAPI runs them on the event loop rather than in
the worker threads, which may all be busy decoding: readiness must answer under load.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.templating import Jinja2Templates
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.dicom.ingest import Ingest, NotStoredError
from app.dicom.stow import boundary_of
from app.errors import (
    ModelNotReadyError,
    ServerBusyError,
    ShadowModeError,
    UnknownModelError,
)
from app.memory import Held, give_back_memory
from app.metrics import Metrics
from app.services.catalog import ModelCatalog
from app.services.decode_pool import Decoder
from app.services.performance import CardShelf
from app.services.pipeline import Scorer
from app.services.saved_model import ServedModel
from app.services.worklist import MAX_ID, ListFilters
from app.store import Sort, Status, WorklistStore
from app.web.upload import FileStream, FileUpload, read_file_upload, streamed_files

T = TypeVar("T")


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def catalog_of(request: Request) -> ModelCatalog:
    return request.app.state.catalog


def templates_of(request: Request) -> Jinja2Templates:
    return request.app.state.templates


def static_dir_of(request: Request) -> pathlib.Path:
    """The folder /static serves (app/web/main.py `resource_dir`)."""
    return request.app.state.static_dir


def decoder_of(request: Request) -> Decoder:
    return request.app.state.decoder


def metrics_of(request: Request) -> Metrics:
    return request.app.state.metrics


def store_of(request: Request) -> WorklistStore:
    return request.app.state.store


def cards_of(request: Request) -> CardShelf:
    return request.app.state.cards


def ingest_of(request: Request) -> Ingest | None:
    """The DICOM node's ingest (app/dicom/ingest.py), once the lifespan has made one."""
    return request.app.state.dicom_ingest


def identity_secret_of(request: Request) -> bytes | None:
    """The install's patient-key secret (app/dicom/identity.py), once the lifespan has read
    it: the same key for a film whichever door it came through."""
    return getattr(request.app.state, "identity_secret", None)


def _on_loop(accessor: Callable[[Request], T]) -> Any:
    """`Depends` on `accessor` as an `async def`, so that FastAPI calls it on the event loop
    rather than in a worker thread (which may all be busy decoding)."""

    async def dependency(request: Request) -> T:
        return accessor(request)

    dependency.__name__ = f"get_{accessor.__name__.removesuffix('_of')}"
    return Depends(dependency)


SettingsDep = Annotated[Settings, _on_loop(settings_of)]
CatalogDep = Annotated[ModelCatalog, _on_loop(catalog_of)]
MetricsDep = Annotated[Metrics, _on_loop(metrics_of)]
StoreDep = Annotated[WorklistStore, _on_loop(store_of)]
IdentitySecretDep = Annotated[bytes | None, _on_loop(identity_secret_of)]
CardsDep = Annotated[CardShelf, _on_loop(cards_of)]

async def results_shown(settings: SettingsDep) -> None:
    """Dependency of the doors that answer a clinician with a result and store nothing
    (/predict, /predict/batch, the upload page's form): ShadowModeError (403) in shadow
    mode, where no clinician sees a result (issue 31)."""
    if settings.shadow_mode:
        raise ShadowModeError()


_SCHEMA_CHECK_SECONDS = 5.0  # /readyz asks the database at most this often


async def store_problem(request: Request) -> str | None:
    """Why the worklist's database is not ready (None: it is), asked of the database in a
    worker thread at most every few seconds, so that readiness answers at once under load
    and whatever the database does."""
    state = request.app.state
    checked_at, problem = getattr(state, "store_checked", (float("-inf"), None))
    if time.monotonic() - checked_at > _SCHEMA_CHECK_SECONDS:
        problem = await run_in_threadpool(store_of(request).schema_problem)
        state.store_checked = (time.monotonic(), problem)
    return problem


async def ready_default(catalog: CatalogDep) -> ServedModel:
    """The default model; 503 (with Retry-After while loading) until it is ready."""
    if catalog.default is None:
        raise ModelNotReadyError(failed=catalog.failure is not None)
    return catalog.default


DefaultModelDep = Annotated[ServedModel, Depends(ready_default)]


async def get_model(
    catalog: CatalogDep,
    model: Annotated[str | None, Query(
        description="Which model to ask, by name (GET /models lists them), or "
                    "NAME/VERSION for an earlier version; left out: the server's default",
    )] = None,
) -> ServedModel:
    """The model asked for, or the default; 503 (with Retry-After while loading) until it is
    ready, 404 for a model this server does not offer."""
    await ready_default(catalog)
    chosen = catalog.choose(model)
    if chosen is None and model and "/" in model:  # an earlier version: loaded on first use
        chosen = await run_in_threadpool(catalog.earlier, model)
    if chosen is None:
        raise UnknownModelError(model or "", list(catalog.models))
    return chosen


ModelDep = Annotated[ServedModel, Depends(get_model)]


async def get_scorer(request: Request, model: ModelDep, catalog: CatalogDep,
                     settings: SettingsDep) -> Scorer:
    """The pipeline's scorer for the model asked for, at the threshold the catalog's rule
    gives it, decoding in the app's worker pool, reporting to the app's metrics."""
    return catalog.scorer(model, decoder_of(request), settings.max_image_pixels,
                          explanations=request.app.state.explanations,
                          metrics=metrics_of(request))


ScorerDep = Annotated[Scorer, Depends(get_scorer)]


def _timeouts(settings: Settings) -> tuple[float, float, float]:
    return (settings.upload_idle_seconds, settings.upload_total_seconds,
            settings.upload_min_bytes_per_second)


async def read_upload(request: Request, settings: SettingsDep, scorer: ScorerDep,
                      explain: bool = False) -> AsyncIterator[FileUpload]:
    """The multipart body of the field `file`, read in memory within the byte limit and
    the server's budget for bodies in flight (503 at once when it is full), held until the
    answer is sent; parsed, admitted and scored by the route's one thread call
    (`FileUpload.data`, then score_film's admission, which waits in its line rather than
    refusing).

    When the decoder's admission (its places and its line), or for `explain` the
    explanations' budget and its queue, is already full as the request arrives, it is
    refused before its body is read: a client looping on a full budget then costs a request
    head, not an upload read for nothing."""
    explains = scorer.explains(explain)
    budget = scorer.explanations if explains else decoder_of(request).admission
    if budget.full:
        raise ServerBusyError()
    with request.app.state.body_budget.reservation() as held:
        yield await read_file_upload(request, settings.max_upload_bytes,
                                     timeouts=_timeouts(settings), take=held.take)


UploadDep = Annotated[FileUpload, Depends(read_upload)]


async def read_batch(request: Request, settings: SettingsDep) -> AsyncIterator[FileStream]:
    """The files of the multipart field `files` as they arrive (app/web/upload.py FileStream:
    (file name, bytes) each, for the route's thread to score while the rest of the body is
    read), within the worklist limits and the server's budget for bodies in flight. Once
    the first file is in, a place among the worklist requests at once and one in the
    decoder's admission (its films decode in turn), held until the answer is sent; 503 at
    once when either is full. The memory the request grew is given back to the system once
    it is answered."""
    state = request.app.state
    try:
        with state.body_budget.reservation() as held, ExitStack() as places:
            def admit() -> None:
                places.enter_context(state.batches.admit())
                # On the event loop: a place now or 503, never a wait in the line.
                places.enter_context(decoder_of(request).admit(queue=False))

            async with streamed_files(request, "files", settings.max_batch_files,
                                      settings.max_upload_bytes, settings.max_batch_bytes,
                                      timeouts=_timeouts(settings), held=held,
                                      on_first=admit) as files:
                yield files
    finally:
        give_back_memory()


BatchDep = Annotated[FileStream, Depends(read_batch)]


@dataclass
class BodyPlaces:
    """A STOW-RS request's share of the server: its bytes in the budget for bodies in flight
    (`held`, which the DICOM node's C-STORE data sets share), and, from `admit()` once its
    first part is in, a place among the worklist requests (ServerBusyError, 503, when none
    is free), as a worklist upload takes one. Both kept until the answer is sent."""

    held: Held
    _take_place: Callable[[], object]
    admitted: bool = False

    def admit(self) -> None:
        if not self.admitted:
            self._take_place()
            self.admitted = True


async def stow_places(request: Request) -> AsyncIterator[BodyPlaces]:
    state = request.app.state
    with state.body_budget.reservation() as held, ExitStack() as places:
        yield BodyPlaces(held, lambda: places.enter_context(state.batches.admit()))


StowPlacesDep = Annotated[BodyPlaces, Depends(stow_places)]


async def stow_boundary(request: Request) -> str:
    """The boundary of a STOW-RS body; 415 for any other content type. Declared before the
    ingest in the route, so a request that is not STOW-RS is refused first."""
    return boundary_of(request.headers.get("content-type", ""))


StowBoundaryDep = Annotated[str, Depends(stow_boundary)]


async def get_ingest(request: Request) -> Ingest:
    """What STOW-RS stores through: the same ingest as the DICOM node's C-STORE; 503 while
    there is none (nothing could be committed)."""
    ingest = ingest_of(request)
    if ingest is None:
        raise NotStoredError()
    return ingest


IngestDep = Annotated[Ingest, Depends(get_ingest)]


def body_timeouts(settings: Settings) -> tuple[float, float, float]:
    return _timeouts(settings)


def _blank_is_none(value: Any) -> Any:
    """A form's empty field ("any status", no date) is no filter."""
    return None if value == "" else value


def _day_or_moment(value: Any) -> Any:
    """YYYY-MM-DD is a day; anything else must be an ISO 8601 datetime. Parsed here rather
    than by pydantic's lax rules, which read a string of digits as a Unix time."""
    if not isinstance(value, str) or value == "":
        return _blank_is_none(value)
    return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)


Moment = Annotated[datetime | date | None, BeforeValidator(_day_or_moment)]


async def list_filters(
    settings: SettingsDep,
    status: Annotated[Status | None, BeforeValidator(_blank_is_none), Query(
        description="Only entries with this status")] = None,
    received_from: Annotated[Moment, Query(
        description="Only studies whose first film arrived at or after this moment; a date "
                    "(YYYY-MM-DD) from its start, in UTC; a datetime without offset is UTC")
    ] = None,
    received_to: Annotated[Moment, Query(
        description="Only studies whose first film arrived before this moment; a date "
                    "includes that whole day (UTC)")] = None,
    sort: Annotated[Sort | None, BeforeValidator(_blank_is_none), Query(
        description="priority (the default: flagged first, highest triage score first), "
                    "newest or oldest (by arrival); in shadow mode always oldest")] = None,
) -> ListFilters:
    """The worklist's filters and order, shared by the API and the page (whose form sends
    empty fields for "any"). In shadow mode the order is arrival, oldest first: an order
    by priority would tell clinicians the model's result."""
    order = Sort.OLDEST if settings.shadow_mode else sort or Sort.PRIORITY
    return ListFilters(status=status, received_from=received_from, received_to=received_to,
                       sort=order)


FiltersDep = Annotated[ListFilters, Depends(list_filters)]

# Row ids in paths and queries: 64-bit in the database, so a larger one is refused (422)
# before it reaches it.
EntryId = Annotated[int, Path(ge=1, le=MAX_ID, description="The entry's id")]
FilmId = Annotated[int, Path(ge=1, le=MAX_ID, description="The film's id")]
RowId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
