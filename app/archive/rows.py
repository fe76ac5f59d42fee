"""One row per file: the Parquet schema of an archive run's results, a file's identity (its
key, UIDs and study facts), and the row of a scored or refused film.

A file's key is its SOP Instance UID, else a hash of its bytes: the UIDs are the upload
door's (app/services/intake.py `upload_facts`): a DICOM file keeps its own, any other file
(or a DICOM whose UIDs are missing or invalid) is its own study under UIDs derived from the
SHA-256 of its bytes, so the same bytes always have the same key, and `archive import` lists
them as an upload of the same file would be. The study facts are the worklist's
(app/contract/identifiers.py InstanceFacts): never the patient's name, ID or birth date.

The decision, triage score and probability are the app's (app/services/pipeline.py
Prediction, app/services/triage.py `decision`), named as /predict names them: a film the
model cannot judge has no probability, its raw output is `unvalidated_probability`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from pydicom import Dataset

from app.contract.dicom import looks_like_dicom
from app.contract.identifiers import InstanceFacts, pixel_hash, read_header_at
from app.dicom.classes import ignored_kind
from app.services.film import PreparedFilm
from app.services.intake import upload_facts
from app.services.pipeline import Prediction
from app.services.triage import decision

_TEXT = pa.string()
_TEXTS = pa.list_(pa.string())
# The results' columns, in order. `resumed` and `scored_on` are the engine's own, never written.
SCHEMA = pa.schema([
    ("source", _TEXT),  # the file as listed: a path or a URI
    ("key", _TEXT),  # SOP Instance UID, or the one derived from the bytes' hash
    ("sop_instance_uid", _TEXT), ("study_instance_uid", _TEXT),
    ("series_instance_uid", _TEXT), ("sop_class_uid", _TEXT),
    ("bytes", pa.int64()), ("format", _TEXT), ("width", pa.int32()), ("height", pa.int32()),
    ("model", _TEXT), ("model_version", pa.int32()),
    ("decision", _TEXT),  # flagged, not_flagged, needs_human_look; null: not scored
    ("triage_score", pa.float64()), ("probability", pa.float64()),
    ("unvalidated_probability", pa.float64()), ("threshold", pa.float64()),
    # Where `threshold` comes from: card, site (the adopted local validation) or setting
    # (PNEUMONIA_THRESHOLD), app/contract/site.py; the CSV's `operating_point`.
    ("operating_point", _TEXT),
    ("assessable", pa.bool_()), ("reasons", _TEXTS), ("warnings", _TEXTS),
    ("error", _TEXT), ("error_detail", _TEXT),  # the refusal's code and sentence
    # The DICOM header's facts the worklist keeps, for `archive import`.
    ("accession_number", _TEXT), ("patient_age", _TEXT), ("patient_sex", _TEXT),
    ("modality", _TEXT), ("view_position", _TEXT), ("body_part", _TEXT),
    ("study_date", pa.date32()), ("study_time", pa.time64("us")),
    # The equipment's facts, for a local validation's subgroups (app/archive/validate.py):
    # Manufacturer (0008,0070), Manufacturer's Model Name (0008,1090), and the row spacing
    # in mm of Pixel Spacing (0028,0030), else of Imager Pixel Spacing (0018,1164).
    ("manufacturer", _TEXT), ("manufacturer_model", _TEXT),
    ("pixel_spacing_mm", pa.float64()),
    ("content_hash", _TEXT),  # SHA-256 of a DICOM's encoded pixels (the node's)
    ("ignored", _TEXT),  # the node's kind of an instance it takes but never lists
    ("run_id", _TEXT), ("scored_at", pa.timestamp("us", tz="UTC")),
])
ENGINE_SCHEMA = SCHEMA.append(pa.field("resumed", pa.bool_())).append(
    pa.field("scored_on", _TEXT))  # the Ray node whose actor scored it
_FACTS = ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "sop_class_uid",
          "accession_number", "patient_age", "patient_sex", "modality", "view_position",
          "body_part", "study_date", "study_time")


@dataclass(frozen=True)
class Identity:
    """A file's UIDs and study facts, the hash of a DICOM's pixels, and the DICOM node's
    kind of an instance it would take but not list (app/dicom/classes.py), or None."""

    facts: InstanceFacts
    content_hash: str | None = None
    ignored: str | None = None
    equipment: Equipment | None = None

    @property
    def key(self) -> str:
        return self.facts.sop_instance_uid


def identify(data: bytes) -> Identity:
    """The identity of a file's bytes, read from its header only (never its pixels)."""
    facts = upload_facts(data)
    if not facts.sop_class_uid or not looks_like_dicom(data):  # UIDs derived from the bytes
        return Identity(facts)
    try:
        header, pixels_at = read_header_at(data, force=True)
    except Exception:  # noqa: BLE001 - upload_facts read it: a deflated one's end, say
        return Identity(facts)
    if header is None:
        return Identity(facts)
    return Identity(facts, pixel_hash(data, pixels_at), ignored_kind(header),
                    _equipment(header))


