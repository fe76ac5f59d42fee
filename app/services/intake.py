"""Scored films onto the worklist: what every storing door (an upload to /worklist/films, the
DICOM node's C-STORE and STOW-RS) turns a pipeline outcome into, one FilmRecord per film.

Only what the worklist keeps (issue 18's list) is copied: UIDs, the non-identifying study
facts of InstanceFacts, and the result. Never the patient's name, ID or birth date, the file
name, or the film (a thumbnail, and a copy at display size for the study view, only when
Settings.worklist_thumbnails is on).
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from app.contract.errors import FileTooLargeError, ImageError, RequestBudgetError
from app.contract.identifiers import InstanceFacts, instance_identity
from app.errors import ServerBusyError
from app.services.pipeline import FileResult, Prediction, Scorer, Source, score_films
from app.store import FilmRecord, StudyEntry, WorklistStore
from app.store.models import UID_LENGTH

UPLOAD = "upload"


def film_record(facts: InstanceFacts, source: str, received_at: datetime,
                scored_at: datetime | None, prediction: Prediction | None,
                error: ImageError | None, thumbnail: bool = False,
                display: bytes | None = None, patient_key: str | None = None) -> FilmRecord:
    """One film's FilmRecord: scored (`prediction`) or listed with why not (`error`). With
    `thumbnail`, its thumbnail and display copy: `display` (a PNG made already), else the
    prediction's display film as a PNG."""
    p = prediction
    return FilmRecord(
        study_instance_uid=facts.study_instance_uid, sop_instance_uid=facts.sop_instance_uid,
        series_instance_uid=facts.series_instance_uid, received_at=received_at,
        source=source, accession_number=facts.accession_number,
        patient_age=facts.patient_age, patient_sex=facts.patient_sex,
        modality=facts.modality, view_position=facts.view_position,
        body_part=facts.body_part, study_date=facts.study_date, study_time=facts.study_time,
        scored_at=scored_at if p is not None else None,
        model_name=p.model_name if p else None,
        model_version=str(p.model_version) if p else None,
        probability=p.probability if p and p.assessable else None,
        threshold=p.threshold if p else None,
        flagged=p.flagged if p and p.assessable else None,
        assessable=bool(p and p.assessable), reasons=tuple(p.reasons) if p else (),
        warnings=tuple(p.warnings) if p else (),
        error_code=error.code if error is not None else None,
        error_detail=error.message if error is not None else None,
        thumbnail=_png(p.thumbnail) if p and thumbnail and p.thumbnail else None,
        display=(display if display is not None else display_png(p.display.film)
                 if p and p.display else None) if thumbnail else None,
        window=p.image.dicom.window if p and p.image.dicom else None,
        patient_key=patient_key)


def upload_records(facts: Sequence[InstanceFacts | None], results: Sequence[FileResult],
                   received_at: datetime, scored_at: datetime,
                   thumbnails: bool = False,
                   displays: Mapping[int, bytes] | None = None,
                   keys: Sequence[str | None] | None = None) -> list[FilmRecord]:
    """FilmRecords of uploaded files, in upload order, from each file's `facts` and patient
    key (`upload_identity`, noted while its bytes were in hand) and its display copy
    (`displays`, by file index). A file not looked at (`looked_at`) is not recorded: its
    sender is told to send it again, or that it is over the byte limit."""
    displays = displays or {}
    keys = keys if keys is not None else [None] * len(facts)
    return [film_record(f, UPLOAD, received_at, scored_at, result.prediction, result.error,
                        thumbnails, displays.get(result.index), key)
            for f, key, result in zip(facts, keys, results, strict=True)
            if f is not None and looked_at(result)]


def looked_at(result: FileResult) -> bool:
    """Whether the pipeline read the file: not when it was refused as busy, its request's
    time ran out first, or it was over the byte limit (its bytes never held)."""
    return not isinstance(result.error, ServerBusyError | RequestBudgetError | FileTooLargeError)


def upload_facts(data: bytes) -> InstanceFacts:
    """What the worklist keeps of an uploaded file. A DICOM file keeps its own UIDs and
    study facts; any other file is its own study under UIDs derived from its bytes, so the
    same file uploaded twice is one film."""
    return upload_identity(data, None)[0]


def upload_identity(data: bytes, secret: bytes | None) -> tuple[InstanceFacts, str | None]:
    """`upload_facts`, and a DICOM file's patient key under `secret` (the node's: a study
    first seen by C-STORE and a file of another patient uploaded into it, or the other way
    round, are two patients there too); None for any other file (its own study)."""
    found = instance_identity(data, secret)
    if found is None or not _fits(found[0]):
        return _upload_facts(data), None
    return found


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StoredFile:
    """One uploaded file's outcome: where it is on the worklist (`entry_id`, `film_id`; None
    when it was not looked at and not stored: `looked_at`), and why it was not scored
    (`error`)."""

    result: FileResult
    entry_id: int | None
    film_id: int | None


