"""The DICOM node as the app runs it: one ingest for C-STORE and STOW-RS, the Storage SCP,
and the delivery worker, started and stopped together from the app's lifespan.

    node = DicomNode.from_settings(settings, catalog, decoder, commit=..., jobs=...)
    node.start()            # lifespan start; app.state.dicom_ingest = node.ingest
    ...
    node.stop()             # lifespan end

`commit(result)` is the worklist store's transaction (the film's entry, and a delivery job
holding `result.results`, the recipe of its SR and secondary capture, when there are
results); after it returns, the node wakes its delivery worker, which builds them from the
recipe and sends them. `jobs` is the store-backed JobSource.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from app.config import Settings
from app.dicom.build_process import ProcessBuilder
from app.dicom.delivery import DeliveryWorker, JobSource, Sender, senders_from_settings
from app.dicom.identity import install_secret
from app.dicom.ingest import Commit, IngestResult, ScoringIngest, catalog_scorer
from app.dicom.recipe import Judgement
from app.dicom.results import Explainer, ResultBuilder
from app.dicom.scp import StorageSCP
from app.memory import BodyBudget
from app.services.catalog import ModelCatalog
from app.services.decode_pool import Decoder
from app.services.observer import NO_METRICS, Observer

log = logging.getLogger("app.dicom")


def catalog_explainer(catalog: ModelCatalog) -> Explainer:
    """The heat map of a judgement's model input, drawn by the model that made it when the
    catalog still serves that version (its occlusion map, app/services/occlusion.py); None
    otherwise, or for a model whose card describes no map."""

    def explain(judgement: Judgement, model_input: np.ndarray) -> np.ndarray | None:
        model = catalog.models.get(judgement.model_name)
        if model is None or str(model.card.version) != judgement.model_version \
                or not model.can_explain:
            return None
        return model.explain(model_input[None])[1][0]

    return explain


class DicomNode:
    def __init__(self, ingest: ScoringIngest, scp: StorageSCP | None,
                 worker: DeliveryWorker | None, results: ResultBuilder | None,
                 builder: ProcessBuilder | None = None) -> None:
        self.ingest = ingest
        self.scp = scp
        self.worker = worker
        self._results = results
        self._builder = builder

    @classmethod
    def from_settings(cls, settings: Settings, catalog: ModelCatalog, decoder: Decoder,
                      commit: Commit, jobs: JobSource | None = None,
                      sender: Sender | None = None,
                      metrics: Observer = NO_METRICS,
                      budget: BodyBudget | None = None) -> DicomNode:
        """The node the settings describe. Results are made only when they have somewhere
        to go (results_destination or results_dicomweb_url, and a job source to queue
        them in); the SCP only when dicom_port is set; STOW-RS uses `ingest` either way.
        Films, associations and deliveries are reported to `metrics`; the data sets the
        SCP is receiving count in `budget` (the app's one budget for bodies in flight).
        Films carry the patient key of the install's secret (app/dicom/identity.py:
        StartupError when there is none and the state folder cannot hold one). In shadow
        mode no delivery worker runs: results made are withheld where they would be queued
        (StoreCommit), and any queued before wait until shadow mode is left."""
        sender = sender or senders_from_settings(settings)
        results: ResultBuilder | None = None
        builder: ProcessBuilder | None = None
        worker: DeliveryWorker | None = None
        if sender is not None and jobs is not None:
            # The ingest makes each film's recipe; the worker builds the results from it,
            # the secondary capture's heat map drawn then by the model that judged it, the
            # SR and the capture themselves in a process of their own (build_process.py).
            results = ResultBuilder(settings.results_secondary_capture,
                                    explainer=catalog_explainer(catalog))
            if not settings.shadow_mode:
                builder = ProcessBuilder(results)
                worker = DeliveryWorker(jobs, sender, metrics=metrics,
                                        build=builder.build_job,
                                        associations=settings.results_associations)

        def commit_then_wake(result: IngestResult) -> str | None:
            conflict = commit(result)
            if worker is not None and result.results and conflict is None:
                worker.wake()
            return conflict

        ingest = ScoringIngest(catalog_scorer(catalog, decoder, settings.max_image_pixels,
                                              metrics), commit_then_wake, results,
                               secret=install_secret(settings), metrics=metrics,
                               keep_display=settings.worklist_thumbnails)
        return cls(ingest, StorageSCP.from_settings(settings, ingest, metrics, budget),
                   worker, results, builder)

    def start(self) -> DicomNode:
        """Bind the SCP (OSError when its port is taken) and start delivering; the
        results' one-time warm-up runs beside, so start-up does not wait for it."""
        if self.scp is not None:
            try:
                self.scp.start()
            except BaseException:
                if self._builder is not None:  # nothing started: nothing left behind
                    self._builder.close()
                raise
        warm = self._builder or self._results
        if warm is not None:
            threading.Thread(target=warm.warm_up, name="dicom-warm-up", daemon=True).start()
        if self.worker is not None:
            self.worker.start()
        return self

    def stop(self) -> None:
        if self.scp is not None:
            self.scp.stop()
        if self.worker is not None:
            self.worker.stop()
        if self._builder is not None:
            self._builder.close()
