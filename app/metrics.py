"""What the app counts for GET /metrics (Prometheus text format), in a registry of its own
per app (tests run several apps in one process; nothing goes to prometheus-client's global
registry).

The film pipeline, the DICOM node and the HTTP layer report to an `Observer`
(app/services/observer.py, beside the pipeline); this module's `Metrics` is the app's, and the
base `Observer` (NO_METRICS) ignores everything, for the folder command and tools. No web
framework here.

Families (names and labels are a contract: deploy/ alerts and the dashboard use them):

    http_request_duration_seconds{route,method,status_class}   app/web/middleware.py
    pneumonia_films_scored_total{model,flagged}                pipeline (Scorer.prediction)
    pneumonia_films_refused_total{error}                       pipeline decode; DICOM ingest
    pneumonia_guard_warnings_total{reason}                     pipeline, per reason code
    pneumonia_score{model}                                     pipeline, the served probability
    pneumonia_decode_seconds                                   pipeline, around decoder.prepare
    pneumonia_inference_seconds                                pipeline, per model call
    pneumonia_dicom_associations_total{result}                 DICOM SCP, at each one's end
    pneumonia_dicom_ignored_total{kind}                        DICOM ingest: taken, not scored
    pneumonia_dicom_conflicts_total{kind}                      DICOM ingest: patient, instance
    pneumonia_time_to_notification_seconds                     delivery worker
    pneumonia_results_failed_total{reason}                     DICOM ingest, commit, delivery
    pneumonia_results_withheld_total                           DICOM commit, shadow mode
    pneumonia_decode_slots_busy, pneumonia_decode_slots        scrape time: the admission
    pneumonia_results_pending                                  scrape time: the store
    pneumonia_results_pending_limit                            PNEUMONIA_RESULTS_MAX_PENDING
    pneumonia_worklist_entries{status}                         scrape time: the store
    pneumonia_ready                                            scrape time: model and store
    pneumonia_drift_psi{model,statistic}                       scrape time: the drift monitor
    pneumonia_drift_window_films{model}, pneumonia_drift_psi_threshold
    pneumonia_reads{model,version,kind}                        scrape time: live performance
    pneumonia_performance{model,version,figure,bound}          scrape time: from the reads
    pneumonia_performance_validated{model,version,figure,bound}  scrape time: the card's

Decode time is measured in the serving process around the decoder's `prepare`, so films
decoded in worker processes count without prometheus-client's multiprocess mode: a worker
only decodes; everything counted happens in the process that serves /metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from app.contract.drift import PSI_THRESHOLD
from app.dicom.failures import FAILURES
from app.logs import note_film
from app.services.drift import DriftMonitor
from app.services.observer import CONFLICT_KINDS, IGNORED_KINDS, Observer

log = logging.getLogger("app.metrics")

# No `_created` series beside every counter and histogram: nothing here reads them.
disable_created_metrics()

ASSOCIATION_RESULTS = ("released", "aborted", "rejected")
# Seconds: a request or a decode from a few milliseconds (a 64 px film) to the 10 s budget.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
_DECODE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# From a film's arrival to the PACS taking its results: seconds normally, hours in an outage.
_NOTIFY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
_SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 ... 1.0


class Metrics(Observer):
    """The app's families and its drift monitor; `watch` adds what is read at scrape time."""

    def __init__(self, drift_window: int = 500, drift_min_films: int = 100,
                 drift_threshold: float = PSI_THRESHOLD) -> None:
        registry = self.registry = CollectorRegistry()
        self.requests = Histogram(
            "http_request_duration_seconds", "HTTP requests by route template (never the "
            "path), method (a standard one, else other) and status class (2xx, 4xx, ...)",
            ["route", "method", "status_class"], buckets=_REQUEST_BUCKETS, registry=registry)
        self.films_scored = Counter(
            "pneumonia_films_scored_total", "Films the model scored, by model and whether it "
            "flagged them (a film that is not assessable is never flagged)",
            ["model", "flagged"], registry=registry)
        self.films_refused = Counter(
            "pneumonia_films_refused_total", "Films not scored, by error code",
            ["error"], registry=registry)
        self.guard_warnings = Counter(
            "pneumonia_guard_warnings_total", "Reasons the input guard and the assessability "
            "checks gave for scored films, by reason code (one film may give several)",
            ["reason"], registry=registry)
        self.score = Histogram(
            "pneumonia_score", "Probabilities the model served, by model", ["model"],
            buckets=_SCORE_BUCKETS, registry=registry)
        self.decode_seconds = Histogram(
            "pneumonia_decode_seconds", "Decoding one film, in a worker process or inline, "
            "as the serving process waits for it (a refused film included)",
            buckets=_DECODE_BUCKETS, registry=registry)
        self.inference_seconds = Histogram(
            "pneumonia_inference_seconds", "One model call: a film, or a chunk of a batch",
            buckets=_INFERENCE_BUCKETS, registry=registry)
        self.associations = Counter(
            "pneumonia_dicom_associations_total", "DICOM associations by how they ended",
            ["result"], registry=registry)
        for result in ASSOCIATION_RESULTS:
            self.associations.labels(result)
        self.ignored_instances = Counter(
            "pneumonia_dicom_ignored_total", "Instances the DICOM node acknowledged and "
            "ignored (never listed, scored or sent back), by kind: structured_report, "
            "presentation_state, image (not a radiograph), other, own_result",
            ["kind"], registry=registry)
        for kind in IGNORED_KINDS:
            self.ignored_instances.labels(kind)
        self.conflicts = Counter(
            "pneumonia_dicom_conflicts_total", "Films not taken as what their UIDs say: "
            "patient (another patient than the study's: listed apart, status conflict), "
            "instance (a stored SOP Instance UID with other pixels or in another study: "
            "refused); no results are sent for either", ["kind"], registry=registry)
        for kind in CONFLICT_KINDS:
            self.conflicts.labels(kind)
        self.notification_seconds = Histogram(
            "pneumonia_time_to_notification_seconds", "From a film's arrival to the PACS "
            "taking its results", buckets=_NOTIFY_BUCKETS, registry=registry)
        self.results_failures = Counter(
            "pneumonia_results_failed_total", "Scored films whose results (SR, secondary "
            "capture) will not reach the PACS, by reason: identity (a UID or patient "
            "identifier not valid DICOM), build (the results could not be made from the "
            "header), queue_full (PNEUMONIA_RESULTS_MAX_PENDING results waiting); each is "
            "shown on its worklist entry", ["reason"], registry=registry)
        for reason in FAILURES:
            self.results_failures.labels(reason.value)
        self.results_withheld_total = Counter(
            "pneumonia_results_withheld_total", "Scored films whose results (SR, secondary "
            "capture) were kept from the PACS on purpose: PNEUMONIA_SHADOW_MODE is on",
            registry=registry)
        self.results_pending_limit = Gauge(
            "pneumonia_results_pending_limit", "Results that may wait for the PACS at once "
            "(PNEUMONIA_RESULTS_MAX_PENDING); past it a film's results are not made",
            registry=registry)
        self.drift = DriftMonitor(drift_window, drift_min_films, drift_threshold)
        self._scrape = _ScrapeTime(self.drift)
        registry.register(self._scrape)

    @classmethod
    def from_settings(cls, settings: Any) -> Metrics:
        metrics = cls(settings.drift_window, settings.drift_min_films,
                      settings.drift_psi_threshold)
        metrics.results_pending_limit.set(settings.results_max_pending)
        return metrics

    def watch(self, store: Any, decoder: Any, ready: Callable[[], bool],
              performance: Callable[[], Any] | None = None) -> None:
        """Read at every scrape from now on: the worklist store, the decoder's admission,
        whether the app is ready, and the live performance (`performance()`: an
        app/services/performance.py Report over its default window)."""
        self._scrape.store, self._scrape.decoder, self._scrape.ready = store, decoder, ready
        self._scrape.performance = performance

    def text(self) -> bytes:
        """The registry in the Prometheus text format (the store's gauges are read now:
        call it from a worker thread)."""
        return generate_latest(self.registry)

    # --- Observer ---------------------------------------------------------------------

    def decoded(self, seconds: float) -> None:
        self.decode_seconds.observe(seconds)

    def refused(self, code: str) -> None:
        self.films_refused.labels(code).inc()
        note_film(None, code)

    def inferred(self, seconds: float) -> None:
        self.inference_seconds.observe(seconds)

    def scored(self, model: Any, model_input: np.ndarray, prediction: Any,
               statistics: tuple[tuple[str, float], ...] = (),
               digest: bytes | None = None) -> None:
        name = prediction.model_name
        self.films_scored.labels(name, "true" if prediction.flagged else "false").inc()
        self.score.labels(name).observe(prediction.probability)
        for reason in prediction.reasons:
            self.guard_warnings.labels(reason).inc()
        self.drift.observe(model, model_input, prediction.probability, statistics,
                           digest)
        note_film(name, "not_assessable" if not prediction.assessable
                  else "flagged" if prediction.flagged else "not_flagged")

    def association(self, result: str) -> None:
        self.associations.labels(result).inc()

    def ignored(self, kind: str) -> None:
        self.ignored_instances.labels(kind if kind in IGNORED_KINDS else "other").inc()

    def conflict(self, kind: str) -> None:
        if kind in CONFLICT_KINDS:
            self.conflicts.labels(kind).inc()

    def notified(self, seconds: float) -> None:
        self.notification_seconds.observe(max(seconds, 0.0))

    def results_withheld(self) -> None:
        self.results_withheld_total.inc()

    def results_failed(self, reason: str) -> None:
        known = {failure.value for failure in FAILURES}
        self.results_failures.labels(reason if reason in known else "build").inc()


