"""Results to the PACS: C-STORE to `results_destination` (AE@host:port) and/or STOW-RS to
`results_dicomweb_url`, retried with exponential back-off until they are taken.

The queue itself is not here: a `DeliveryWorker` takes its jobs from a `JobSource`, which
the app backs with the worklist store's database, so that a result survives a restart and
an undelivered one can be shown.

A job holds what its results are built from (a recipe, app/dicom/recipe.py), built at each
attempt by the worker's `build`; a job that cannot be built is abandoned (its film listed
with the reason, counted), never retried for ever. A job is delivered when every
destination took every instance (success, or a warning status); anything else leaves the
whole job for a later attempt. Sending again is harmless: the results' UIDs and content are
fixed by the recipe (app/dicom/results.py), so a PACS keeps one.

Each pass takes the jobs due and shares them among `associations` threads; each thread
builds its jobs and sends them all in one association per destination (`Sender.many`), and
the jobs delivered leave the queue together (`JobSource.done_all`, one transaction). The
results' C-STOREs go out with TCP_NODELAY: pynetdicom leaves Nagle's algorithm on, so the
data set after each small command PDU waited for the peer's delayed ACK, about 40 ms a
C-STORE (worth proposing upstream: `AssociationSocket` could set it on every socket).
"""

from __future__ import annotations

import io
import json
import logging
import random
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pydicom
from pydicom import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from app.dicom.failures import BuildFailed, BuildUnavailable, ResultsFailure, ResultsNotMade
from app.dicom.stow import FAILED_SOP_SEQUENCE, multipart_body
from app.services.observer import NO_METRICS, Observer

log = logging.getLogger("app.dicom.delivery")

# C-STORE statuses under which the receiver has kept the instance: success, and the
# warnings of PS3.4 Table B.2-1 (coercion, elements discarded, does not match SOP class).
_KEPT = {0x0000, 0xB000, 0xB006, 0xB007}


@dataclass(frozen=True)
class Destination:
    """A storage SCP: its AE title, host and port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """'PACS@10.0.0.5:4242' -> Destination; ValueError for anything else."""
        ae_title, at, address = text.partition("@")
        host, colon, port = address.rpartition(":")
        if not (at and colon and ae_title.strip() and host and port.isdigit()) \
                or len(ae_title) > 16 or not 0 < int(port) < 65536:
            raise ValueError(f"a results destination is AE@host:port, not {text!r}")
        return cls(ae_title.strip(), host, int(port))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to; `detail` is for the person looking at the worklist."""

    delivered: bool
    detail: str


Sender = Callable[[Sequence[Dataset]], Outcome]
# A job's parts -> the instances to send (app/dicom/results.py ResultBuilder.build_job).
Build = Callable[[Sequence[bytes]], Sequence[Dataset]]


def send_many(sender: Sender, jobs: Sequence[Sequence[Dataset]]) -> list[Outcome]:
    """Each job's instances sent, one Outcome a job: in one association (or request) where
    the sender can (its `many`), else one call a job."""
    many = getattr(sender, "many", None)
    if many is not None:
        return many(jobs)
    return [sender(datasets) for datasets in jobs]


def no_delay(sock: socket.socket | None) -> None:
    """TCP_NODELAY on a connection pynetdicom made (best effort: a socket already closed, or
    one that is not TCP, is left as it is)."""
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def encode(ds: Dataset) -> bytes:
    """A result as Part 10 bytes: how a job keeps it (the app's store holds these)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def decode(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def part10(parts: Sequence[bytes]) -> list[Dataset]:
    """A job's parts read as DICOM Part 10 instances (what jobs held before recipes)."""
    return [decode(data) for data in parts]


class StoreScu:
    """A sender that C-STOREs results to `destination`: one job's instances (`__call__`), or
    many jobs' in one association (`many`), with TCP_NODELAY."""

    def __init__(self, destination: Destination, calling_ae: str = "TRIAGE",
                 timeout: float = 30.0) -> None:
        self.destination = destination
        self.calling_ae = calling_ae
        self.timeout = timeout

    def __call__(self, datasets: Sequence[Dataset]) -> Outcome:
        return self.many([datasets])[0]

    def many(self, jobs: Sequence[Sequence[Dataset]]) -> list[Outcome]:
        """An Outcome for each job, every job in one association: a job refused (a status
        other than success or a warning) leaves the others to go on; an association that
        cannot be made, or is lost, fails the jobs it had not carried yet."""
        destination = self.destination
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        for sop_class in dict.fromkeys(str(ds.SOPClassUID) for job in jobs for ds in job):
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian,
                                                 ImplicitVRLittleEndian])
        assoc = ae.associate(destination.host, destination.port,
                             ae_title=destination.ae_title)
        if not assoc.is_established:
            why = "rejected the association" if assoc.is_rejected else "did not answer"
            return [Outcome(False, f"{destination} {why}")] * len(jobs)
        no_delay(getattr(assoc.dul.socket, "socket", None))
        outcomes: list[Outcome] = []
        try:
            for datasets in jobs:
                outcomes.append(self._send(assoc, datasets) if assoc.is_established else
                                Outcome(False, f"{destination} dropped the association"))
        finally:
            if assoc.is_established:
                assoc.release()
        return outcomes

    def _send(self, assoc, datasets: Sequence[Dataset]) -> Outcome:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = status.get("Status") if status else None
            if code not in _KEPT:
                shown = "no answer" if code is None else f"status 0x{code:04X}"
                return Outcome(False, f"{self.destination} refused a result ({shown})")
        return Outcome(True, f"stored at {self.destination}")