@dataclass(frozen=True)
class Equipment:
    """The equipment's columns of a row (named as SCHEMA names them); None where the header
    says nothing readable."""

    manufacturer: str | None = None
    manufacturer_model: str | None = None
    pixel_spacing_mm: float | None = None


def _equipment(header: Dataset) -> Equipment:
    spacing = None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            spacing = float(header.get(keyword)[0])
        except Exception:  # noqa: BLE001 - absent or malformed: try the next, else None
            continue
        if math.isfinite(spacing) and spacing > 0:
            break
        spacing = None
    return Equipment(_text(header, "Manufacturer"), _text(header, "ManufacturerModelName"),
                     spacing)


def _text(header: Dataset, keyword: str) -> str | None:
    try:
        text = str(header.get(keyword) or "").strip()
    except Exception:  # noqa: BLE001 - a malformed element reads as absent
        return None
    return text or None


@dataclass(frozen=True)
class Prepared:
    """A file after the decode stage: its film ready for the model, or why not (`error`:
    code and sentence), or `resumed` (written by an earlier run: not scored again)."""

    source: str
    size: int
    identity: Identity | None = None
    film: PreparedFilm | None = None
    error: tuple[str, str] | None = None
    seconds: float = 0.0
    resumed: bool = False


def row(prepared: Prepared, prediction: Prediction | None, model: str, version: int,
        run_id: str, scored_at: datetime) -> dict:
    """The result row of a prepared file (`prediction`: the app's, when it was scored)."""
    identity = prepared.identity
    values: dict = {"source": prepared.source, "bytes": prepared.size, "model": model,
                    "model_version": version, "run_id": run_id, "scored_at": scored_at,
                    "resumed": prepared.resumed, "reasons": [], "warnings": []}
    if identity is not None:
        values.update({name: getattr(identity.facts, name) for name in _FACTS},
                      key=identity.key, content_hash=identity.content_hash,
                      ignored=identity.ignored, **vars(identity.equipment or Equipment()))
        values["sop_class_uid"] = identity.facts.sop_class_uid or None  # "": UIDs derived
    if prepared.error is not None:
        values["error"], values["error_detail"] = prepared.error
    if prediction is not None:
        p, judged = prediction, prediction.assessable
        values.update(
            format=p.image.format, width=p.image.width, height=p.image.height,
            decision=decision(judged, p.flagged).value, triage_score=p.triage_score,
            probability=p.probability if judged else None,
            unvalidated_probability=None if judged else p.probability,
            threshold=p.threshold, operating_point=p.point.source,
            assessable=judged, reasons=list(p.reasons),
            warnings=list(p.warnings))
    return values


def table(rows: list[dict]) -> pa.Table:
    """Rows as the engine's table (ENGINE_SCHEMA); a missing value is null."""
    return pa.Table.from_pylist(rows, schema=ENGINE_SCHEMA)
