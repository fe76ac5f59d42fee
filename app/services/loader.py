"""The process's one model, loaded once in a background thread behind a readiness check.

The server accepts connections at once: /healthz answers while the model loads and warms up,
/readyz and /predict answer 503 until it is ready. A model that cannot be served (no folder,
a card that fails validation, a damaged SavedModel) is logged in one line and the app stays
not ready rather than crash-looping.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from app.config import Settings
from app.services.registry import LoadedModel, find_model

log = logging.getLogger("app.model")


class ModelSlot:
    def __init__(self) -> None:
        self.model: LoadedModel | None = None
        self.report: dict | None = None
        self.failure: str | None = None  # why the model will never be ready

    @property
    def loading(self) -> bool:
        return self.model is None and self.failure is None

    def start(self, settings: Settings) -> threading.Thread:
        thread = threading.Thread(target=self.load, args=(settings,), name="model-loader",
                                  daemon=True)
        thread.start()
        return thread

    def load(self, settings: Settings) -> None:
        try:
            path = find_model(settings.model_dir, settings.model_name, settings.model_version)
            model = LoadedModel(path)
            model.warm_up()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said once
            self.failure = _first_line(exc)
            log.error("model not loaded, /readyz stays 503: %s", self.failure)
            return
        self.report = _read_report(settings.model_dir / "report.json")
        self.model = model
        log.info("model %s v%s loaded from %s and warmed up; ready",
                 model.card.name, model.card.version, path)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _read_report(path: Path) -> dict | None:
    """The evaluation report is shown, not needed to serve: a broken one is logged, not fatal."""
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError) as exc:
        log.warning("evaluation report %s not shown: %s", path, _first_line(exc))
        return None
