"""The catalog: the process's models, loaded once in a background thread behind readiness,
and the one rule for which threshold applies.

One model is the default (Settings.model_name); others found in MODEL_DIR can be offered
beside it (Settings.offered_models) and are asked for by name. The app is ready when the
default is: an offered model that fails to load is logged and not offered.

The server accepts connections at once: /healthz answers while the model loads and warms up,
/readyz and /predict answer 503 until it is ready. A model that cannot be served (no folder,
a card that fails validation, a damaged SavedModel) is logged in one line and the app stays
not ready rather than crash-looping.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from app.config import Settings
from app.contract.card import CardError
from app.contract.report import read_report
from app.services.decode_pool import Admission, Decoder
from app.services.observer import NO_METRICS, Observer
from app.services.pipeline import Scorer
from app.services.saved_model import ServedModel, available_models, find_model

log = logging.getLogger("app.model")


class ModelCatalog:
    def __init__(self) -> None:
        self.default: ServedModel | None = None  # the default model, once ready
        self.models: dict[str, ServedModel] = {}  # every model offered, default first
        self.report: dict | None = None
        self.failure: str | None = None  # why the model will never be ready
        self._threshold_override: float | None = None
        # Settings.intended_age_years: the default model's widened ages, as its threshold.
        self.site_age_years: tuple[float, float] | None = None
        # Earlier versions of the offered models, asked as NAME/VERSION and loaded on first
        # use (most requests never ask one; loading them all would slow every start).
        self.versions: dict[str, list[int]] = {}  # name -> every version in MODEL_DIR
        self._earlier: dict[str, ServedModel] = {}
        self._earlier_lock = threading.Lock()
        self._model_dir: Path | None = None
        self._wait_ms = 0.0

    @property
    def loading(self) -> bool:
        return self.default is None and self.failure is None

    def threshold(self, model: ServedModel) -> float:
        """The decision threshold for `model`: Settings.threshold overrides the default
        model's card (one number cannot suit two models); every other model uses its card's
        operating point."""
        if model is self.default and self._threshold_override is not None:
            return self._threshold_override
        return model.card.threshold

    def scorer(self, model: ServedModel, decoder: Decoder, max_pixels: int, *,
               explanations: Admission | None = None,
               metrics: Observer = NO_METRICS) -> Scorer:
        """The one way every door (the HTTP routes, the DICOM node, the folder command) gets
        its scorer: `model` at the threshold this catalog's rule gives it, decoding in
        `decoder` (films over `max_pixels` refused), heatmaps within `explanations`,
        reporting to `metrics`, holding films to its card's intended population; for the
        default model, with the ages the site has validated besides (Settings.
        intended_age_years: like the threshold, one site's validation is of one model)."""
        return Scorer(model, self.threshold(model), decoder, max_pixels,
                      explanations=explanations, metrics=metrics,
                      site_age_years=self.site_age_years if model is self.default else None)

    def start(self, settings: Settings) -> threading.Thread:
        thread = threading.Thread(target=self.load, args=(settings,), name="model-loader",
                                  daemon=True)
        thread.start()
        return thread

    def load(self, settings: Settings) -> None:
        self._threshold_override, self.site_age_years = model_terms(settings,
                                                                    settings.model_name)
        try:
            model = load_model(settings.model_dir, settings.model_name, settings.model_version)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said once
            self.failure = _first_line(exc)
            log.error("model not loaded, /readyz stays 503: %s", self.failure)
            return
        models = {model.card.name: model}
        for name in _offered(settings):
            try:
                models[name] = load_model(settings.model_dir, name, None)
            except Exception as exc:  # noqa: BLE001 - the default still serves
                log.warning("model %s not offered: %s", name, _first_line(exc))
        wait_ms = self._wait_ms = _batch_wait_ms(settings)
        self._model_dir = settings.model_dir
        self.versions = {name: sorted(versions) for name, versions
                         in available_models(settings.model_dir).items() if name in models}
        if wait_ms:
            for loaded in models.values():
                loaded.micro_batch(wait_ms / 1000)
            log.info("micro-batching on: requests within %.1f ms share a model call", wait_ms)
        if self.site_age_years is not None:
            log.info("intended ages of %s: its card's %s and this site's %s years "
                     "(PNEUMONIA_INTENDED_AGE_YEARS)", model.card.name,
                     model.card.intended_population.age_years, list(self.site_age_years))
        self.report = _read_report(settings.model_dir / "report.json")
        self.models = models
        self.default = model
        log.info("models %s loaded and warmed up; default %s v%s; ready",
                 ", ".join(f"{m.card.name} v{m.card.version}" for m in models.values()),
                 model.card.name, model.card.version)

    def choose(self, name: str | None) -> ServedModel | None:
        """The model called `name` (None: the default; NAME/VERSION: an earlier version
        already loaded by `earlier`), or None if it is not offered or not loaded yet."""
        if name is None:
            return self.default
        return self.models.get(name) or self._earlier.get(name)

    def earlier(self, name: str) -> ServedModel | None:
        """Version VERSION of an offered model asked as NAME/VERSION (`?model=pneumonia/2`),
        loaded and warmed up on first use (seconds: call it off the event loop) and kept;
        None for a model not offered or a version not in MODEL_DIR. Its card's threshold
        and ages apply (Settings.threshold and intended_age_years are the default's)."""
        base, _, version = name.partition("/")
        if base not in self.models or not version.isdigit():
            return None
        number = int(version)
        if self.models[base].card.version == number:
            return self.models[base]
        if number not in self.versions.get(base, ()) or self._model_dir is None:
            return None
        with self._earlier_lock:
            if name not in self._earlier:
                model = load_model(self._model_dir, base, number)
                if self._wait_ms:
                    model.micro_batch(self._wait_ms / 1000)
                self._earlier[name] = model
                log.info("model %s v%s loaded on first use", base, number)
        return self._earlier[name]


def model_terms(settings: Settings, name: str | None
                ) -> tuple[float | None, tuple[float, float] | None]:
    """(threshold, site's ages) that the settings set for the model called `name` (None:
    the default), each None where its card's own apply: Settings.threshold and
    Settings.intended_age_years belong to the default model (Settings.model_name) alone,
    since one number cannot suit two models and one site's validation is of one model.
    ModelCatalog's rule, for a door that loads no catalog (app/archive/)."""
    if name not in (None, settings.model_name):
        return None, None
    return settings.threshold, settings.intended_age_years


def _batch_wait_ms(settings: Settings) -> float:
    if settings.batch_wait_ms is not None:
        return settings.batch_wait_ms
    import tensorflow as tf  # already imported by the model load

    return 2.0 if tf.config.list_physical_devices("GPU") else 0.0


def load_model(model_dir: Path, name: str, version: int | None) -> ServedModel:
    """Model `name` (at `version`, None = newest) loaded, checked and warmed up; raises
    ModelNotFoundError, CardError or TensorFlow's errors."""
    model = ServedModel(find_model(model_dir, name, version))
    if model.card.name != name:  # ?model=NAME and the chooser go by the card's name
        raise CardError("name", f"the card says {model.card.name!r}, its folder {name!r}")
    model.warm_up()
    return model


def _offered(settings: Settings) -> list[str]:
    """The other models to offer, in a stable order, the default left out."""
    names = settings.offered_models
    if names is None:
        names = sorted(available_models(settings.model_dir))
    return [name for name in names if name != settings.model_name]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _read_report(path: Path) -> dict | None:
    """The evaluation report is shown, not needed to serve: one that is unreadable or fails
    its schema is logged, not fatal. The page gets it as the JSON it was written as."""
    try:
        return read_report(path).model_dump(mode="json", exclude_unset=True) \
            if path.is_file() else None
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        log.warning("evaluation report %s not shown: %s", path, _first_line(exc))
        return None
