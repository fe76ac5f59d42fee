"""The stored worklist as its users work it: filters, pages, a study opened, its status
changed, the list exported as CSV, and who did each (the audit trail).

What the API and the page share; the store (app/store/) keeps the rows and the order. Store
errors become request errors here (app/errors.py), so routes stay a call and a schema.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from urllib.parse import quote

from app.contract.dicom_age import age_string_years
from app.contract.triage_score import score_text
from app.errors import (
    InvalidCursorError,
    NoDisplayError,
    NoHeatmapError,
    NoThumbnailError,
    UnknownEntryError,
)
from app.services.display import csv_row
from app.services.pipeline import Scorer, score_film
from app.services.triage import Decision
from app.store import (
    MAX_ROW_ID,
    AuditAction,
    AuditRecord,
    EntryNotFound,
    Finding,
    InvalidCursor,
    Page,
    Sort,
    Status,
    StudyEntry,
    WorklistStore,
    decode_cursor,
)

# The list's groups, in the order shown, as triage decisions (app/services/triage.py), and
# what the page calls them: triage words, never a finding.
GROUP_DECISIONS = {"flagged": Decision.FLAGGED, "routine": Decision.NOT_FLAGGED,
                   "needs_review": Decision.NEEDS_HUMAN_LOOK}
GROUP_LABELS = {group: d.text[:1].upper() + d.text[1:] for group, d in GROUP_DECISIONS.items()}
# What a clinician can set from the page ("new" stays settable through the API).
STATUS_ACTIONS = {Status.OPENED: "Opened", Status.REPORTED: "Reported",
                  Status.DISMISSED: "Dismissed"}
# A radiologist's read, as the page offers it: each finding's key (the page's script and
# the buttons' accesskey hints) and its words. A finding, never a triage word.
READ_ACTIONS = {Finding.PNEUMONIA: ("p", "Pneumonia"),
                Finding.NO_PNEUMONIA: ("n", "No pneumonia"),
                Finding.INDETERMINATE: ("i", "Indeterminate")}
# The list's orders as its column headers offer them.
SORT_LABELS = {Sort.PRIORITY: "priority", Sort.NEWEST: "newest first",
               Sort.OLDEST: "oldest first"}
# Age bands the list shows instead of the age (issue 31): [from, to) in years and the words.
# 1-5 y is the committed cards' intended ages (their intended_population, [1, 6)).
AGE_BANDS = ((0.0, 1.0, "under 1 y"), (1.0, 6.0, "1-5 y"), (6.0, 11.0, "6-10 y"),
             (11.0, 18.0, "11-17 y"), (18.0, math.inf, "18 y or over"))
# The characters of a Study Instance UID the list shows without an accession number: the
# end, which differs between studies of one site (its start is the site's root).
UID_TAIL = 8
# Ids are 64-bit in the database: a larger one is refused before it reaches it.
MAX_ID = MAX_ROW_ID
EXPORT_PAGE = 500  # entries read per query while a CSV export streams

_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)

Moment = date | datetime


@dataclass(frozen=True)
class ListFilters:
    """Which entries to list. A date means that whole day in UTC: `received_from` from its
    start, `received_to` to its end (inclusive). A datetime without an offset is UTC."""

    status: Status | None = None
    received_from: Moment | None = None
    received_to: Moment | None = None
    sort: Sort = Sort.PRIORITY

    @property
    def narrows(self) -> bool:
        """Some filter leaves entries out (the order alone does not)."""
        return any(value is not None
                   for value in (self.status, self.received_from, self.received_to))

    def window(self) -> tuple[datetime | None, datetime | None]:
        """received_from <= an entry's arrival < received_to, as aware datetimes."""
        return (_bound(self.received_from, end=False), _bound(self.received_to, end=True))

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for links and the audit trail)."""
        values = {"status": self.status.value if self.status else None,
                  "received_from": _iso(self.received_from),
                  "received_to": _iso(self.received_to),
                  "sort": None if self.sort is Sort.PRIORITY else self.sort.value}
        return {name: value for name, value in values.items() if value is not None}


def start_of(moment: Moment | None) -> datetime | None:
    """A moment as an aware datetime: a date from its start in UTC, a datetime without an
    offset in UTC (ListFilters' rule); None for None."""
    return _bound(moment, end=False)


def _iso(moment: Moment | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _bound(moment: Moment | None, end: bool) -> datetime | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):  # a whole day
        if end and moment == date.max:
            return None
        moment = datetime.combine(moment + timedelta(days=1) if end else moment, time(),
                                  tzinfo=UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # within a day of year 1 or 9999: as far as time goes
        return _EARLIEST if moment.year == 1 else _LATEST


def list_page(store: WorklistStore, filters: ListFilters, *, limit: int, offset: int = 0,
              cursor: str | None = None) -> Page:
    """One page of the list in the filters' order (by default group, then triage score:
    app/store/priority.py). Raises InvalidCursorError."""
    received_from, received_to = filters.window()
    try:
        return store.entries(status=filters.status, received_from=received_from,
                             received_to=received_to, limit=limit, offset=offset,
                             cursor=cursor, sort=filters.sort)
    except InvalidCursor as exc:  # app/store/cursors.py: nothing forged reaches the database
        raise InvalidCursorError() from exc


def read_page(store: WorklistStore, filters: ListFilters, actor: str, *, limit: int,
              offset: int = 0, cursor: str | None = None) -> Page:
    """One page of the list for the API, its reading recorded in the audit trail as the
    CSV export's is (an `exported` record, format "json"): every page, so that paging
    through the whole list leaves as much trace as exporting it. The record is committed
    before the page is returned: a page whose record failed is never sent. Raises
    InvalidCursorError (and then records nothing: nothing was read)."""
    page = list_page(store, filters, limit=limit, offset=offset, cursor=cursor)
    store.record(actor, AuditAction.EXPORTED, None,
                 page_detail(filters, page, limit=limit, offset=offset, cursor=cursor))
    return page


class PageViews:
    """The worklist page's reads in the audit trail (an `exported` record, format "html"),
    as the API's are, but at most once every `repeat_seconds` for the same reader, filters
    and paging: the open page refreshes its rows every few seconds (static/worklist.js),
    and a record a refresh would bury the trail. Another page, other filters, another
    reader or a study shown that was not is recorded at once, so paging or scripting
    through the list, or a new patient on it, leaves its trace.
    Per process (each replica records its own readers); thread-safe."""

    def __init__(self, repeat_seconds: float = 900.0, remembered: int = 4096,
                 clock: Callable[[], float] = monotonic) -> None:
        self._repeat = repeat_seconds
        self._remembered = remembered
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def read(self, store: WorklistStore, filters: ListFilters, actor: str, *, limit: int,
             cursor: str | None = None) -> Page:
        """One page of the list for the page, its reading recorded (committed before it is
        returned) unless this reader read the same page within `repeat_seconds`. Raises
        InvalidCursorError (and records nothing)."""
        page = list_page(store, filters, limit=limit, cursor=cursor)
        detail = {**page_detail(filters, page, limit=limit, offset=0, cursor=cursor),
                  "format": "html"}
        # The entries shown too: a refresh that shows a newly arrived study is a new read.
        key = (actor, json.dumps({**{k: v for k, v in detail.items() if k != "entries"},
                                  "shown": sorted(entry.id for entry in page.entries)},
                                 sort_keys=True))
        now = self._clock()
        with self._lock:
            last = self._seen.get(key)
        if last is None or now - last >= self._repeat:
            store.record(actor, AuditAction.EXPORTED, None, detail)
            with self._lock:
                self._seen[key] = now
                self._seen.move_to_end(key)
                while len(self._seen) > self._remembered:
                    self._seen.popitem(last=False)
        return page


def page_detail(filters: ListFilters, page: Page, *, limit: int, offset: int,
                cursor: str | None) -> dict[str, str | int]:
    """An API page read as the audit trail shows it: the filters, the paging asked for (the
    cursor as sent, and the entry it continues after, for a reader), the entries sent."""
    paging: dict[str, str | int] = {"limit": limit}
    if offset:
        paging["offset"] = offset
    if cursor is not None:
        paging.update(cursor=cursor, after_entry=decode_cursor(cursor).entry_id)
    return {"format": "json", **filters.query(), **paging, "entries": len(page.entries)}


def open_entry(store: WorklistStore, entry_id: int, actor: str) -> StudyEntry:
    """An entry in full, its opening recorded in the audit trail first. Raises
    UnknownEntryError."""
    try:
        store.record(actor, AuditAction.OPENED, entry_id)
        return store.entry(entry_id)
    except EntryNotFound as exc:
        raise UnknownEntryError(entry_id) from exc


def change_status(store: WorklistStore, entry_id: int, status: Status | str,
                  actor: str) -> StudyEntry:
    """Set an entry's status (audited in the same transaction). Raises UnknownEntryError,
    ValueError for an unknown status."""
    try:
        return store.set_status(entry_id, Status(status), actor)
    except EntryNotFound as exc:
        raise UnknownEntryError(entry_id) from exc


def record_read(store: WorklistStore, entry_id: int, finding: Finding | str,
                actor: str) -> StudyEntry:
    """Give or change a study's read (audited in the same transaction; the same finding
    again records nothing). Raises UnknownEntryError, ValueError for an unknown finding."""
    try:
        return store.set_read(entry_id, Finding(finding), actor)
    except EntryNotFound as exc:
        raise UnknownEntryError(entry_id) from exc


def display_film(store: WorklistStore, film_id: int) -> bytes:
    """A film's display copy (PNG), kept while thumbnails are. Raises NoDisplayError."""
    found = store.display(film_id)
    if found is None:
        raise NoDisplayError()
    return found


def heatmap_overlay(store: WorklistStore, scorer: Scorer,
                    film_id: int) -> tuple[bytes, str | None]:
    """The occlusion heatmap of a stored film, as a transparent PNG overlay of its display
    copy, and the warning said with a map that points mostly outside the body (or None):
    the film is scored again from that copy, through the pipeline as an upload is (its heat
    drawn over it, pipeline.draw_heatmap), since the full film is not kept. Only for a film
    the model judged, by the scorer's model and version. Raises NoHeatmapError,
    ServerBusyError (the explanations' places are taken)."""
    film = store.film(film_id)
    card = scorer.model.card
    if film is None or not film.has_display or film.probability is None \
            or not film.assessable or film.error_code is not None \
            or (film.model_name, film.model_version) != (card.name, str(card.version)):
        raise NoHeatmapError()
    shown = store.display(film_id)
    if shown is None:  # deleted by retention meanwhile
        raise NoHeatmapError()
    drawn = score_film(scorer, shown, explain=True, admit=scorer.explains(True)).heatmap
    if drawn is None:  # the model draws none, or the copy alone is not assessable
        raise NoHeatmapError()
    return base64.b64decode(drawn.overlay.partition(",")[2]), drawn.warning


def age_band(patient_age: str | None) -> str | None:
    """The band of a DICOM age string ("004Y" -> "1-5 y"), what the list shows; None when
    there is none or it is not an age string."""
    years = age_string_years(patient_age)
    if years is None:
        return None
    return next(words for low, high, words in AGE_BANDS if low <= years < high)


def study_label(entry: StudyEntry) -> str:
    """How the list names a study: its accession number, else the end of the Study Instance
    UID it came with ("…" and UID_TAIL characters), so that an upload's 2.25 UID fits a
    line. The whole UID stays beside it (title and copy) and in every answer."""
    if entry.accession_number:
        return entry.accession_number
    uid = entry.conflict_of or entry.study_instance_uid
    return uid if len(uid) <= UID_TAIL + 1 else "…" + uid[-UID_TAIL:]


def record_shadow_mode(store: WorklistStore, shadow_mode: bool) -> AuditRecord | None:
    """The audit record, at start-up, of PNEUMONIA_SHADOW_MODE turned on or off (None when
    it is as the last record says, or off with no record: the default): who ran the trial
    silently and when it ended are in the trail."""
    last = store.last_record(AuditAction.SHADOW_MODE)
    was_on = bool(last and last.detail and last.detail.get("shadow_mode"))
    if was_on == shadow_mode:
        return None
    return store.record_settings(AuditAction.SHADOW_MODE, {
        "setting": "PNEUMONIA_SHADOW_MODE", "shadow_mode": shadow_mode,
        "meaning": "results kept from clinicians and the PACS, measured only" if shadow_mode
        else "shadow mode left: results shown and sent again"})


def thumbnail(store: WorklistStore, film_id: int) -> bytes:
    """A film's stored thumbnail PNG. Raises NoThumbnailError."""
    found = store.thumbnail(film_id)
    if found is None:
        raise NoThumbnailError()
    return found


def audit_trail(store: WorklistStore, *, entry_id: int | None = None, limit: int = 100,
                before_id: int | None = None) -> tuple[list[AuditRecord], int | None]:
    """Audit records, newest first, and the `before_id` of the next (older) page, if any."""
    records = store.audit(entry_id=entry_id, limit=limit + 1, before_id=before_id)
    more = len(records) > limit
    records = records[:limit]
    return records, records[-1].id if more and records else None


def record_intended_ages(store: WorklistStore, ages: tuple[float, float],
                         model_name: str) -> AuditRecord:
    """The audit record, at start-up, of the ages the site has validated `model_name` on
    besides its card's (Settings.intended_age_years): films of patients of those ages are
    ranked from now on."""
    return store.record_settings(AuditAction.INTENDED_USE, {
        "setting": "PNEUMONIA_INTENDED_AGE_YEARS", "age_years": list(ages),
        "model": model_name,
        "meaning": f"{ages[0]:g} to under {ages[1]:g} years ranked besides the card's ages"})


def viewer_link(template: str | None, study_uid: str) -> str | None:
    """The PACS viewer's address of a study: `template` (Settings.viewer_url) with
    {study_uid} replaced; None without a template."""
    if template is None:
        return None
    return template.replace("{study_uid}", quote(study_uid, safe=""))


# --- CSV ---------------------------------------------------------------------------------

CSV_COLUMNS = ("rank", "group", "decision", "triage_score", "priority", "flagged", "status",
               "status_by", "status_at", "study_instance_uid", "accession_number", "patient_age",
               "patient_sex", "study_date", "received_at", "source", "films", "models",
               "operating_points", "notes", "read", "read_by", "read_at")
# (model name, model version, threshold) -> how the threshold is named, e.g. "0.8231 (site
# operating point, validated on 615 films on 2026-12-07)": ModelCatalog.name_threshold.
PointNamer = Callable[[str, str, float], str]
# What a clinician's CSV leaves empty in shadow mode: the model's result.
_RESULT_COLUMNS = frozenset({"group", "decision", "triage_score", "priority", "flagged",
                             "models", "notes"})


def export_csv(store: WorklistStore, filters: ListFilters, actor: str,
               shadow_mode: bool = False,
               name_point: PointNamer | None = None) -> Iterator[str]:
    """Every entry the filters match, in list order, as CSV (RFC 4180, "\\n" line ends;
    every cell through `csv_cell`, the one rule against spreadsheet formulas); in shadow
    mode without the model's result. `name_point` names the threshold each film was
    scored at (ModelCatalog.name_threshold: the site's, the card's, the setting's). The
    export is recorded in the audit trail, with its filters, before the first line; the
    rows are read a page at a time as they are sent, so the list's size bounds no memory."""
    store.record(actor, AuditAction.EXPORTED, None, {"format": "csv", **filters.query()})
    return _csv_lines(store, filters, shadow_mode, name_point)


def _csv_lines(store: WorklistStore, filters: ListFilters, shadow_mode: bool,
               name_point: PointNamer | None) -> Iterator[str]:
    yield csv_row(CSV_COLUMNS)
    rank, cursor, first = 0, None, True
    while first or cursor is not None:
        page = list_page(store, filters, limit=EXPORT_PAGE, cursor=cursor)
        for entry in page.entries:
            rank += 1
            cells = entry_cells(rank, entry, name_point)
            if shadow_mode:
                cells = ["" if column in _RESULT_COLUMNS else cell
                         for column, cell in zip(CSV_COLUMNS, cells, strict=True)]
            yield csv_row(cells)
        cursor, first = page.next_cursor, False


def entry_triage_score(entry: StudyEntry) -> tuple[float | None, str | None]:
    """The study's triage score (0-1, to 6 decimals) and its text ('99'): the stored value
    that ranks it in the list (app/store/priority.py: the highest among the films that
    count, each at the operating point it was scored at), so the scores shown come in the
    list's order whatever the models. (None, None) without one."""
    if entry.triage_score is None:
        return None, None
    return entry.triage_score, score_text(entry.triage_score)  # unrounded, as the flag


def entry_cells(rank: int, entry: StudyEntry, name_point: PointNamer | None = None
                ) -> list[str]:
    """One entry's CSV cells, in CSV_COLUMNS order."""
    models = sorted({f"{f.model_name} v{f.model_version}" for f in entry.films
                     if f.model_name})
    points = dict.fromkeys(
        f"{f.model_name} v{f.model_version} at " + (
            name_point(f.model_name, f.model_version, f.threshold) if name_point
            else f"{f.threshold:.4g}")
        for f in entry.films if f.model_name and f.model_version and f.threshold is not None)
    _, score = entry_triage_score(entry)
    return [str(rank), entry.group, GROUP_DECISIONS[entry.group].text, score or "",
            "" if entry.priority is None else f"{entry.priority:.6f}",
            "yes" if entry.flagged else "no", entry.status.value, entry.status_by or "",
            _iso(entry.status_at) or "", entry.study_instance_uid,
            entry.accession_number or "", entry.patient_age or "", entry.patient_sex or "",
            _iso(entry.study_date) or "", entry.received_at.isoformat(), entry.source,
            str(len(entry.films)), "; ".join(models), "; ".join(points),
            "; ".join(entry_notes(entry)),
            entry.read.finding.value if entry.read else "",
            entry.read.read_by if entry.read else "",
            _iso(entry.read.read_at) if entry.read else ""]


def entry_notes(entry: StudyEntry) -> list[str]:
    """Why to look twice at an entry, film by film: refusals, assessability, warnings."""
    notes: list[str] = []
    for film in entry.films:
        if film.error_detail:
            notes.append(film.error_detail)
        elif not film.assessable:
            reasons = ", ".join(film.reasons) or "no reason given"
            notes.append(f"not assessable by the model ({reasons})")
        notes.extend(film.warnings)
    return list(dict.fromkeys(notes))  # each once, in order
