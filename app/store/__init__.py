"""The triage worklist's store: studies and their films' results in SQLite or PostgreSQL.

Free of any web framework; the routes, the DICOM node and the console call WorklistStore.
"""

from app.store.cursors import MAX_ROW_ID, CursorKey, decode_cursor
from app.store.deliveries import PendingDelivery, Undelivered
from app.store.engine import database_url, make_engine
from app.store.records import (
    AuditAction,
    AuditRecord,
    Conflict,
    EntryNotFound,
    FilmRecord,
    FilmResult,
    Finding,
    InvalidCursor,
    JudgedRead,
    Page,
    PurgeCounts,
    Read,
    Sort,
    Status,
    StudyEntry,
)
from app.store.retention import RetentionThread
from app.store.schema import head, schema_problem, upgrade
from app.store.service import WorklistStore

__all__ = [
    "MAX_ROW_ID", "AuditAction", "AuditRecord", "Conflict", "CursorKey", "EntryNotFound",
    "FilmRecord", "FilmResult", "Finding", "InvalidCursor", "JudgedRead", "Page",
    "PendingDelivery", "PurgeCounts", "Read", "RetentionThread", "Sort", "Status",
    "StudyEntry", "Undelivered", "WorklistStore",
    "database_url", "decode_cursor", "head", "make_engine", "schema_problem", "upgrade",
]
