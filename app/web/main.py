"""Wiring only: create the app, start loading the models in the background, add the routers."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from importlib import resources
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.config import Settings, get_settings
from app.contract.assessability import LOOK, NOT_ASSESSABLE
from app.contract.site import SiteProfile
from app.dicom.identity import install_secret
from app.dicom.node import DicomNode
from app.dicom.store_adapter import StoreCommit, StoreJobSource
from app.errors import StartupError
from app.logs import silence_decoder_chatter
from app.memory import BodyBudget
from app.metrics import Metrics
from app.services import site
from app.services.catalog import ModelCatalog
from app.services.decode_pool import Admission, DecodePool, InlineDecoder
from app.services.display import count, decimal, local_time, when
from app.services.performance import CardShelf, measure
from app.services.plain import plain_notes, reason_sentence, reason_words
from app.services.worklist import PageViews, record_intended_ages, record_shadow_mode
from app.store import RetentionThread, WorklistStore, database_url, upgrade
from app.web.auth import LoginThrottle
from app.web.errors import install_error_handlers
from app.web.middleware import AccessLog, InFlightLimit, RequestGuard, StartupMessage
from app.web.routes import (
    dicomweb,
    docs,
    guide,
    health,
    operations,
    pages,
    predict,
    validation,
    worklist,
    worklist_pages,
)

log = logging.getLogger("app")


def resource_dir(configured: Path | None, name: str) -> Path:
    """`configured` (a setting), else the pages' `name` folder ("templates" or "static"):
    in an installed package, the web package's resources (pyproject.toml ships the
    repository's templates/ and static/ as app.web.templates and app.web.static), found
    through importlib.resources from any working directory; in a source checkout (an
    editable install, which maps but does not copy them), the repository's own folder."""
    if configured is not None:
        return configured
    shipped = Path(str(resources.files("app.web"))) / name
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[2] / name


def open_store(settings: Settings) -> WorklistStore:
    """The worklist store the settings name. The embedded SQLite is migrated here (`make
    run` needs no set-up), in a state folder that must be writable (StartupError, naming
    PNEUMONIA_STATE_DIR, when not); another database is migrated by `pneumonia-triage db
    upgrade`, and until it is, /readyz says so."""
    if settings.database_url is not None:
        return WorklistStore(database_url(settings.database_url, settings.state_dir))
    writable_folder(settings.state_dir)
    url = database_url(None, settings.state_dir)
    upgrade(url)
    return WorklistStore(url)


