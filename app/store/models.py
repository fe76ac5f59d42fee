"""The worklist's tables: studies (one entry per Study Instance UID), their films, the audit log.

What is never a column, by design: patient name, patient ID, birth date, file name, and the
film's pixels (a thumbnail and a display copy only when the caller passes them). Beside them,
radiologists' reads (issue 31). tests/store/test_models.py checks the column names.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    column_property,
    mapped_column,
    relationship,
)

# DICOM's limit for a UID (PS3.5 9.1); uploads get generated ones of the same form.
UID_LENGTH = 64
# Lengths of the short strings: each is its DICOM VR's maximum (SH 16, CS 16, LO 64, AS 4
# padded), or a size the app controls (source, actor, codes).
SHORT = 16
LONG = 64
ACTOR_LENGTH = 256
HASH_LENGTH = 64  # a SHA-256 in hex

# Engine-independent SQLAlchemy big integer that is SQLite's rowid alias there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored as naive UTC on both engines and read back as aware UTC.

    Stored naive so that SQLite's text form sorts and compares in time order; a naive
    datetime is refused (ValueError) instead of being guessed at.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the worklist stores aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    # Named constraints, so that migrations can refer to them on both engines.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class Study(Base):
    """One worklist entry: a study, with what the first page needs copied onto it."""

    __tablename__ = "studies"
    # AUTOINCREMENT on SQLite: ids are never reused after retention deletes the newest
    # rows, so an audit record's entry_id never names a later, different study.
    __table_args__ = (
        # The first page is a scan of this index (app/store/queries.py's ORDER).
        Index("ix_studies_worklist_order", "sort_group", "sort_rank", "received_at", "id"),
        Index("ix_studies_status_worklist_order",
              "status", "sort_group", "sort_rank", "received_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    # Study-level attributes: from the first film that names them.
    accession_number: Mapped[str | None] = mapped_column(String(SHORT))
    patient_age: Mapped[str | None] = mapped_column(String(SHORT))  # DICOM AS, e.g. "007Y"
    patient_sex: Mapped[str | None] = mapped_column(String(SHORT))  # DICOM CS: M, F, O
    study_date: Mapped[date | None]
    study_time: Mapped[time | None]
    source: Mapped[str] = mapped_column(String(LONG))  # of the first film: upload, dicom:AE
    # The first film's arrival: the list's tie-break, and its date filter (indexed for a
    # narrow window, which the order's index would scan far for).
    received_at: Mapped[datetime] = mapped_column(index=True)
    # The last film's arrival: retention counts from it, so a late film is kept its full time.
    last_received_at: Mapped[datetime] = mapped_column(index=True)

    status: Mapped[str] = mapped_column(String(SHORT), default="new")
    status_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    status_at: Mapped[datetime | None]
    # Whose study it is: a salted hash of the first film's Patient ID and Issuer
    # (app/contract/identifiers.py `patient_key`), never the values. A later film with
    # another key is not merged (app/store/writes.py): it goes to an entry of its own,
    # status "conflict", whose `conflict_of` is the Study Instance UID it carried (its own
    # study_instance_uid is one derived from that UID and its key).
    patient_key: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    conflict_of: Mapped[str | None] = mapped_column(String(UID_LENGTH))

    # Denormalised from the films by app/store/priority.py, in the transaction that adds them.
    # The leading film (highest triage score of an assessable frontal film): its probability
    # and its triage score, which ranks the study.
    priority: Mapped[float | None]
    triage_score: Mapped[float | None]
    flagged: Mapped[bool]
    film_count: Mapped[int]
    sort_group: Mapped[int]  # priority.Group: 0 flagged, 1 routine, 2 needs a human look
    sort_rank: Mapped[float]  # -triage_score, or 1 when none: ascending = most urgent first

    films: Mapped[list[Film]] = relationship(
        back_populates="study", order_by="Film.id", cascade="all, delete-orphan",
        passive_deletes=True)


class Film(Base):
    """One film's result. The same SOP Instance UID is stored once (unique)."""

    __tablename__ = "films"
    __table_args__ = {"sqlite_autoincrement": True}  # a thumbnail's URL never names another

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    series_instance_uid: Mapped[str | None] = mapped_column(String(UID_LENGTH))
    modality: Mapped[str | None] = mapped_column(String(SHORT))
    view_position: Mapped[str | None] = mapped_column(String(SHORT))
    body_part: Mapped[str | None] = mapped_column(String(SHORT))
    source: Mapped[str] = mapped_column(String(LONG))
    received_at: Mapped[datetime]
    scored_at: Mapped[datetime | None]
    model_name: Mapped[str | None] = mapped_column(String(LONG))
    model_version: Mapped[str | None] = mapped_column(String(SHORT))
    probability: Mapped[float | None]  # None: not scored
    threshold: Mapped[float | None]
    flagged: Mapped[bool | None]  # None: not scored
    assessable: Mapped[bool]
    reasons: Mapped[list[str]]  # codes: inverted, rotated, not_chest, not_frontal, ...
    warnings: Mapped[list[str]]
    error_code: Mapped[str | None] = mapped_column(String(LONG))  # a refused film's reason
    error_detail: Mapped[str | None] = mapped_column(Text)
    # SHA-256 of the film's encoded pixels as received (identifiers.py `pixel_hash`): the
    # same SOP Instance UID sent again with other pixels is a conflict, not a retry.
    content_hash: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    # Why the film's results (SR, secondary capture) will not reach the PACS: a reason code
    # of app/dicom/failures.py; None while they are on their way, delivered, or not made
    # because no destination is set.
    results_error: Mapped[str | None] = mapped_column(String(LONG))
    # Deferred: lists never load it; only when PNEUMONIA_WORKLIST_THUMBNAILS is on.
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    has_thumbnail: Mapped[bool] = column_property(thumbnail.column.is_not(None))
    # The film as the model saw it, at display size (a PNG, HEATMAP_SIZE px on its longest
    # side), for the study view: kept under the same setting and for as long as the
    # thumbnail (issue 31). Deferred as the thumbnail is.
    display: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    has_display: Mapped[bool] = column_property(display.column.is_not(None))
    # The window the DICOM display pipeline applied (app/contract/dicom.py DicomInfo.window:
    # the VOI LUT, a window centre and width, or the data's own range); None for a plain
    # image file.
    window: Mapped[str | None] = mapped_column(String(LONG))

    study: Mapped[Study] = relationship(back_populates="films")


