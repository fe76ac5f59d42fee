"""DICOMweb STOW-RS (PS3.18 10.5) without a web framework: the request body's parts in, the
Store Instances Response (DICOM JSON, PS3.18 Table 10.5.3-1) out.

- `boundary_of(content_type)`: the request's boundary, after checking that it is
  `multipart/related; type="application/dicom"`.
- `StowSession`: each part's bytes, as they arrived, through the same ingest as a C-STORE's
  encoded data set, and the response. The body is split into its parts by the web layer
  (app/web/upload.py `related_parts`: python-multipart, as for forms), part by part as
  they arrive, so the route scores one instance while the next is still on the wire.
- `multipart_body(instances)`: the other way, for sending results by STOW-RS.

The per-instance outcome comes from the node's one status table (app/dicom/statuses.py):
success (also an instance the node takes but does not score, an SR or a presentation
state: acknowledged, ignored) -> ReferencedSOPSequence; a warning -> ReferencedSOPSequence
with WarningReason; a failure -> FailedSOPSequence with FailureReason and an ErrorComment
saying why; one without a valid SOP Instance UID, and the rest of a body that ended early
(`not_read`), -> OtherFailuresSequence. Each part is stored whole or not at all. The HTTP
status is 200 when every instance was stored without warning, 202 when some were stored,
409 when none was, and 503 when none was because the node is busy or not ready (the client
should send again).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message

from pydicom import Dataset

from app.contract.identifiers import (
    InvalidInstanceError,
    InvalidUidError,
    deflated_from,
    instance_facts,
)
from app.dicom.classes import STORAGE_CLASSES
from app.dicom.ingest import Ingest, Received, UnreadableInstanceError
from app.dicom.statuses import (
    CANNOT_UNDERSTAND,
    DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    SUCCESS,
    TRANSFER_SYNTAX_NOT_SUPPORTED,
    WARNING_NOT_SCORED,
    error_status,
    result_status,
)
from app.errors import AppError, MalformedUploadError, ServerBusyError

log = logging.getLogger("app.dicom")

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
FAILED_SOP_SEQUENCE = "00081198"  # its DICOM JSON key
SOP_CLASS_NOT_SUPPORTED = 0x0122  # PS3.18 Table 10.5.3-2 / PS3.7 C.4
_MAX_BOUNDARY = 70  # RFC 2046


class UnsupportedMediaTypeError(AppError):
    """The body is not multipart/related of application/dicom parts (answered 415)."""

    code = "unsupported_media_type"
    message = ('Send DICOM instances as multipart/related; type="application/dicom", '
               "one Part 10 file per part.")


def boundary_of(content_type: str) -> str:
    """The boundary of a STOW-RS request's Content-Type; UnsupportedMediaTypeError for any
    other type (DICOM JSON or XML metadata with bulk data is not accepted), and
    MalformedUploadError for a missing or overlong boundary."""
    header = Message()
    header["content-type"] = content_type
    kind = (header.get_param("type") or DICOM)
    if header.get_content_type() != "multipart/related" or str(kind).lower() != DICOM:
        raise UnsupportedMediaTypeError()
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= _MAX_BOUNDARY:
        raise MalformedUploadError()
    return boundary


def multipart_body(instances: Sequence[bytes]) -> tuple[bytes, str]:
    """(body, Content-Type) of a STOW-RS request holding `instances` (Part 10 bytes)."""
    boundary = uuid.uuid4().hex
    pieces = []
    for data in instances:
        pieces += [f"--{boundary}\r\nContent-Type: {DICOM}\r\n\r\n".encode(), data, b"\r\n"]
    pieces.append(f"--{boundary}--\r\n".encode())
    return b"".join(pieces), f'multipart/related; type="{DICOM}"; boundary={boundary}'


@dataclass(frozen=True)
class InstanceOutcome:
    sop_class_uid: str | None
    sop_instance_uid: str | None
    status: int
    comment: str | None

    @property
    def stored(self) -> bool:
        return self.status in (SUCCESS, WARNING_NOT_SCORED)


class StowSession:
    """One STOW-RS request: `add(data, content_type)` for each part (blocking: it scores the
    film, so the route calls it from a worker thread), then `response()`. `study_uid` is
    the one in the URL (/studies/{study}), if any: instances of another study fail. No
    RetrieveURL is given: the node keeps no instances to retrieve (PS3.18 makes it
    optional)."""

    def __init__(self, ingest: Ingest, study_uid: str | None = None,
                 source: str = "dicomweb") -> None:
        self._ingest = ingest
        self._study = study_uid
        self._source = source
        self._lock = threading.Lock()
        self.outcomes: list[InstanceOutcome] = []

    def add(self, data: bytes, content_type: str | None = None) -> InstanceOutcome:
        """One part: its bytes as they arrived, and its Content-Type header (None: none)."""
        outcome = self._store(data, content_type)
        with self._lock:
            self.outcomes.append(outcome)
        return outcome

    def _store(self, data: bytes, content_type: str | None) -> InstanceOutcome:
        if content_type is not None and content_type.split(";")[0].strip().lower() != DICOM:
            return InstanceOutcome(None, None, CANNOT_UNDERSTAND, "part is not application/dicom")
        if deflated_from(data) is not None:
            # pydicom inflates a deflated data set whole, here in the server: a 20 MiB part
            # could inflate to gigabytes (a 70 KB one took 138 MiB). Senders fall back to an
            # uncompressed or pixel-compressed syntax.
            facts = instance_facts(data)  # its first MiB, inflated
            return InstanceOutcome(facts and facts.sop_class_uid,
                                   facts and facts.sop_instance_uid,
                                   TRANSFER_SYNTAX_NOT_SUPPORTED,
                                   "deflated data sets are not accepted")
        try:
            received = Received.read(data)
            header = received.header
            sop_class, sop_instance = str(header.SOPClassUID), str(header.SOPInstanceUID)
        except UnreadableInstanceError as exc:
            return InstanceOutcome(None, None, CANNOT_UNDERSTAND,
                                   exc.comment if exc.comment != "data set not readable"
                                   else "not a DICOM Part 10 file")
        except (AttributeError, ValueError):
            return InstanceOutcome(None, None, CANNOT_UNDERSTAND, "not a DICOM Part 10 file")
        study = str(header.get("StudyInstanceUID", "")) or None
        known = {"sop_class_uid": sop_class, "sop_instance_uid": sop_instance}
        if sop_class not in STORAGE_CLASSES:
            return InstanceOutcome(**known, status=SOP_CLASS_NOT_SUPPORTED,
                                   comment="not a storage SOP class")
        if self._study is not None and study != self._study:
            return InstanceOutcome(**known, status=DOES_NOT_MATCH_SOP_CLASS,
                                   comment="Study Instance UID differs from the URL's")
        try:
            result = self._ingest(received, self._source)
        except Exception as exc:  # noqa: BLE001 - each instance's failure is its own
            status, comment = error_status(exc)
            if isinstance(exc, InvalidUidError) and exc.missing in ("SOPClassUID",
                                                                      "SOPInstanceUID"):
                known = {"sop_class_uid": None, "sop_instance_uid": None}  # no UI to name
            elif not isinstance(exc, AppError | InvalidInstanceError):
                log.exception("STOW-RS instance not stored, unexpected error")
            return InstanceOutcome(**known, status=status, comment=comment)
        status, comment = result_status(result)
        return InstanceOutcome(**known, status=status, comment=comment)

    def not_read(self, error: AppError) -> None:
        """The body ended early (broken off, too many parts or bytes, too slow, the memory
        budget full) after the parts so far: what was not read, as one other failure, so
        that the response lists the parts that were stored beside it. A refusal for load
        is Out of Resources (send the rest again); any other, Cannot Understand."""
        status = OUT_OF_RESOURCES if isinstance(error, ServerBusyError) else CANNOT_UNDERSTAND
        with self._lock:
            read = len(self.outcomes)
            self.outcomes.append(InstanceOutcome(
                None, None, status, f"{error.code}: body not read after part {read}"))

    def response(self) -> tuple[int, dict]:
        """(HTTP status, Store Instances Response as DICOM JSON)."""
        answer = Dataset()
        stored = [o for o in self.outcomes if o.stored]
        failed = [o for o in self.outcomes if not o.stored and o.sop_instance_uid]
        others = [o for o in self.outcomes if not o.stored and not o.sop_instance_uid]
        answer.ReferencedSOPSequence = [_referenced(o) for o in stored]
        if failed:
            answer.FailedSOPSequence = [_failed(o) for o in failed]
        if others:
            answer.OtherFailuresSequence = [_other(o) for o in others]
        return _http_status(self.outcomes), answer.to_json_dict()


def _referenced(outcome: InstanceOutcome) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = outcome.sop_class_uid
    item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    if outcome.status != SUCCESS:
        item.WarningReason = outcome.status
    return item


def _failed(outcome: InstanceOutcome) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = outcome.sop_class_uid
    item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    item.FailureReason = outcome.status
    if outcome.comment:  # why, as a C-STORE's Error Comment says it
        item.ErrorComment = outcome.comment
    return item


def _other(outcome: InstanceOutcome) -> Dataset:
    item = Dataset()
    item.FailureReason = outcome.status
    if outcome.comment:
        item.ErrorComment = outcome.comment
    return item


def _http_status(outcomes: Sequence[InstanceOutcome]) -> int:
    stored = [o for o in outcomes if o.stored]
    if outcomes and all(o.status == SUCCESS for o in outcomes):
        return 200
    if stored:
        return 202
    if outcomes and all(o.status == OUT_OF_RESOURCES for o in outcomes):
        return 503
    return 409
