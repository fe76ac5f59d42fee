"""The DICOM node on the worklist store: its `commit` (the film's entry and its results'
delivery job, in one transaction) and its delivery JobSource (the store's deliveries table),
so that what the node answers as stored is committed, and an undelivered result survives a
crash or a restart."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from app.dicom.delivery import Job
from app.dicom.failures import ResultsFailure
from app.dicom.ingest import IngestResult, NotStoredError
from app.services.intake import film_record
from app.services.observer import NO_METRICS, Observer
from app.store import WorklistStore

log = logging.getLogger("app.dicom")


class StoreCommit:
    """`commit(result)` for the node's ingest: NotStoredError when the database did not take
    it (the door then answers Out of Resources, and the PACS retries). With `max_pending`
    results waiting for the PACS already, a film's results are not queued: it is listed
    with reason queue_full, and counted in `metrics` (the bound is checked before the
    transaction, so concurrent commits may pass it by a few). In `shadow_mode` (issue 31)
    no film's results are queued, so none can leave for the PACS: the film is listed with
    reason shadow_mode and counted as withheld."""

    def __init__(self, store: WorklistStore, thumbnails: bool = False,
                 max_pending: int | None = None, metrics: Observer = NO_METRICS,
                 shadow_mode: bool = False) -> None:
        self._store = store
        self._thumbnails = thumbnails
        self._max_pending = max_pending
        self._metrics = metrics
        self._shadow_mode = shadow_mode

    def __call__(self, result: IngestResult) -> str | None:
        """Commit `result`; the conflict the store found ("patient": listed in an entry of
        its own; "instance": the film stored before under its SOP Instance UID stands),
        whose results were not queued, or None."""
        sop = result.facts.sop_instance_uid
        try:
            results, refused = self._queueable(result)
            record = replace(film_record(result.facts, result.source, result.received_at,
                                         result.scored_at, result.prediction, result.error,
                                         self._thumbnails),
                             patient_key=result.patient_key, content_hash=result.content_hash,
                             results_error=refused or result.results_error)
            added = self._store.add_received([record], results=results)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("%s not stored: %s", sop, type(exc).__name__)
            raise NotStoredError() from exc
        if refused == ResultsFailure.SHADOW_MODE:
            log.info("%s: results withheld: shadow mode", sop)
            self._metrics.results_withheld()
        elif refused is not None:
            log.warning("%s: results not queued: %d results wait for the PACS already",
                        sop, self._max_pending)
            self._metrics.results_failed(refused)
        conflict = added.conflicts.get(sop)
        return None if conflict is None else conflict.value

    def _queueable(self, result: IngestResult) -> tuple[dict[str, list[bytes]] | None,
                                                        str | None]:
        """The delivery job to queue with the film (its results' recipe), or None and
        shadow_mode in shadow mode, or None and queue_full when `max_pending` results wait
        already."""
        if not result.results:
            return None, None
        if self._shadow_mode:
            return None, ResultsFailure.SHADOW_MODE.value
        if self._max_pending is not None \
                and self._store.pending_results() >= self._max_pending:
            return None, ResultsFailure.QUEUE_FULL.value
        return {result.facts.sop_instance_uid: list(result.results)}, None


class StoreJobSource:
    """The DeliveryWorker's jobs from the store's deliveries table (leased, so that replicas
    share the work)."""

    def __init__(self, store: WorklistStore, lease_seconds: float = 120.0,
                 limit: int = 64) -> None:
        self._store = store
        self._lease = lease_seconds
        self._limit = limit  # jobs leased a pass

    def pending(self, now: datetime) -> Sequence[Job]:
        return [Job(d.id, d.instances, d.attempts, d.received_at)
                for d in self._store.due_deliveries(now, self._lease, self._limit)]

    def done(self, job: Job) -> None:
        self._store.delivery_done(int(job.id))

    def done_all(self, jobs: Sequence[Job]) -> None:
        self._store.deliveries_done([int(job.id) for job in jobs])

    def failed(self, job: Job, next_attempt: datetime, detail: str) -> None:
        self._store.delivery_failed(int(job.id), next_attempt, detail)

    def abandoned(self, job: Job, reason: str) -> None:
        self._store.delivery_abandoned(int(job.id), reason)
