"""Wiring only: create the app, start loading the models in the background, add the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.config import Settings, get_settings
from app.contract.assessability import LOOK, NOT_ASSESSABLE
from app.http_errors import install_error_handlers
from app.quiet import silence_decoder_chatter
from app.routes import docs, health, pages, predict
from app.security import RequestGuard
from app.services.catalog import ModelCatalog
from app.services.decode_pool import DecodePool, InlineDecoder


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # Not awaited: the server accepts connections (and answers /healthz) while it loads.
    app.state.catalog.start(settings)
    if settings.decode_workers:
        app.state.decoder = DecodePool(settings.decode_workers,
                                       timeout=settings.decode_timeout_seconds,
                                       memory_mb=settings.decode_memory_mb,
                                       admitted=settings.max_concurrent_decodes)
    try:
        yield
    finally:
        app.state.decoder.close()
        app.state.decoder = InlineDecoder(settings.max_concurrent_decodes)


def create_app(settings: Settings | None = None) -> FastAPI:
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
    app.state.catalog = ModelCatalog()
    # Until the lifespan starts the worker pool (or for good, with decode_workers = 0).
    app.state.decoder = InlineDecoder(settings.max_concurrent_decodes)
    app.state.templates = Jinja2Templates(directory=settings.templates_dir)
    # The texts of films that are not assessable: one home (app/contract/assessability.py).
    app.state.templates.env.globals.update(look_text=LOOK, not_assessable=NOT_ASSESSABLE)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=settings.static_dir), name="static")
    figures = settings.model_dir / "figures"
    if figures.is_dir():
        app.mount("/report/figures", StaticFiles(directory=figures), name="figures")
    app.include_router(predict.router)
    app.include_router(pages.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    if settings.cors_origins:  # closed unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(RequestGuard)  # outermost: headers and a JSON 500 for every response
    return app
