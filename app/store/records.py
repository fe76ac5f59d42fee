"""What goes into the store (FilmRecord) and what comes out (StudyEntry, Page, AuditRecord):
plain frozen dataclasses, so the web layer turns them into JSON or CSV without the ORM."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

from app.contract.triage_score import triage_score
from app.store.models import HASH_LENGTH, UID_LENGTH

# A thumbnail is a small PNG for the list, never the film: refused above this size.
MAX_THUMBNAIL_BYTES = 64 * 1024
# The study view's film at display size (512 px on its longest side, 8 bits: a PNG of a
# chest film is 150 to 300 KB): refused above this size.
MAX_DISPLAY_BYTES = 1024 * 1024


class Status(StrEnum):
    """A study's place in the clinician's work."""

    NEW = "new"
    OPENED = "opened"
    REPORTED = "reported"
    DISMISSED = "dismissed"
    # Set by the store only: films of another patient than the one a study was first seen
    # with, under its Study Instance UID (StudyEntry.conflict_of), listed apart for a human.
    CONFLICT = "conflict"


class Conflict(StrEnum):
    """Why a film was not taken as what its UIDs say (WorklistStore.add_films)."""

    # Another patient (Patient ID and Issuer) than its study was first seen with: listed in
    # an entry of its own (status conflict), never merged, no results sent.
    PATIENT = "patient"
    # Its SOP Instance UID is stored already with other pixels, or in another study: the
    # stored film stands, nothing is stored or sent for this one.
    INSTANCE = "instance"


class AuditAction(StrEnum):
    OPENED = "opened"  # an entry was shown in full (WorklistStore.record)
    EXPORTED = "exported"  # the list or an entry left as CSV or JSON (WorklistStore.record)
    STATUS_CHANGED = "status_changed"  # written by WorklistStore.set_status only
    PURGED = "purged"  # written by retention: counts and cut-offs, actor "retention"
    # The site's intended ages beside the card's (Settings.intended_age_years), written at
    # each start by WorklistStore.record_settings, actor "settings".
    INTENDED_USE = "intended_use"
    READ = "read"  # a study's read set or changed: written by WorklistStore.set_read only
    # PNEUMONIA_SHADOW_MODE turned on or off, at the first start after the change, actor
    # "settings" (WorklistStore.record_settings).
    SHADOW_MODE = "shadow_mode"
    # A site profile adopted, reverted or shown (`pneumonia-triage site ...`, issue 30), by
    # the person who ran the command (WorklistStore.record_settings). A plain string column:
    # no migration.
    SITE_PROFILE = "site_profile"


class Sort(StrEnum):
    """The list's orders: by priority (groups, then triage score: app/store/priority.py),
    or by arrival, newest or oldest first (the shadow mode's order, issue 31)."""

    PRIORITY = "priority"
    NEWEST = "newest"
    OLDEST = "oldest"


class Finding(StrEnum):
    """A radiologist's read of a study (issue 31): what performance is measured against.
    `indeterminate` is counted, never taken as either side."""

    PNEUMONIA = "pneumonia"
    NO_PNEUMONIA = "no_pneumonia"
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True, kw_only=True)
class FilmRecord:
    """One film's result to store. UIDs as in DICOM (an upload passes generated ones, e.g.
    pydicom.uid.generate_uid(None), and its own Study Instance UID: it is its own study).

    Times are aware datetimes. `probability` and `flagged` are None for a film that was not
    scored; a refused film (damaged, CT, lateral) is stored too, with `error_code` and
    `error_detail`. `assessable` defaults to False: a caller that forgets it puts the study
    in the "needs a human look" group, never in the routine one. `threshold` is the one the
    film was scored at (a scored film must have it: the study's rank is its triage score at
    that threshold, app/store/priority.py). `thumbnail` is a small PNG, passed only when the
    thumbnails setting is on. Raises ValueError for a missing or over-long UID, a naive time,
    a probability or threshold outside [0, 1], a probability without a threshold, or an
    oversized thumbnail.
    """

    study_instance_uid: str
    sop_instance_uid: str
    received_at: datetime
    source: str = "upload"  # or "dicom:<calling AE title>"
    series_instance_uid: str | None = None
    accession_number: str | None = None
    patient_age: str | None = None  # DICOM AS, e.g. "007Y"
    patient_sex: str | None = None  # DICOM CS: M, F, O
    modality: str | None = None
    view_position: str | None = None  # AP, PA, LL, ...; None for an upload
    body_part: str | None = None
    study_date: date | None = None
    study_time: time | None = None
    scored_at: datetime | None = None
    model_name: str | None = None
    model_version: str | None = None
    probability: float | None = None
    threshold: float | None = None
    flagged: bool | None = None
    assessable: bool = False
    reasons: tuple[str, ...] = ()  # inverted, rotated, not_chest, not_frontal, unlike_training
    warnings: tuple[str, ...] = ()
    error_code: str | None = None
    error_detail: str | None = None
    thumbnail: bytes | None = field(default=None, repr=False)
    # The film at display size, as the model saw it (a PNG), passed only when the
    # thumbnails setting is on; and the window the DICOM display pipeline applied.
    display: bytes | None = field(default=None, repr=False)
    window: str | None = None
    # Why the film's results will not reach the PACS (app/dicom/failures.py: identity,
    # build, queue_full); None when they are queued, or none are made (no destination).
    results_error: str | None = None
    # identifiers.py's salted hash of the patient (None: no DICOM header, never compared)
    # and SHA-256 of the encoded pixels (None: not known, never compared).
    patient_key: str | None = field(default=None, repr=False)
    content_hash: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("study_instance_uid", "sop_instance_uid", "series_instance_uid"):
            uid = getattr(self, name)
            if uid is None and name == "series_instance_uid":
                continue
            if not uid or len(uid) > UID_LENGTH:
                raise ValueError(f"{name} must have 1 to {UID_LENGTH} characters")
        for name in ("received_at", "scored_at"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} must be an aware datetime")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must lie in [0, 1]")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must lie in [0, 1]")
        if self.probability is not None and self.threshold is None:
            raise ValueError("a scored film must carry the threshold it was scored at")
        if self.thumbnail is not None and len(self.thumbnail) > MAX_THUMBNAIL_BYTES:
            raise ValueError(f"a thumbnail must be at most {MAX_THUMBNAIL_BYTES} bytes")
        if self.display is not None and len(self.display) > MAX_DISPLAY_BYTES:
            raise ValueError(f"a display copy must be at most {MAX_DISPLAY_BYTES} bytes")
        for name in ("patient_key", "content_hash"):
            value = getattr(self, name)
            if value is not None and len(value) != HASH_LENGTH:
                raise ValueError(f"{name} must be a hash of {HASH_LENGTH} hex digits")