class AuditLog(Base):
    """Who did what to which entry, and when. Append-only: the store updates no row, and
    deletes rows only once past their own retention period."""

    __tablename__ = "audit_log"
    __table_args__ = {"sqlite_autoincrement": True}  # ids grow: the log's order

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    action: Mapped[str] = mapped_column(String(SHORT))
    # No foreign key: a record outlives its entry (audit retention is the longer period).
    entry_id: Mapped[int | None] = mapped_column(BigId, index=True)
    study_instance_uid: Mapped[str | None] = mapped_column(String(UID_LENGTH))
    detail: Mapped[dict[str, Any] | None]


class StudyRead(Base):
    """A radiologist's read of a study (issue 31): the finding, who gave it and when, and
    what the model had answered for the study at that moment (its group, and the model,
    version and operating point of the film that decided it), so that live performance is
    measured against the answer the reader judged. One per study, changeable: each change
    is an audit record (action `read`); deleted with its study by retention."""

    __tablename__ = "reads"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("studies.id", ondelete="CASCADE"), unique=True)
    finding: Mapped[str] = mapped_column(String(SHORT))  # pneumonia, no_pneumonia, ...
    read_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    # The window of GET /operations/performance: the last reads, or those since a date.
    read_at: Mapped[datetime] = mapped_column(index=True)
    # The model's answer when read: priority.Group's label (flagged, routine, needs_review).
    model_group: Mapped[str] = mapped_column(String(SHORT))
    model_name: Mapped[str | None] = mapped_column(String(LONG))
    model_version: Mapped[str | None] = mapped_column(String(SHORT))
    threshold: Mapped[float | None]


class Delivery(Base):
    """A film's results that have not reached the PACS yet: `payload` holds what they are
    built from (app/dicom/recipe.py: the header's identifiers they must carry, sanitised,
    the score, the secondary capture's film at display size; rows queued before recipes hold
    the SR and secondary capture as DICOM Part 10 bytes). The identifiers go back to the
    PACS and nowhere else; the row is deleted once delivered (and the SQLite write-ahead log
    checkpointed), and with its study by retention."""

    __tablename__ = "deliveries"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    # One job per film: a film the PACS sends twice is delivered once.
    sop_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