def store_scu(destination: Destination, calling_ae: str = "TRIAGE",
              timeout: float = 30.0) -> StoreScu:
    """A sender that C-STOREs the datasets to `destination` in one association (and many
    jobs' in one: `StoreScu.many`)."""
    return StoreScu(destination, calling_ae, timeout)


def stow_rs(url: str, timeout: float = 30.0, token: str | None = None) -> Sender:
    """A sender that POSTs the datasets to a DICOMweb STOW-RS URL (.../studies)."""

    def send(datasets: Sequence[Dataset]) -> Outcome:
        body, content_type = multipart_body([encode(ds) for ds in datasets])
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": content_type, "Accept": "application/dicom+json"})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            return Outcome(False, f"{url} answered HTTP {exc.code}")
        except OSError as exc:
            return Outcome(False, f"{url} did not answer ({type(exc).__name__})")
        if status != 200 and _failed(answer):
            return Outcome(False, f"{url} refused a result (HTTP {status})")
        return Outcome(True, f"stored at {url}")

    return send


def _failed(answer: bytes) -> bool:
    try:
        return bool(json.loads(answer).get(FAILED_SOP_SEQUENCE, {}).get("Value"))
    except (ValueError, AttributeError):
        return True


class Every:
    """One sender for several destinations: a job is delivered when all of them took its
    results (each destination gets the jobs the ones before it took)."""

    def __init__(self, senders: Sequence[Sender]) -> None:
        self.senders = list(senders)

    def __call__(self, datasets: Sequence[Dataset]) -> Outcome:
        return self.many([datasets])[0]

    def many(self, jobs: Sequence[Sequence[Dataset]]) -> list[Outcome]:
        outcomes = [Outcome(True, "") for _ in jobs]
        for sender in self.senders:
            going = [k for k, outcome in enumerate(outcomes) if outcome.delivered]
            if not going:
                break
            for k, outcome in zip(going, send_many(sender, [jobs[k] for k in going])):
                done = outcomes[k].detail
                outcomes[k] = outcome if not outcome.delivered else Outcome(
                    True, f"{done}; {outcome.detail}" if done else outcome.detail)
        return outcomes


def every(senders: Sequence[Sender]) -> Every:
    """One sender for several destinations: delivered when all of them took the results."""
    return Every(senders)


def senders_from_settings(settings, calling_ae: str | None = None) -> Sender | None:
    """The sender the settings describe (results_destination, results_dicomweb_url), or
    None when results stay on the worklist."""
    senders: list[Sender] = []
    if settings.results_destination:
        senders.append(store_scu(Destination.parse(settings.results_destination),
                                 calling_ae or settings.dicom_ae_title))
    if settings.results_dicomweb_url:
        senders.append(stow_rs(settings.results_dicomweb_url))
    return every(senders) if senders else None


@dataclass(frozen=True)
class Job:
    """One film's results to deliver: the parts they are built from (a recipe; Part 10 bytes,
    `encode`, in jobs queued before recipes), and failed attempts so far."""

    id: int | str
    instances: tuple[bytes, ...] = field(repr=False)
    attempts: int = 0
    received_at: datetime | None = None  # the film's arrival (aware): time to notification


