"""The node's Storage SCP: a pynetdicom AE serving from its own threads, one per accepted
association, on the node's bounded transport (app/dicom/transport.py: connection caps, the
association request's deadline, the allow-list and the slots checked before a thread, PDU
and data set limits), each C-STORE handed to the injected ingest (app/dicom/ingest.py) and
answered from the one status table (app/dicom/statuses.py).

What it accepts is decided at association time (app/dicom/classes.py): every storage SOP
class pynetdicom knows, in every transfer syntax but the deflated ones, plus Verification
(C-ECHO), so that a PACS can route a whole study; the ingest scores the radiographs and
acknowledges the rest without keeping it. Received data sets stay in memory
(pynetdicom's STORE_RECV_CHUNKED_DATASET would spool them to files: it is kept off), and in
the form they arrived in: the ingest gets pynetdicom's encoded data set with its file meta
(`event.encoded_dataset()`), never a decoded Dataset written back to bytes.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass

from pydicom import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification

from app.config import Settings
from app.contract.identifiers import InvalidInstanceError
from app.dicom.classes import STORAGE_CLASSES, offered_syntaxes
from app.dicom.doorman import Limits
from app.dicom.ingest import Ingest, Received, UnreadableInstanceError
from app.dicom.statuses import CANNOT_UNDERSTAND, error_status, result_status
from app.dicom.transport import GuardedServer, ReceivedDataSet
from app.errors import AppError
from app.memory import BodyBudget
from app.services.observer import NO_METRICS, Observer

log = logging.getLogger("app.dicom")

# pynetdicom logs C-FIND/C-MOVE identifiers (patient names among them) by default; the node
# serves none, but a future one must not log them either.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


@dataclass(frozen=True)
class ScpOptions:
    """What the AE is started with (from Settings, see `StorageSCP.from_settings`)."""

    ae_title: str = "TRIAGE"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_aes: tuple[str, ...] = ()  # empty: any caller
    max_associations: int = 8
    max_pdu_bytes: int = 1024 * 1024
    idle_seconds: float = 30.0
    # The transport's bounds (app/dicom/transport.py; Settings documents each).
    max_connections: int = 64
    max_connections_per_address: int = 16
    request_seconds: float = 10.0
    pdu_seconds: float = 20.0
    max_data_set_bytes: int = 20 * 1024 * 1024

    @property
    def limits(self) -> Limits:
        return Limits(max_connections=self.max_connections,
                      per_address=self.max_connections_per_address,
                      max_associations=self.max_associations,
                      request_seconds=self.request_seconds, pdu_seconds=self.pdu_seconds,
                      max_pdu_bytes=self.max_pdu_bytes,
                      max_data_set_bytes=self.max_data_set_bytes,
                      allowed_aes=tuple(ae.strip() for ae in self.allowed_aes))


class StorageSCP:
    """The listening node. `start()` binds and returns at once (the AE serves from its own
    threads); `stop()` closes the port and the open associations. Usable as a context
    manager: `with StorageSCP(options, ingest): ...`."""

    def __init__(self, options: ScpOptions, ingest: Ingest,
                 metrics: Observer = NO_METRICS, budget: BodyBudget | None = None) -> None:
        self.options = options
        self._ingest = ingest
        self._metrics = metrics
        self._budget = budget  # data sets in flight, shared with the HTTP door's bodies
        self._ended: weakref.WeakSet = weakref.WeakSet()  # associations counted already
        self._ended_lock = threading.Lock()
        self._server: GuardedServer | None = None

    @classmethod
    def from_settings(cls, settings: Settings, ingest: Ingest,
                      metrics: Observer = NO_METRICS,
                      budget: BodyBudget | None = None) -> StorageSCP | None:
        """The node the settings describe, not started; None when dicom_port is 0. Its data
        sets in flight count in `budget` (the app's one budget for bodies in flight)."""
        if not settings.dicom_port:
            return None
        return cls(ScpOptions(
            ae_title=settings.dicom_ae_title, host=settings.host, port=settings.dicom_port,
            allowed_aes=tuple(settings.dicom_allowed_aes),
            max_associations=settings.dicom_max_associations,
            max_pdu_bytes=settings.dicom_max_pdu_bytes,
            idle_seconds=settings.dicom_idle_seconds,
            max_connections=settings.dicom_max_connections,
            max_connections_per_address=settings.dicom_max_connections_per_address,
            request_seconds=settings.dicom_request_seconds,
            pdu_seconds=settings.dicom_pdu_seconds,
            max_data_set_bytes=settings.max_upload_bytes), ingest, metrics, budget)

    @property
    def port(self) -> int:
        """The bound port (the configured one, once started)."""
        if self._server is None:
            return self.options.port
        return self._server.server_address[1]

    def start(self) -> StorageSCP:
        """Bind and serve; OSError when the port is taken."""
        if _config.STORE_RECV_CHUNKED_DATASET:  # films must never touch the disk
            raise RuntimeError("pynetdicom's STORE_RECV_CHUNKED_DATASET must stay off")
        options = self.options
        ae = AE(ae_title=options.ae_title)
        ae.maximum_associations = options.max_associations
        ae.maximum_pdu_size = options.max_pdu_bytes
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = options.idle_seconds
        ae.require_calling_aet = list(options.allowed_aes)
        for sop_class in STORAGE_CLASSES:
            ae.add_supported_context(sop_class, offered_syntaxes(sop_class))
        ae.add_supported_context(Verification)
        # AE.start_server's own server starts a thread per connection: make_server with
        # the bounded one (app/dicom/transport.py), which serves from threads of its own.
        self._server = ae.make_server(
            (options.host, options.port), server_class=GuardedServer,
            limits=options.limits, budget=self._budget,
            on_rejected=lambda: self._metrics.association("rejected"),
            evt_handlers=[(evt.EVT_C_STORE, self._on_received),
                          (evt.EVT_REJECTED, self._on_rejected),
                          (evt.EVT_RELEASED, self._on_released),
                          (evt.EVT_ABORTED, self._on_aborted)]).serve()
        log.info("DICOM node %s listening on %s:%d (%s)", options.ae_title, options.host,
                 self.port, "callers: " + ", ".join(options.allowed_aes)
                 if options.allowed_aes else "any caller")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StorageSCP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_received(self, event: Event) -> Dataset:
        """One C-STORE: refused unread when the transport dropped its data set (over the
        byte limit: final; the memory budget full: retry), else `_on_store`; either way
        its bytes leave the memory budget once it is answered."""
        data_set = event.request.DataSet
        try:
            refusal = getattr(data_set, "refusal", None)
            if refusal is not None:
                log.warning("C-STORE from %s: data set of %d bytes not kept (%s)",
                            event.assoc.requestor.ae_title.strip(), data_set.size,
                            refusal.code)
                return _status(*error_status(refusal))
            return self._on_store(event)
        finally:
            if isinstance(data_set, ReceivedDataSet):
                data_set.release()

    def _on_store(self, event: Event) -> Dataset:
        """One C-STORE: the ingest's outcome as a status. Runs in the association's thread,
        so a slow film holds only its own association."""
        calling = event.assoc.requestor.ae_title.strip()
        try:
            received = Received.read(event.encoded_dataset())
            _check_sop_class(received.header, str(event.request.AffectedSOPClassUID))
        except InvalidInstanceError as exc:
            return _status(*error_status(exc))
        except Exception as exc:  # noqa: BLE001 - pydicom's many errors on a bad stream
            log.warning("C-STORE from %s: data set not readable (%s)", calling,
                        type(exc.__cause__ or exc).__name__)  # pydicom's, never its text
            return _status(CANNOT_UNDERSTAND, exc.comment if isinstance(
                exc, UnreadableInstanceError) else "data set not readable")
        try:
            result = self._ingest(received, f"dicom:{calling}")
        except Exception as exc:  # noqa: BLE001 - every failure is answered, never dropped
            status, comment = error_status(exc)
            if isinstance(exc, AppError | InvalidInstanceError):  # one line, no traceback
                log.warning("C-STORE from %s: not stored (%s)", calling, comment)
            else:
                log.exception("C-STORE from %s: not stored, unexpected error", calling)
            return _status(status, comment)
        return _status(*result_status(result))

    def _on_rejected(self, event: Event) -> None:
        # AE titles are the PACS's, never the patient's: safe to log.
        log.warning("DICOM association from %s rejected",
                    event.assoc.requestor.ae_title.strip())
        self._end(event, "rejected")

    def _on_released(self, event: Event) -> None:
        self._end(event, "released")

    def _on_aborted(self, event: Event) -> None:
        self._end(event, "aborted")

    def _end(self, event: Event, result: str) -> None:
        """Count an association once, by how it ended (pynetdicom may report an abort
        both where it is sent and where its reactor stops)."""
        with self._ended_lock:
            if event.assoc in self._ended:
                return
            self._ended.add(event.assoc)
        self._metrics.association(result)


def _check_sop_class(dataset: Dataset, negotiated: str) -> None:
    """The data set's own SOP Class must be the one its presentation context was accepted
    for, or a CT could travel under a CR context."""
    own = dataset.get("SOPClassUID")
    if own is None:
        raise InvalidInstanceError("SOPClassUID")
    if str(own) != negotiated:
        raise InvalidInstanceError(f"SOPClassUID matching the negotiated {negotiated}")


def _status(status: int, comment: str | None) -> Dataset:
    answer = Dataset()
    answer.Status = status
    if comment:
        answer.ErrorComment = comment
    return answer