@dataclass(frozen=True)
class StoredUpload:
    entries: list[StudyEntry]  # the studies the files belong to, each with all its films
    files: list[StoredFile]  # in upload order


def store_uploads(store: WorklistStore, scorer: Scorer,
                  files: Iterable[tuple[str, Source]], thumbnails: bool = False,
                  clock: Callable[[], datetime] = now,
                  budget_seconds: float | None = None,
                  secret: bytes | None = None) -> StoredUpload:
    """Score uploaded files through the pipeline as they come (`files` is read lazily, each
    file's bytes let go once it is scored) and put them on the worklist in one commit once
    the last one is scored: committed on return. A body that breaks off part-way raises its
    error from `files` and nothing is stored, so the worklist never holds a film that no
    answer reported. Raises ServerBusyError when no file was looked at for want of room or
    time (nothing stored). `secret`: the install's patient-key secret (app/dicom/identity.py),
    so that a DICOM file of another patient than its study's is listed apart, as by the
    node."""
    received_at = clock()
    facts: list[InstanceFacts | None] = []
    keys: list[str | None] = []
    displays: dict[int, bytes] = {}
    results = list(_display_copies(score_films(
        scorer, _noting_facts(files, facts, keys, secret), thumbnails=thumbnails,
        budget_seconds=budget_seconds, display=thumbnails), displays))
    records = upload_records(facts, results, received_at, clock(), thumbnails, displays,
                             keys)
    if results and all(isinstance(r.error, ServerBusyError | RequestBudgetError)
                       for r in results):
        raise ServerBusyError()
    entries = store.add_films(records) if records else []
    where = {film.sop_instance_uid: (entry.id, film.id)
             for entry in entries for film in entry.films}
    stored, pending = [], iter(records)
    for f, result in zip(facts, results, strict=True):
        if f is not None and looked_at(result):
            entry_id, film_id = where[next(pending).sop_instance_uid]
            stored.append(StoredFile(result, entry_id, film_id))
        else:  # upload_records left it out
            stored.append(StoredFile(result, None, None))
    return StoredUpload(entries=entries, files=stored)


def _display_copies(results: Iterable[FileResult],
                    displays: dict[int, bytes]) -> Iterator[FileResult]:
    """`results` as they come, each film's display pixels (up to 512 x 512 x 3 bytes) made
    a PNG in `displays` (by file index) and let go: a worklist of 100 films holds 100 PNGs
    until it is stored, not 100 arrays."""
    for result in results:
        p = result.prediction
        if p is not None and p.display is not None:
            displays[result.index] = display_png(p.display.film)
            result = replace(result, prediction=replace(p, display=None))
        yield result


def _noting_facts(files: Iterable[tuple[str, Source]], facts: list[InstanceFacts | None],
                  keys: list[str | None], secret: bytes | None
                  ) -> Iterator[tuple[str, Source]]:
    """`files` as they come, each file's facts and patient key appended to `facts` and
    `keys` while its bytes are in hand (a file over the byte limit has neither)."""
    for name, source in files:
        found = upload_identity(source, secret) if isinstance(source, bytes) else (None, None)
        facts.append(found[0])
        keys.append(found[1])
        yield name, source
        del source  # let go before the next file is awaited


def _fits(facts: InstanceFacts) -> bool:
    """Its UIDs fit the worklist's columns (DICOM caps a UID at 64 characters; a file that
    breaks the rule is listed as its own study rather than refused)."""
    uids = (facts.study_instance_uid, facts.sop_instance_uid, facts.series_instance_uid or "")
    return all(len(uid) <= UID_LENGTH for uid in uids)


def _upload_facts(data: bytes) -> InstanceFacts:
    """UIDs under the UUID-derived root 2.25 (PS3.5 B.2), from the file's SHA-256: the same
    bytes always get the same study and instance."""
    return InstanceFacts(study_instance_uid=_uid(b"study", data), series_instance_uid=None,
                         sop_instance_uid=_uid(b"instance", data), sop_class_uid="")


def _uid(kind: bytes, data: bytes) -> str:
    return f"2.25.{int.from_bytes(hashlib.sha256(kind + data).digest()[:16], 'big')}"


def _png(uri: str) -> bytes:
    return base64.b64decode(uri.partition(",")[2])


def display_png(film: np.ndarray) -> bytes:
    """The study view's copy of a film: the (H, W) uint8 film at display size, as the
    model saw it (pipeline.Display), as a PNG at zlib's fastest level (film.png_uri's
    reason: 5 to 15 ms, not 80 to 110)."""
    buffer = io.BytesIO()
    Image.fromarray(film).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
