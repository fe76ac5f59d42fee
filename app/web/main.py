"""Wiring only: create the app, start loading the models in the background, add the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.access import AccessLog
from app.config import Settings, get_settings
from app.contract.assessability import LOOK, NOT_ASSESSABLE
from app.dicom.node import DicomNode
from app.dicom.worklist import StoreCommit, StoreJobSource
from app.display import count, decimal, when
from app.http_errors import install_error_handlers
from app.login_throttle import LoginThrottle
from app.metrics import Metrics
from app.quiet import silence_decoder_chatter
from app.routes import (
    dicomweb,
    docs,
    health,
    operations,
    pages,
    predict,
    worklist,
    worklist_pages,
)
from app.security import InFlightLimit, RequestGuard
from app.services.catalog import ModelCatalog
from app.services.decode_pool import Admission, DecodePool, InlineDecoder
from app.store import RetentionThread, WorklistStore, database_url, upgrade
from app.upload import BodyBudget


def open_store(settings: Settings) -> WorklistStore:
    """The worklist store the settings name. The embedded SQLite is migrated here (`make
    run` needs no set-up); another database is migrated by `pneumonia-triage db upgrade`,
    and until it is, /readyz says so."""
    url = database_url(settings.database_url, settings.state_dir)
    if settings.database_url is None:
        upgrade(url)
    return WorklistStore(url)


_ROUTE_THREADS = 40  # anyio's default


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # Routes run in anyio's worker threads (40 by default). Heatmap requests waiting in
    # their queue each hold one: the pool grows by the queue, so a full queue never leaves
    # other requests without a thread.
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = _ROUTE_THREADS + settings.explanation_queue
    store = open_store(settings)
    app.state.store = store
    retention = RetentionThread(store, retention_days=settings.worklist_retention_days,
                                audit_retention_days=settings.audit_retention_days)
    retention.start()
    # Not awaited: the server accepts connections (and answers /healthz) while it loads.
    if app.state.catalog.loading:
        app.state.catalog.start(settings)
    if settings.decode_workers:
        app.state.decoder = DecodePool(settings.decode_workers,
                                       timeout=settings.decode_timeout_seconds,
                                       memory_mb=settings.decode_memory_mb,
                                       admitted=settings.max_concurrent_decodes,
                                       bulk_workers=settings.batch_decode_workers
                                       or max(1, settings.decode_workers - 1))
    catalog, metrics = app.state.catalog, app.state.metrics
    metrics.watch(store, app.state.decoder,
                  ready=lambda: catalog.default is not None and store.schema_problem() is None)
    node = DicomNode.from_settings(settings, app.state.catalog, app.state.decoder,
                                   StoreCommit(store, settings.worklist_thumbnails),
                                   StoreJobSource(store), metrics=metrics).start()
    app.state.dicom_ingest = node.ingest
    try:
        yield
    finally:
        app.state.dicom_ingest = None
        node.stop()
        retention.stop()
        app.state.decoder.close()
        app.state.decoder = InlineDecoder(settings.max_concurrent_decodes)
        store.close()


def create_app(settings: Settings | None = None,
               catalog: ModelCatalog | None = None) -> FastAPI:
    """The app on `settings` (default: the environment's). A `catalog` already loaded on
    the same model settings is served as it is (tests share one per model set)."""
    settings = settings or get_settings()
    silence_decoder_chatter()
    app = FastAPI(
        title="Pediatric chest X-ray pneumonia triage",
        description="Upload a chest X-ray, get a pneumonia probability. "
                    "A prioritisation aid, not a diagnosis.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # app/routes/docs.py serves it under a strict policy
        redoc_url=None,
        redirect_slashes=False,  # a redirect would be built from the Host header
    )
    app.state.settings = settings
    app.state.catalog = catalog or ModelCatalog()
    # Until the lifespan starts the worker pool (or for good, with decode_workers = 0).
    app.state.decoder = InlineDecoder(settings.max_concurrent_decodes)
    # The DICOM node's ingest (app/dicom/ingest.py), set once the store is open; until then
    # STOW-RS answers 503.
    app.state.dicom_ingest = None
    app.state.body_budget = BodyBudget(settings.max_upload_memory_bytes)
    app.state.explanations = Admission(settings.max_concurrent_explanations,
                                       queue=settings.explanation_queue,
                                       wait=settings.explanation_wait_seconds)
    app.state.batches = Admission(settings.max_concurrent_batches)
    app.state.templates = Jinja2Templates(directory=settings.templates_dir)
    app.state.templates.env.filters["when"] = when
    # The report's and the model pages' numbers: one rounding rule (app/display.py).
    app.state.templates.env.filters.update(decimal=decimal, count=count)
    app.state.login_throttle = LoginThrottle(settings.max_failed_logins,
                                             settings.login_window_seconds)
    # The texts of films that are not assessable: one home (app/contract/assessability.py).
    app.state.templates.env.globals.update(look_text=LOOK, not_assessable=NOT_ASSESSABLE)
    # GET /metrics' families and the drift monitor, this app's own (tests run several).
    app.state.metrics = Metrics.from_settings(settings)
    # Every page's drift banner (templates/drift_banner.html) asks it when rendered.
    app.state.templates.env.globals.update(drift_state=app.state.metrics.drift.state)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=settings.static_dir), name="static")
    app.mount(docs.ASSETS, docs.assets, name="docs-assets")
    figures = settings.model_dir / "figures"
    if figures.is_dir():
        app.mount("/report/figures", StaticFiles(directory=figures), name="figures")
    app.include_router(predict.router)
    app.include_router(worklist.router)
    app.include_router(worklist_pages.router)
    app.include_router(dicomweb.router)
    app.include_router(pages.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(operations.router)
    if settings.cors_origins:  # closed unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "PATCH"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(InFlightLimit, limit=settings.max_connections)
    # Headers and a JSON 500 for every response, the head's size limit.
    app.add_middleware(RequestGuard, max_header_bytes=settings.max_header_bytes)
    # Outermost: every response timed and logged by its route template, with its request id.
    app.add_middleware(AccessLog, metrics=app.state.metrics)
    return app