def writable_folder(folder: Path) -> None:
    """Create `folder` (and its parents) and write a nameless file in it, or StartupError:
    SQLite's own failure there is an 80-line traceback that names neither the folder nor
    the setting."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise StartupError(
            f"The state folder {folder} cannot be written ({exc.strerror or exc}): make it a "
            "writable folder or set PNEUMONIA_STATE_DIR to one", "PNEUMONIA_STATE_DIR") from exc


def start_dicom_node(app: FastAPI, store: WorklistStore) -> DicomNode:
    """The DICOM node, listening (when dicom_port is set) and delivering; StartupError,
    naming PNEUMONIA_DICOM_PORT, when its port cannot be opened."""
    settings: Settings = app.state.settings
    node = DicomNode.from_settings(settings, app.state.catalog, app.state.decoder,
                                   StoreCommit(store, settings.worklist_thumbnails,
                                               settings.results_max_pending,
                                               app.state.metrics,
                                               shadow_mode=settings.shadow_mode),
                                   StoreJobSource(store), metrics=app.state.metrics,
                                   budget=app.state.body_budget)
    try:
        return node.start()  # only the SCP's bind raises OSError
    except OSError as exc:
        raise StartupError(
            f"The DICOM port {settings.host}:{settings.dicom_port} cannot be opened "
            f"({exc.strerror or exc}): free it or set PNEUMONIA_DICOM_PORT to another port "
            "(0: no DICOM node; PNEUMONIA_HOST: the address)", "PNEUMONIA_DICOM_PORT") from exc


def read_site_profile(settings: Settings) -> SiteProfile | None:
    """The site profile in the state folder (app/services/site.py), or None; StartupError
    for one that cannot be read: the server does not start on a profile it cannot apply."""
    try:
        return site.load(settings.state_dir)
    except site.SiteProfileError as exc:
        raise StartupError(str(exc), "PNEUMONIA_STATE_DIR") from None


def record_site_settings(store: WorklistStore, settings: Settings,
                         profile: SiteProfile | None) -> None:
    """The site's intended ages (Settings.intended_age_years), when set, in the audit trail
    at each start; shadow mode turned on or off since the last start; the site profile in
    force when the trail does not say so (app/services/site.py record_in_force: one put in
    the state folder by hand). A database that `db upgrade` has not migrated yet cannot take
    the record (nor films: /readyz says so): logged instead."""
    problem = store.schema_problem()
    if problem is not None:  # recorded at the first start that can
        if settings.intended_age_years is not None or settings.shadow_mode or profile:
            log.warning("PNEUMONIA_INTENDED_AGE_YEARS %s, PNEUMONIA_SHADOW_MODE %s and the "
                        "site profile (%s) not recorded in the audit trail: %s",
                        settings.intended_age_years, settings.shadow_mode,
                        "none" if profile is None else f"threshold {profile.threshold:g}",
                        problem)
        return
    if settings.intended_age_years is not None:
        record_intended_ages(store, settings.intended_age_years, settings.model_name)
    record_shadow_mode(store, settings.shadow_mode)
    if site.record_in_force(store, profile) is not None:
        log.warning("The site profile %s %s without a `pneumonia-triage site` command "
                    "recording it (by hand?): recorded now in the audit trail as found",
                    site.profile_path(settings.state_dir),
                    "was put in place" if profile is not None else "was removed")


_ROUTE_THREADS = 40  # anyio's default


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the store, start retention, the decode pool and the DICOM node, then load the
    models in the background; stop what started, in reverse, at the end or when a later
    step fails (a StartupError: the port or folder it names)."""
    settings: Settings = app.state.settings
    # Routes run in anyio's worker threads (40 by default). Heatmap requests waiting in
    # their queue, and films waiting for the decoder's admission, each hold one: the pool
    # grows by both queues, so full queues never leave other requests without a thread.
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = _ROUTE_THREADS + settings.explanation_queue + settings.decode_queue
    with ExitStack() as started:
        store = app.state.store = open_store(settings)
        started.callback(store.close)
        # Read and recorded under the site lock: a `site adopt` beside this start records
        # its change after this start's record, never before it.
        with site.changing(settings.state_dir, required=False):
            profile = read_site_profile(settings)
            record_site_settings(store, settings, profile)
        retention = RetentionThread(store, retention_days=settings.worklist_retention_days,
                                    audit_retention_days=settings.audit_retention_days)
        retention.start()
        started.callback(retention.stop)
        if settings.decode_workers:
            app.state.decoder = DecodePool(settings.decode_workers,
                                           timeout=settings.decode_timeout_seconds,
                                           memory_mb=settings.decode_memory_mb,
                                           admitted=settings.max_concurrent_decodes,
                                           line=settings.decode_queue,
                                           line_seconds=settings.decode_queue_seconds,
                                           bulk_workers=settings.batch_decode_workers
                                           or max(1, settings.decode_workers - 1))
        started.callback(_close_decoder, app)
        catalog, metrics = app.state.catalog, app.state.metrics
        metrics.watch(store, app.state.decoder, ready=lambda: catalog.default is not None
                      and store.schema_problem() is None,
                      performance=lambda: measure(store, app.state.cards.card))
        # The patient key's secret, for uploads as for the node's films (one key a patient).
        app.state.identity_secret = install_secret(settings)
        started.callback(setattr, app.state, "identity_secret", None)
        node = start_dicom_node(app, store)
        started.callback(node.stop)
        app.state.dicom_ingest = node.ingest
        started.callback(setattr, app.state, "dicom_ingest", None)
        catalog.use_site(profile)
        # A catalog shared by a later app (tests) starts without it; nothing to say then.
        started.callback(catalog.use_site, None, say=False)
        # Not awaited: the server accepts connections (and answers /healthz) while it loads.
        if catalog.loading:
            catalog.start(settings)
        yield