@dataclass(frozen=True, kw_only=True)
class FilmResult:
    """A stored film, as the list shows it (its thumbnail through WorklistStore.thumbnail)."""

    id: int
    sop_instance_uid: str
    series_instance_uid: str | None
    modality: str | None
    view_position: str | None
    body_part: str | None
    source: str
    received_at: datetime
    scored_at: datetime | None
    model_name: str | None
    model_version: str | None
    probability: float | None
    threshold: float | None
    flagged: bool | None
    assessable: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    error_code: str | None
    error_detail: str | None
    has_thumbnail: bool
    # Why its results will not reach the PACS (app/dicom/failures.py), or None.
    results_error: str | None = None
    has_display: bool = False  # its display copy (WorklistStore.display) is kept
    window: str | None = None  # the window the DICOM display pipeline applied

    @property
    def triage_score(self) -> float | None:
        """The film's triage score (0-1) at the threshold it was scored at
        (app/contract/triage_score.py); None without a probability or a threshold."""
        if self.probability is None or self.threshold is None:
            return None
        return triage_score(self.probability, self.threshold)


@dataclass(frozen=True, kw_only=True)
class StudyEntry:
    """One worklist entry: a study and its films (oldest first).

    `group` is "flagged", "routine" or "needs_review". `triage_score` (0-1) ranks the study
    within its group: the highest triage score of an assessable frontal film, each at the
    threshold it was scored at; `priority` is that film's probability (0-1). Both None when
    no film counts (app/store/priority.py).
    """

    id: int
    study_instance_uid: str
    accession_number: str | None
    patient_age: str | None
    patient_sex: str | None
    study_date: date | None
    study_time: time | None
    source: str
    received_at: datetime
    last_received_at: datetime
    status: Status
    status_by: str | None
    status_at: datetime | None
    priority: float | None
    triage_score: float | None
    flagged: bool
    group: str
    films: tuple[FilmResult, ...]
    # Status conflict: the Study Instance UID its films carried, a study first seen with
    # another patient (study_instance_uid is then one the store derived).
    conflict_of: str | None = None
    read: Read | None = None  # the radiologist's read, once given


@dataclass(frozen=True, kw_only=True)
class Read:
    """A study's read: the finding, who gave it and when (aware UTC)."""

    finding: Finding
    read_by: str
    read_at: datetime


@dataclass(frozen=True, kw_only=True)
class JudgedRead:
    """A read beside the model's answer it judged, for live performance: `model_group` is
    the study's group when read (flagged, routine, needs_review: app/store/priority.py), and
    `model_name`, `model_version`, `threshold` those of the film that decided it (None when
    no film was scored)."""

    entry_id: int
    finding: Finding
    read_at: datetime
    model_group: str
    model_name: str | None
    model_version: str | None
    threshold: float | None


@dataclass(frozen=True)
class Page:
    """One page of the list. `total` counts every entry the filters match; `next_cursor`
    (None on the last page) continues after this page's last entry."""

    entries: list[StudyEntry]
    total: int
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: AuditAction
    entry_id: int | None
    study_instance_uid: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class PurgeCounts:
    """What one retention pass deleted."""

    entries: int
    films: int
    audit_records: int


class EntryNotFound(LookupError):
    """No entry has this id (never stored, or deleted by retention)."""


class InvalidCursor(ValueError):
    """A paging cursor this store did not write."""