class JobSource(Protocol):
    """Where a DeliveryWorker finds its work (the app: a table in the worklist database).

    `pending(now)` returns jobs due at `now` (next attempt <= now), oldest first, and should
    lease them (push their next attempt a little ahead) so that a second worker, in another
    replica, does not take them at the same moment; `done(job)` removes a delivered job
    (and `done_all(jobs)`, where a source has it, several in one go); `failed(job,
    next_attempt, detail)` keeps it with one more attempt counted, due again at
    `next_attempt`, and `detail` saying why for the worklist page; `abandoned(job, reason)`
    removes a job that can never be delivered (its results cannot be built), its film
    marked with `reason` (app/dicom/failures.py) for the worklist.
    """

    def pending(self, now: datetime) -> Sequence[Job]: ...

    def done(self, job: Job) -> None: ...

    def failed(self, job: Job, next_attempt: datetime, detail: str) -> None: ...

    def abandoned(self, job: Job, reason: str) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Seconds before attempt n+1 after n failures: first, doubling, at most `longest`,
    each spread by +-`jitter` so that many results queued during an outage do not all
    come back at the same second."""

    first: float = 5.0
    longest: float = 600.0
    jitter: float = 0.1

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        base = min(self.first * 2 ** max(attempts - 1, 0), self.longest)
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return base * (1 + spread)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Jobs of a pass an association carries before a second one is opened beside it.
JOBS_PER_ASSOCIATION = 4


class DeliveryWorker:
    """A thread that delivers due jobs: at once when woken (`wake()`, after a commit), and
    every `poll_seconds` otherwise (retries, and jobs another process queued). Each pass
    shares the due jobs among up to `associations` threads (one for every
    JOBS_PER_ASSOCIATION jobs), each building its share and sending it in one association
    (module docstring)."""

    def __init__(self, source: JobSource, send: Sender, backoff: Backoff = Backoff(),
                 poll_seconds: float = 1.0,
                 clock: Callable[[], datetime] = _utcnow,
                 metrics: Observer = NO_METRICS, build: Build = part10,
                 associations: int = 1) -> None:
        self._source = source
        self._metrics = metrics
        self._send = send
        self._build = build
        self._backoff = backoff
        self._poll = poll_seconds
        self._clock = clock
        self.associations = max(1, associations)
        self._senders = ThreadPoolExecutor(self.associations,
                                           thread_name_prefix="dicom-delivery-send") \
            if self.associations > 1 else None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DeliveryWorker:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dicom-delivery", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the jobs in hand (at most one association's timeouts)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._senders is not None:
            self._senders.shutdown(wait=False)

    def run_once(self) -> int:
        """Try every due job once; how many were delivered."""
        jobs = list(self._source.pending(self._clock()))
        if not jobs or self._stop.is_set():
            return 0
        # A few jobs go in one association: opening one costs more than sending a job.
        count = min(self.associations, -(-len(jobs) // JOBS_PER_ASSOCIATION))
        shares = [jobs[k::count] for k in range(count)]
        if self._senders is None or len(shares) == 1:
            sent = [self._deliver(share) for share in shares]
        else:
            sent = list(self._senders.map(self._deliver, shares))
        delivered = [job for share in sent for job, outcome in share if outcome.delivered]
        self._done(delivered)
        for share in sent:
            for job, outcome in share:
                if outcome.delivered:
                    if job.received_at is not None:
                        self._metrics.notified(
                            (self._clock() - job.received_at).total_seconds())
                    log.info("results of job %s delivered: %s", job.id, outcome.detail)
                else:
                    self._failed(job, outcome)
        return len(delivered)

    def _deliver(self, jobs: list[Job]) -> list[tuple[Job, Outcome]]:
        """`jobs` built and sent in one association (a job that cannot be built is
        abandoned here); each job sent with its Outcome."""
        built: list[tuple[Job, Sequence[Dataset]]] = []
        unbuilt: list[tuple[Job, Outcome]] = []  # to try again: not the job's fault
        for job in jobs:
            if self._stop.is_set():
                break
            try:
                built.append((job, self._build(job.instances)))
            except BuildUnavailable as exc:
                unbuilt.append((job, Outcome(False, str(exc))))
            except Exception as exc:  # noqa: BLE001 - never deliverable: listed, counted
                self._abandon(job, exc)
        if not built:
            return unbuilt
        try:
            outcomes = send_many(self._send, [datasets for _, datasets in built])
        except Exception as exc:  # noqa: BLE001 - a bad job must not stop the others
            # By type only: a traceback of encoding a result quotes its values.
            log.warning("delivery of jobs %s failed unexpectedly (%s)",
                        ", ".join(str(job.id) for job, _ in built), type(exc).__name__)
            outcomes = [Outcome(False, f"unexpected error ({type(exc).__name__})")] * len(built)
        return unbuilt + [(job, outcome) for (job, _), outcome in zip(built, outcomes)]

    def _done(self, jobs: list[Job]) -> None:
        """The delivered jobs out of the queue: together where the source can."""
        if not jobs:
            return
        done_all = getattr(self._source, "done_all", None)
        if done_all is not None:
            done_all(jobs)
            return
        for job in jobs:
            self._source.done(job)

    def _failed(self, job: Job, outcome: Outcome) -> None:
        delay = self._backoff.delay(job.attempts + 1)
        self._source.failed(job, self._clock() + timedelta(seconds=delay), outcome.detail)
        log.warning("results of job %s not delivered (attempt %d): %s; again in %.0f s",
                    job.id, job.attempts + 1, outcome.detail, delay)

    def _abandon(self, job: Job, exc: Exception) -> None:
        """A job whose results cannot be built: removed, its film listed with the reason,
        counted; logged by reason, exception type and tag (never a traceback: it would
        quote the header's values)."""
        if isinstance(exc, ResultsNotMade):
            reason, detail = exc.reason, str(exc)
        else:
            reason = ResultsFailure.BUILD
            detail = exc.kind if isinstance(exc, BuildFailed) else type(exc).__name__
        self._source.abandoned(job, reason.value)
        self._metrics.results_failed(reason.value)
        log.warning("results of job %s cannot be built, never delivered: %s", job.id, detail)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            delivered = 0
            try:
                delivered = self.run_once()
            except Exception:  # noqa: BLE001 - the source (database) failing: try again
                log.exception("delivery pass failed; trying again")
            if not delivered:  # a pass that delivered goes on at once: more may be due
                self._wake.wait(self._poll)
