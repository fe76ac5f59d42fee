"""The node's Storage SCP: pynetdicom's AE.start_server in its own threads, one per
association, each C-STORE handed to the injected ingest (app/dicom/ingest.py) and answered
from the one status table (app/dicom/statuses.py).

What it accepts is decided at association time: the radiograph storage classes below, in
every transfer syntax the film decoder reads (app/contract/dicom.py, with pydicom's
pylibjpeg plugins), plus Verification (C-ECHO). A CT, an MR or an SR is refused at
negotiation, before a byte of it is sent. Received data sets stay in memory
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
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, _config, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from app.config import Settings
from app.contract.identifiers import InvalidInstanceError
from app.dicom.ingest import Ingest, Received
from app.dicom.statuses import CANNOT_UNDERSTAND, error_status, result_status
from app.errors import AppError
from app.services.observer import NO_METRICS, Observer

log = logging.getLogger("app.dicom")

# Projection radiographs, and scanned films (secondary capture): what the model scores.
STORAGE_CLASSES: tuple[UID, ...] = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)
# Every transfer syntax the decoder reads, but Deflated Explicit VR Little Endian: the
# association inflates a deflated data set whole in the server (a small one can inflate to
# gigabytes), so it is not offered and the sender uses another (every sender supports
# Implicit VR Little Endian, PS3.5 10.1). The uncompressed ones first, so that a sender
# that offers several gets the cheapest to decode.
TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)

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


class StorageSCP:
    """The listening node. `start()` binds and returns at once (the AE serves from its own
    threads); `stop()` closes the port and the open associations. Usable as a context
    manager: `with StorageSCP(options, ingest): ...`."""

    def __init__(self, options: ScpOptions, ingest: Ingest,
                 metrics: Observer = NO_METRICS) -> None:
        self.options = options
        self._ingest = ingest
        self._metrics = metrics
        self._ended: weakref.WeakSet = weakref.WeakSet()  # associations counted already
        self._ended_lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None

    @classmethod
    def from_settings(cls, settings: Settings, ingest: Ingest,
                      metrics: Observer = NO_METRICS) -> StorageSCP | None:
        """The node the settings describe, not started; None when dicom_port is 0."""
        if not settings.dicom_port:
            return None
        return cls(ScpOptions(
            ae_title=settings.dicom_ae_title, host=settings.host, port=settings.dicom_port,
            allowed_aes=tuple(settings.dicom_allowed_aes),
            max_associations=settings.dicom_max_associations,
            max_pdu_bytes=settings.dicom_max_pdu_bytes,
            idle_seconds=settings.dicom_idle_seconds), ingest, metrics)

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
            ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        ae.add_supported_context(Verification)
        self._server = ae.start_server(
            (options.host, options.port), block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store),
                          (evt.EVT_REJECTED, self._on_rejected),
                          (evt.EVT_RELEASED, self._on_released),
                          (evt.EVT_ABORTED, self._on_aborted)])
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
                        type(exc).__name__)
            return _status(CANNOT_UNDERSTAND, "data set not readable")
        try:
            result = self._ingest(received, f"dicom:{calling}")
        except Exception as exc:  # noqa: BLE001 - every failure is answered, never dropped
            status, comment = error_status(exc)
            if isinstance(exc, AppError):
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
