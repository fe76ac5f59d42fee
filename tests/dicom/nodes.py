"""The DICOM node under test: a scorer on the committed model's card with a stand-in for the
network (fast lanes), a commit that records, an in-memory job source, the SCP on a free
loopback port, and a pynetdicom SCU to talk to it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from app.contract.card import read_card
from app.dicom.delivery import Job, encode
from app.dicom.ingest import IngestResult, Received, ScoringIngest
from app.dicom.scp import ScpOptions, StorageSCP
from app.memory import BodyBudget
from app.services.decode_pool import Decoder, InlineDecoder
from app.services.pipeline import Scorer
from tests.builders.dicom import file_bytes
from tests.servers import REPO, free_port

MODEL_DIR = REPO / "models" / "pneumonia" / "2"
NODE_AE = "TRIAGE"
PACS_AE = "PACS"


class StandInModel:
    """The committed model's card and input contract, answering `probability` for every
    film without TensorFlow: the DICOM tests exercise the node, not the network."""

    def __init__(self, probability: float = 0.9, can_explain: bool = True) -> None:
        self.card = read_card(MODEL_DIR)
        self.guard = None
        self.detector = None  # no polarity/rotation check: generated films are judged
        self.probability = probability
        self.can_explain = can_explain

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.full(len(images), self.probability, dtype=np.float32)

    predict_shared = predict

    def explain(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = self.card.input_size
        heat = np.tile(np.linspace(0, 1, width, dtype=np.float32), (len(images), height, 1))
        return self.predict(images), heat


def stand_in_scorer(probability: float = 0.9, decoder: Decoder | None = None,
                    can_explain: bool = True) -> Scorer:
    model = StandInModel(probability, can_explain)
    return Scorer(model, model.card.threshold, decoder or InlineDecoder(),  # type: ignore[arg-type]
                  max_pixels=50_000_000)


@dataclass
class Recorder:
    """A commit that keeps what it is given (the worklist store's stand-in)."""

    committed: list[IngestResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, result: IngestResult) -> None:
        with self.lock:
            self.committed.append(result)


def scoring_ingest(probability: float = 0.9, **options) -> tuple[ScoringIngest, Recorder]:
    recorder = Recorder()
    scorer = stand_in_scorer(probability)
    return ScoringIngest(lambda: scorer, recorder, **options), recorder


def stand_in_explainer(judgement, model_input: np.ndarray) -> np.ndarray:
    """The stand-in model's heat map of a model input, as the node's delivery worker draws
    it (app/dicom/node.py catalog_explainer): (h, w) in 0-1."""
    return StandInModel().explain(model_input[None])[1][0]


def built(result: IngestResult) -> tuple[Dataset, ...]:
    """The SR and secondary capture the delivery worker builds from an ingest's `results`
    (its recipe), the heat map drawn then by the stand-in model: () when it made none."""
    from app.dicom.results import ResultBuilder

    builder = ResultBuilder(explainer=stand_in_explainer)
    return builder.build_job(result.results) if result.results else ()


def received(film: Dataset) -> Received:
    """`film` as a door hands it to the ingest: its Part 10 bytes and their header."""
    return Received.read(file_bytes(film))


class MemoryJobSource:
    """A JobSource in memory (the app's is its worklist database): jobs are lost when the
    process ends, which is exactly what the database-backed source exists to prevent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int | str, tuple[Job, datetime, str | None]] = {}
        self._next_id = 0
        self.abandoned_reasons: list[str] = []  # of jobs that could never be built

    def add(self, parts: Sequence[Dataset | bytes], now: datetime | None = None) -> Job:
        """A job of `parts`: an ingest's `results` (a recipe), or data sets (kept as Part 10
        bytes, as jobs were before recipes)."""
        with self._lock:
            self._next_id += 1
            job = Job(self._next_id, tuple(part if isinstance(part, bytes) else encode(part)
                                           for part in parts))
            self._jobs[job.id] = (job, now or datetime.now(UTC), None)
            return job

    def pending(self, now: datetime) -> list[Job]:
        with self._lock:
            return [job for job, due, _ in self._jobs.values() if due <= now]

    def done(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)

    def failed(self, job: Job, next_attempt: datetime, detail: str) -> None:
        with self._lock:
            again = Job(job.id, job.instances, job.attempts + 1)
            self._jobs[job.id] = (again, next_attempt, detail)

    def abandoned(self, job: Job, reason: str) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
            self.abandoned_reasons.append(reason)

    def waiting(self) -> list[tuple[Job, datetime, str | None]]:
        """Every job not yet delivered, with its next attempt and last failure."""
        with self._lock:
            return list(self._jobs.values())


@contextmanager
def running_node(ingest, budget: BodyBudget | None = None, **options) -> Iterator[StorageSCP]:
    """The Storage SCP on a free loopback port; its data sets in flight in `budget`."""
    node = StorageSCP(ScpOptions(ae_title=NODE_AE, host="127.0.0.1", port=free_port(),
                                 **options), ingest, budget=budget)
    with node:
        yield node


def store(port: int, datasets: list[Dataset], ae_title: str = PACS_AE,
          transfer_syntax: str | None = None) -> list[Dataset]:
    """C-STORE each data set to the node in one association; the response status data
    sets (Status, and ErrorComment when there is one)."""
    ae = AE(ae_title=ae_title)
    syntaxes = {transfer_syntax or ds.file_meta.TransferSyntaxUID for ds in datasets}
    for sop_class in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(sop_class, sorted(syntaxes))
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    assert assoc.is_established, "the node refused the association"
    try:
        return [assoc.send_c_store(ds) for ds in datasets]
    finally:
        assoc.release()


def can_associate(port: int, ae_title: str = PACS_AE,
                  sop_classes: tuple[str, ...] = (Verification,)) -> bool:
    ae = AE(ae_title=ae_title)
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    established = assoc.is_established
    if established:
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        assoc.release()
        return accepted >= set(sop_classes)
    return False


class StandInPacs:
    """A storage SCP that keeps what it is sent, in memory: the results' destination."""

    def __init__(self, port: int | None = None, ae_title: str = PACS_AE,
                 status: int = 0x0000) -> None:
        self.port = port or free_port()
        self.ae_title = ae_title
        self.status = status  # what it answers every C-STORE
        self.received: dict[str, Dataset] = {}
        self._server = None

    def start(self) -> StandInPacs:
        ae = AE(ae_title=self.ae_title)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StandInPacs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_store(self, event) -> int:
        if self.status in (0x0000, 0xB000):
            ds = event.dataset
            self.received[str(ds.SOPInstanceUID)] = ds
        return self.status