class _ScrapeTime:
    """The gauges computed when scraped: cheap reads of the store (one grouped count and
    one count), the admission's counter, readiness and the drift monitor's PSI."""

    def __init__(self, drift: DriftMonitor) -> None:
        self.drift = drift
        self.store: Any = None
        self.decoder: Any = None
        self.ready: Callable[[], bool] | None = None
        self.performance: Callable[[], Any] | None = None

    def collect(self) -> Iterable[Metric]:
        yield from self._decode_slots()
        yield from self._store()
        yield from self._drift()
        yield from self._performance()

    def _decode_slots(self) -> Iterable[Metric]:
        busy = GaugeMetricFamily("pneumonia_decode_slots_busy", "Films admitted for decoding "
                                 "now (waiting for a worker or decoding)")
        limit = GaugeMetricFamily("pneumonia_decode_slots", "Films that may be admitted at "
                                  "once (PNEUMONIA_MAX_CONCURRENT_DECODES)")
        if self.decoder is not None:
            admission = self.decoder.admission
            busy.add_metric([], admission.busy)
            if admission.limit is not None:
                limit.add_metric([], admission.limit)
        yield busy
        yield limit

    def _store(self) -> Iterable[Metric]:
        pending = GaugeMetricFamily("pneumonia_results_pending", "Results (SR and secondary "
                                    "capture, per film) not yet taken by the PACS; the store "
                                    "is shared, so every replica reports the same number")
        entries = GaugeMetricFamily("pneumonia_worklist_entries", "Worklist entries (studies) "
                                    "by status, shared by every replica", labels=["status"])
        ready = GaugeMetricFamily("pneumonia_ready", "1 when /readyz would answer 200: the "
                                  "default model loaded and the database at the code's schema")
        if self.store is not None and self.ready is not None:
            is_ready = self.ready()
            try:
                counts = self.store.status_counts()
                pending.add_metric([], self.store.pending_results())
            except Exception as exc:  # noqa: BLE001 - the database down: the rest still shown
                log.warning("worklist gauges not read: %s", type(exc).__name__)
                is_ready = False
            else:
                for status, count in counts.items():
                    entries.add_metric([str(status)], count)
            ready.add_metric([], 1.0 if is_ready else 0.0)
        yield pending
        yield entries
        yield ready

    def _drift(self) -> Iterable[Metric]:
        state = self.drift.state()
        psi = GaugeMetricFamily("pneumonia_drift_psi", "Population stability index of each "
                                "statistic over the model's last films against its validation "
                                "films; absent until the window holds enough films",
                                labels=["model", "statistic"])
        films = GaugeMetricFamily("pneumonia_drift_window_films", "Films in the model's drift "
                                  "window", labels=["model"])
        threshold = GaugeMetricFamily("pneumonia_drift_psi_threshold", "PSI over which a "
                                      "statistic counts as drifted (PNEUMONIA_DRIFT_PSI_THRESHOLD)")
        threshold.add_metric([], state.threshold)
        for model in state.models:
            films.add_metric([model.model], model.films)
            for statistic, value in model.psi.items():
                psi.add_metric([model.model, statistic], value)
        yield psi
        yield films
        yield threshold

    def _performance(self) -> Iterable[Metric]:
        """The live figures over the default window of reads, and the card's beside them:
        what the PneumoniaTriageLiveSensitivityLow alert compares. A model with no reads in
        the window has no series."""
        reads = GaugeMetricFamily("pneumonia_reads", "Radiologists' reads in the live "
                                  "performance window (the last reads), by the model that "
                                  "answered the study and kind: judged (assessable, a "
                                  "definite read), indeterminate, not_assessable",
                                  labels=["model", "version", "kind"])
        live = GaugeMetricFamily("pneumonia_performance", "Live sensitivity, specificity, "
                                 "PPV, NPV and flagged rate from the reads in the window: the "
                                 "estimate and its 95% Wilson interval (bound: estimate, "
                                 "low, high); absent while a figure has no reads",
                                 labels=["model", "version", "figure", "bound"])
        validated = GaugeMetricFamily("pneumonia_performance_validated", "The model card's "
                                      "figures at its operating point, with their 95% Wilson "
                                      "intervals", labels=["model", "version", "figure", "bound"])
        if self.performance is not None:
            try:
                report = self.performance()
            except Exception as exc:  # noqa: BLE001 - the database down: the rest still shown
                log.warning("performance gauges not read: %s", type(exc).__name__)
                report = None
            for model in report.models if report is not None else ():
                labels = [model.model or "none", model.version or "none"]
                for kind, count in (("judged", model.judged),
                                    ("indeterminate", model.indeterminate),
                                    ("not_assessable", model.not_assessable)):
                    reads.add_metric([*labels, kind], count)
                _figures(live, labels, model.figures)
                if model.reference is not None:
                    _figures(validated, labels, model.reference.figures)
        yield reads
        yield live
        yield validated


def _figures(family: GaugeMetricFamily, labels: list[str], figures: dict[str, Any]) -> None:
    for name, figure in figures.items():
        if figure.value is None:
            continue
        for bound, value in (("estimate", figure.value), ("low", figure.low),
                             ("high", figure.high)):
            family.add_metric([*labels, name, bound], value)
