"""Wiring only: create the app, load the model once in the lifespan, add the routers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.routes import health, pages, predict
from app.services.registry import LoadedModel, find_model

log = logging.getLogger("app")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    path = find_model(settings.model_dir, settings.model_name, settings.model_version)
    model = await run_in_threadpool(LoadedModel, path)
    await run_in_threadpool(model.warm_up)
    app.state.model = model
    app.state.report = _read_report(settings.model_dir / "report.json")
    log.info("model %s v%s loaded from %s", model.card.name, model.card.version, path)
    yield
    app.state.model = None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Pediatric chest X-ray pneumonia triage",
        description="Upload a chest X-ray, get a pneumonia probability. "
                    "A prioritisation aid, not a diagnosis.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.model = None
    app.state.report = None
    app.state.templates = Jinja2Templates(directory=settings.templates_dir)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=settings.static_dir), name="static")
    figures = settings.model_dir / "figures"
    if figures.is_dir():
        app.mount("/report/figures", StaticFiles(directory=figures), name="figures")
    app.include_router(predict.router)
    app.include_router(pages.router)
    app.include_router(health.router)
    return app


def _read_report(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None
