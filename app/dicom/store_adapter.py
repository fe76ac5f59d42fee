"""The DICOM node on the worklist store: its `commit` (the film's entry and its results'
delivery job, in one transaction) and its delivery JobSource (the store's deliveries table),
so that what the node answers as stored is committed, and an undelivered result survives a
crash or a restart."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from app.dicom.delivery import Job, encode
from app.dicom.ingest import IngestResult, NotStoredError
from app.services.intake import film_record
from app.store import WorklistStore

log = logging.getLogger("app.dicom")


class StoreCommit:
    """`commit(result)` for the node's ingest: NotStoredError when the database did not take
    it (the door then answers Out of Resources, and the PACS retries)."""

    def __init__(self, store: WorklistStore, thumbnails: bool = False) -> None:
        self._store = store
        self._thumbnails = thumbnails

    def __call__(self, result: IngestResult) -> None:
        record = film_record(result.facts, result.source, result.received_at,
                             result.scored_at, result.prediction, result.error,
                             self._thumbnails)
        results = {result.facts.sop_instance_uid: [encode(ds) for ds in result.results]} \
            if result.results else None
        try:
            self._store.add_films([record], results=results)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("%s not stored: %s", result.facts.sop_instance_uid, type(exc).__name__)
            raise NotStoredError() from exc


class StoreJobSource:
    """The DeliveryWorker's jobs from the store's deliveries table (leased, so that replicas
    share the work)."""

    def __init__(self, store: WorklistStore, lease_seconds: float = 120.0) -> None:
        self._store = store
        self._lease = lease_seconds

    def pending(self, now: datetime) -> Sequence[Job]:
        return [Job(d.id, d.instances, d.attempts, d.received_at)
                for d in self._store.due_deliveries(now, self._lease)]

    def done(self, job: Job) -> None:
        self._store.delivery_done(int(job.id))

    def failed(self, job: Job, next_attempt: datetime, detail: str) -> None:
        self._store.delivery_failed(int(job.id), next_attempt, detail)
