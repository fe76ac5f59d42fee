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

import gc
import logging
import threading
import time
from pathlib import Path

from app.config import Settings
from app.contract.card import CardError, ModelCard
from app.contract.report import read_report
from app.contract.site import (
    CARD_TEXT,
    THRESHOLD_SETTING,
    OperatingPoint,
    SiteProfile,
    operating_point,
)
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
        # The site profile in force (app/contract/site.py), set at each start by `use_site`.
        self.site: SiteProfile | None = None
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

    def operating_point(self, model: ServedModel) -> OperatingPoint:
        """The operating point of `model` and where it comes from, the one rule every door
        asks (app/contract/site.py): Settings.threshold for the default model (one number
        cannot suit two models), else the site profile for the model whose card's name and
        version it names, else the card's."""
        card = model.card
        return operating_point(card.name, card.version, card.threshold, site=self.site,
                               setting=self._threshold_override if model is self.default
                               else None)

    def threshold(self, model: ServedModel) -> float:
        """The decision threshold for `model`: its operating point's."""
        return self.operating_point(model).threshold

    def name_threshold(self, name: str, version: str | int, threshold: float) -> str:
        """How a stored film's threshold is named where films scored at other times are
        listed (the worklist's CSV): "0.8231 (site operating point, validated on 615 films
        on 2026-12-07)" when it is the operating point this server applies to that model
        version now, "0.6245 (the model card's operating point)" when it is the card's, the
        number alone otherwise (a setting or a profile since changed)."""
        for model in [*self.models.values(), *self._earlier.values()]:
            card = model.card
            if (card.name, str(card.version)) != (name, str(version)):
                continue
            point = self.operating_point(model)
            if abs(point.threshold - threshold) <= 1e-9:
                return f"{threshold:.4g} ({point.text})"
            if abs(card.threshold - threshold) <= 1e-9:
                return f"{threshold:.4g} ({CARD_TEXT})"
        return f"{threshold:.4g}"

    def use_site(self, site: SiteProfile | None, *, say: bool = True) -> None:
        """Serve with the site profile `site` (None: none), read from the state folder at
        each start (app/services/site.py load); says which operating point applies once
        the default model is loaded (`say`: False when the app stops and lets it go)."""
        self.site = site
        if say and self.default is not None:
            self._say_operating_point()

    @property
    def warnings(self) -> list[str]:
        """What /readyz reports beside "ready": a site profile this server does not apply
        (another version, or PNEUMONIA_THRESHOLD over it). Empty before the load."""
        site, default = self.site, self.default
        if site is None or default is None:
            return []
        if self.operating_point(default).source == "setting" and \
                site.applies_to(default.card.name, default.card.version):
            return [f"The site profile ({site.threshold:.4g}) of {site.model_name} v"
                    f"{site.model_version} is not applied: {THRESHOLD_SETTING} "
                    f"({self._threshold_override:.4g}) overrides it; unset it to use the "
                    "site operating point."]
        if any(site.applies_to(m.card.name, m.card.version) for m in self.models.values()):
            return []
        validated = f"{site.model_name} v{site.model_version}"
        served = [f"{m.card.name} v{m.card.version}" for m in self.models.values()
                  if m.card.name == site.model_name]
        if not served:
            return [f"The site profile was validated for {validated}, which this server "
                    "does not offer: it is ignored. Run `pneumonia-triage site revert`, or "
                    "offer that model."]
        return [f"The site profile was validated for {validated}, but this server serves "
                f"{served[0]}: the profile is ignored and the card's operating point "
                f"applies. Validate {served[0]} on the site's films and adopt it, or run "
                "`pneumonia-triage site revert`."]

    def _say_operating_point(self) -> None:
        """Which operating point the default model uses, once the site profile changes
        after the load (a catalog shared by several apps, in tests), and what to do about
        a site profile it does not use."""
        model = self.default
        assert model is not None
        log.info("default %s v%s at %s", model.card.name, model.card.version,
                 self._point_said(model))
        for warning in self.warnings:
            log.warning("%s", warning)

    def _point_said(self, model: ServedModel) -> str:
        """'0.3, the site operating point, validated on 624 films on 2026-12-06 (the card's
        0.6245)', as the start's log line says it."""
        point = self.operating_point(model)
        card = "" if point.source == "card" else f" (the card's {model.card.threshold:.4g})"
        return f"{point.threshold:.4g}, {point.text}{card}"

    def scorer(self, model: ServedModel, decoder: Decoder, max_pixels: int, *,
               explanations: Admission | None = None,
               metrics: Observer = NO_METRICS) -> Scorer:
        """The one way every door (the HTTP routes, the DICOM node, the folder command) gets
        its scorer: `model` at the threshold this catalog's rule gives it, decoding in
        `decoder` (films over `max_pixels` refused), heatmaps within `explanations`,
        reporting to `metrics`, holding films to its card's intended population; for the
        default model, with the ages the site has validated besides (Settings.
        intended_age_years: like the threshold, one site's validation is of one model)."""
        point = self.operating_point(model)
        return Scorer(model, point.threshold, decoder, max_pixels, point=point,
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
        _settle_heap()
        self.models = models
        self.default = model
        log.info("models %s loaded and warmed up; default %s v%s at %s; ready",
                 ", ".join(f"{m.card.name} v{m.card.version}" for m in models.values()),
                 model.card.name, model.card.version, self._point_said(model))
        for warning in self.warnings:
            log.warning("%s", warning)

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
        # ASCII digits, written once: "2" only. "02", "٢" or "２" would each be another
        # key for the same version, and another copy of it loaded (memory, per request).
        if base not in self.models or not (version.isascii() and version.isdigit()) \
                or version != str(int(version)):
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


def model_terms(settings: Settings, name: str | None, *, card: ModelCard | None = None,
                site: SiteProfile | None = None
                ) -> tuple[float | None, tuple[float, float] | None]:
    """(threshold, site's ages) for the model called `name` (None: the default), each None
    where its card's own apply: Settings.threshold and Settings.intended_age_years belong
    to the default model (Settings.model_name) alone, since one number cannot suit two
    models and one site's validation is of one model; with its `card`, the site profile
    `site` applies to it when it names the card's name and version (operating_point's
    order). ModelCatalog's rule, for a door that loads no catalog (app/archive/)."""
    default = name in (None, settings.model_name)
    setting = settings.threshold if default else None
    ages = settings.intended_age_years if default else None
    if card is None:
        return setting, ages
    point = model_point(settings, card, site, default=default)
    return (None if point.source == "card" else point.threshold), ages


def model_point(settings: Settings, card: ModelCard, site: SiteProfile | None, *,
                default: bool | None = None) -> OperatingPoint:
    """The operating point of the model `card` describes, and where it comes from, by
    model_terms' rule: Settings.threshold for the default model (`default`; None: the
    card's name is Settings.model_name), then the site profile for the version it names,
    then the card's."""
    if default is None:
        default = card.name == settings.model_name
    return operating_point(card.name, card.version, card.threshold,
                           setting=settings.threshold if default else None, site=site)


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


def _settle_heap() -> None:
    """Collect the garbage of loading, then freeze what is left (`gc.freeze`): the models'
    and the libraries' objects are never scanned again, and every later full collection
    scans only what came after them.

    Why: TensorFlow and the models leave some 300,000 objects that live as long as the
    process, and a full collection walked them all with the interpreter lock held (about
    110 ms for TensorFlow's import alone), stopping every route and association meanwhile.
    The DICOM node collects after every 60 associations (app/dicom/doorman.py), as
    pynetdicom does: at 8 associations that was 14% of the lock's time. Objects frozen here
    that later become unreachable in a reference cycle stay: what the models hold lives as
    long as the process anyway.
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.debug("heap settled: %d objects frozen in %.0f ms", gc.get_freeze_count(),
              (time.perf_counter() - started) * 1000)