def _close_decoder(app: FastAPI) -> None:
    app.state.decoder.close()
    app.state.decoder = inline_decoder(app.state.settings)


def inline_decoder(settings: Settings) -> InlineDecoder:
    """Decoding in the request's thread, under the same admission as the pool's."""
    return InlineDecoder(settings.max_concurrent_decodes, settings.decode_queue,
                         settings.decode_queue_seconds)


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
        docs_url=None,  # app/web/routes/docs.py serves it under a strict policy
        redoc_url=None,
        redirect_slashes=False,  # a redirect would be built from the Host header
    )
    app.state.settings = settings
    app.state.catalog = catalog or ModelCatalog()
    # The cards of every model version reads judged (app/services/performance.py).
    app.state.cards = CardShelf(settings.model_dir)
    # Until the lifespan starts the worker pool (or for good, with decode_workers = 0).
    app.state.decoder = inline_decoder(settings)
    # The DICOM node's ingest (app/dicom/ingest.py), set once the store is open; until then
    # STOW-RS answers 503.
    app.state.dicom_ingest = None
    app.state.body_budget = BodyBudget(settings.max_upload_memory_bytes)
    app.state.explanations = Admission(settings.max_concurrent_explanations,
                                       queue=settings.explanation_queue,
                                       wait=settings.explanation_wait_seconds)
    app.state.batches = Admission(settings.max_concurrent_batches)
    app.state.page_views = PageViews()  # the worklist page's reads, in the audit trail
    app.state.templates = Jinja2Templates(
        directory=resource_dir(settings.templates_dir, "templates"))
    app.state.templates.env.filters["when"] = when
    app.state.templates.env.filters["local_time"] = local_time
    # The report's and the model pages' numbers: one rounding rule (app/services/display.py).
    app.state.templates.env.filters.update(decimal=decimal, count=count)
    app.state.login_throttle = LoginThrottle(settings.max_failed_logins,
                                             settings.login_window_seconds)
    # The texts of films that are not assessable: one home (app/contract/assessability.py).
    app.state.templates.env.globals.update(look_text=LOOK, not_assessable=NOT_ASSESSABLE)
    # Reason codes and technical notes in plain words, the code on hover (issue 33).
    app.state.templates.env.filters.update(reason_sentence=reason_sentence,
                                           reason_words=reason_words, plain_notes=plain_notes)
    # GET /metrics' families and the drift monitor, this app's own (tests run several).
    app.state.metrics = Metrics.from_settings(settings)
    # Every page's drift banner (templates/drift_banner.html) asks it when rendered.
    app.state.templates.env.globals.update(drift_state=app.state.metrics.drift.state)
    # Every page's shadow-mode banner (templates/base.html) and the pages that hide results.
    app.state.templates.env.globals.update(shadow_mode=settings.shadow_mode)
    install_error_handlers(app)
    app.state.static_dir = resource_dir(settings.static_dir, "static")
    app.mount("/static", StaticFiles(directory=app.state.static_dir), name="static")
    app.mount(docs.ASSETS, docs.assets, name="docs-assets")
    figures = settings.model_dir / "figures"
    if figures.is_dir():
        app.mount("/report/figures", StaticFiles(directory=figures), name="figures")
    if guide.is_built(settings.guide_dir):  # the documentation site, once mkdocs built it
        app.include_router(guide.router)
        app.mount(guide.PREFIX, guide.GuideFiles(directory=settings.guide_dir, html=True),
                  name="guide")
    app.include_router(predict.router)
    app.include_router(worklist.router)
    app.include_router(worklist_pages.router)
    app.include_router(dicomweb.router)
    app.include_router(pages.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(operations.router)
    app.include_router(validation.router)
    if settings.cors_origins:  # closed unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "PATCH"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(InFlightLimit, limit=settings.max_connections)
    # Headers and a JSON 500 for every response, the head's size limit.
    app.add_middleware(RequestGuard, max_header_bytes=settings.max_header_bytes)
    # The lifespan's StartupError as the one line the server logs, not a traceback.
    app.add_middleware(StartupMessage)
    # Outermost: every response timed and logged by its route template, with its request id.
    app.add_middleware(AccessLog, metrics=app.state.metrics)
    return app
