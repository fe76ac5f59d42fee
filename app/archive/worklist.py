"""`archive import DIR`: an archive run's committed rows onto the worklist, for a site that
wants yesterday's films ranked beside today's.

The node's rules, through the node's code: each row becomes the FilmRecord the storing doors
make (app/services/intake.py `film_record`), with the pixels' hash and, for a DICOM whose
file can still be read and is unchanged, the patient key under this install's secret
(app/dicom/identity.py); the store then keeps one entry per study, takes a film again as
the same film (its SOP Instance UID), lists another patient's film under a study apart,
and refuses other pixels under a stored SOP Instance UID (app/store/writes.py). A film
without a readable header (a JPEG, a PNG) is its own study under the UIDs derived from its
bytes, as an upload of it would be: the same file imported twice is one entry.

Not listed, as the doors would not list them: an instance the node takes but never lists
(`ignored`: a structured report, a presentation state, another image, its own result); a
file never read (over the byte limit, unreadable); and a file that is no film at all
(empty, not an image, a format not read) unless it is DICOM. Importing twice changes
nothing. Committed a chunk at a time: one chunk's failure leaves the chunks before it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from app.archive.output import Output
from app.archive.rows import identify
from app.archive.sources import read_source
from app.archive.stages import UNREADABLE
from app.contract.errors import (
    EmptyImageError,
    FileTooLargeError,
    ImageError,
    NotAnImageError,
    UnsupportedFormatError,
)
from app.contract.identifiers import InstanceFacts, patient_key, read_header
from app.services.film import ImageFacts
from app.services.intake import film_record, now
from app.services.pipeline import Prediction
from app.store import WorklistStore

SOURCE = "archive"  # the entries' source, beside "upload" and "dicom:<AE title>"
NOT_READ = frozenset({FileTooLargeError.code, UNREADABLE})
NOT_A_FILM = frozenset({EmptyImageError.code, NotAnImageError.code,
                        UnsupportedFormatError.code})
CHUNK = 500


class RowRefusal(ImageError):
    """A refusal as a row recorded it: its code and sentence (film_record reads both)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(code)
        self.code = code
        self.text = text

    @property
    def message(self) -> str:
        return self.text


@dataclass
class Imported:
    """What an import did: rows handed to the store (a film it holds already, or twice in
    the rows, is kept once), the entries they are in, rows not listed and why, conflicts by
    kind, DICOM films listed without a patient key (their file no longer readable as scored:
    not checked against their study's patient)."""

    rows: int = 0
    entries: set[int] = field(default_factory=set)
    skipped: Counter = field(default_factory=Counter)
    conflicts: Counter = field(default_factory=Counter)
    without_patient_key: int = 0

    def describe(self) -> dict[str, Any]:
        return {"rows": self.rows, "entries": len(self.entries),
                "skipped": dict(self.skipped), "conflicts": dict(self.conflicts),
                "without_patient_key": self.without_patient_key}


def import_rows(out: str, store: WorklistStore, secret: bytes | None, max_bytes: int,
                clock: Callable[[], datetime] = now, chunk: int = CHUNK) -> Imported:
    """Put the committed rows of the run in `out` on `store`'s worklist. `secret`: the
    install's patient-key secret (None: no keys, no patient check); `max_bytes`: the largest
    file read back for its header. Raises ValueError when `out` holds no rows."""
    data = Output(out).dataset()
    if data is None:
        raise ValueError(f"{out} holds no committed rows")
    imported = Imported()
    received_at = clock()
    for batch in data.to_batches(batch_size=chunk):
        records = []
        for values in batch.to_pylist():
            why = _not_listed(values)
            if why is not None:
                imported.skipped[why] += 1
                continue
            key = _patient_key(values, secret, max_bytes)
            if key is None and secret is not None and values["sop_class_uid"]:
                imported.without_patient_key += 1
            records.append(replace(
                film_record(_facts(values), SOURCE, received_at, values["scored_at"],
                            _prediction(values), _refusal(values)),
                patient_key=key, content_hash=values["content_hash"]))
        if records:
            added = store.add_received(records)
            imported.rows += len(records)
            imported.entries.update(entry.id for entry in added.entries)
            imported.conflicts.update(conflict.value for conflict in added.conflicts.values())
    return imported


def _not_listed(values: dict[str, Any]) -> str | None:
    if values["ignored"]:
        return values["ignored"]
    if values["error"] in NOT_READ or values["key"] is None:
        return "not_read"
    if values["error"] in NOT_A_FILM and not values["sop_class_uid"]:
        return "not_a_film"
    return None


def _facts(values: dict[str, Any]) -> InstanceFacts:
    return InstanceFacts(**{name: values[name] for name in (
        "study_instance_uid", "series_instance_uid", "sop_instance_uid", "accession_number",
        "patient_age", "patient_sex", "modality", "view_position", "body_part", "study_date",
        "study_time")}, sop_class_uid=values["sop_class_uid"] or "")


def _prediction(values: dict[str, Any]) -> Prediction | None:
    """The row's outcome as the prediction film_record reads (model, threshold,
    probability, flag, assessability, reasons, warnings); None for a refused film."""
    if values["decision"] is None:
        return None
    judged = bool(values["assessable"])
    image = ImageFacts(values["width"], values["height"], values["format"], "", None,
                       tuple(values["warnings"]))
    return Prediction(
        probability=values["probability"] if judged else values["unvalidated_probability"],
        label=None, flagged=values["decision"] == "flagged", threshold=values["threshold"],
        model_name=values["model"], model_version=values["model_version"], image=image,
        elapsed_ms=0.0, reasons=tuple(values["reasons"]))


def _refusal(values: dict[str, Any]) -> ImageError | None:
    return None if values["error"] is None else RowRefusal(values["error"],
                                                            values["error_detail"] or "")


def _patient_key(values: dict[str, Any], secret: bytes | None, max_bytes: int) -> str | None:
    """The patient key of a DICOM row's file, read again from its source when it is still
    there and still the film scored (same key); None otherwise."""
    if secret is None or not values["sop_class_uid"]:
        return None
    try:
        data = read_source(values["source"], max_bytes)
        identity = identify(data)
        if len(data) > max_bytes or (identity.key, identity.content_hash) != (
                values["key"], values["content_hash"]):
            return None
        header = read_header(data, force=True)
    except Exception:  # noqa: BLE001 - gone, changed or unreadable: listed without a key
        return None
    return None if header is None else patient_key(header, secret)
