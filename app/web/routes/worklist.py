"""The stored worklist's API: films in (scored and stored), the list out (JSON or CSV), a
study's status and read, the audit trail, thumbnails, the study view's film and heatmap.
Same token rule as /predict. In shadow mode no answer carries a result (issue 31).

Plain functions: FastAPI runs them in worker threads, off the event loop (the store and the
pipeline are synchronous).
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse

from app.errors import ShadowModeError
from app.services import worklist
from app.services.intake import store_uploads
from app.store.service import MAX_PAGE
from app.web.auth import ActorDep, refuse_cross_site, require_token
from app.web.deps import (
    BatchDep,
    CatalogDep,
    EntryId,
    FilmId,
    FiltersDep,
    IdentitySecretDep,
    RowId,
    ScorerDep,
    SettingsDep,
    StoreDep,
)
from app.web.schemas import (
    AuditEntry,
    AuditPage,
    ErrorResponse,
    ReadChange,
    StatusChange,
    WorklistEntry,
    WorklistPage,
    WorklistUpload,
    multipart_body,
)

router = APIRouter(prefix="/worklist", tags=["worklist"],
                   dependencies=[Depends(require_token)])


def _errors(texts: dict[int, str]) -> dict:
    """Documented error answers: 401 always, and these."""
    texts = {401: "An access token is configured and the request did not carry it", **texts}
    return {status: {"model": ErrorResponse, "description": text}
            for status, text in texts.items()}


_BAD_QUERY = "A parameter out of its range, or a date that is not ISO 8601"
_STORE_DOWN = "The worklist's database did not answer"


@router.post("/films", response_model=WorklistUpload,
             dependencies=[Depends(refuse_cross_site)],
             responses=_errors({
                 400: "Malformed multipart body", 404: "?model= names no model offered",
                 403: "Sent by another site's page (cross-site request forgery)",
                 408: "The upload was sent too slowly", 413: "Too many files or bytes",
                 422: "No 'files' field in the form",
                 503: "The model is not ready, every decode slot is busy, or the database "
                      "did not answer: nothing was stored"}),
             openapi_extra={"requestBody": multipart_body(
                 "files", "Chest X-rays (JPEG, PNG, DICOM, mixed)", many=True)})
def add_films(scorer: ScorerDep, files: BatchDep, store: StoreDep,
              settings: SettingsDep, secret: IdentitySecretDep) -> WorklistUpload:
    """Score every file of the multipart field `files` (repeated) and put it on the worklist.

    A DICOM file joins its study (by Study Instance UID); any other file is its own study.
    The same film sent again is the same film (idempotent). A file that cannot be scored is
    stored with its reason, in the "needs a human look" group. Everything in the answer was
    committed before it was sent.
    """
    upload = store_uploads(store, scorer, files, thumbnails=settings.worklist_thumbnails,
                           budget_seconds=settings.batch_budget_seconds, secret=secret)
    return WorklistUpload.of(upload, scorer.model.card, scorer.threshold, settings.viewer_url,
                             settings.shadow_mode)


@router.get("/entries", response_model=WorklistPage,
            responses={**_errors({400: "A paging cursor this server did not write",
                                  422: _BAD_QUERY, 503: _STORE_DOWN}),
                       200: {"content": {"text/csv": {}},
                             "description": "A page of the list as JSON, or with "
                                            "format=csv the whole filtered list as CSV"}})
def list_entries(
    store: StoreDep, filters: FiltersDep, settings: SettingsDep, actor: ActorDep,
    catalog: CatalogDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Entries per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000,
                                 description="Entries to skip (or page with cursor)")] = 0,
    cursor: Annotated[str | None, Query(max_length=512, description=(
        "The previous page's next_cursor: the page after it, stable while entries "
        "arrive"))] = None,
    format: Literal["json", "csv"] = "json",
):
    """The worklist in priority order: flagged studies first, highest triage score first
    (each film at its own model's operating point); then the rest; then the studies that
    need a human look; or by arrival (`sort`). Filters by status and by when the
    study arrived. `format=csv` returns every entry the filters match (the paging
    parameters apply to JSON), each cell safe from spreadsheet formulas. Both are recorded
    in the audit trail as exports: the CSV once, with its filters; JSON once per page, with
    its filters, paging and how many entries it held. In shadow mode, in arrival order and
    without the model's results."""
    if format == "csv":
        return StreamingResponse(
            worklist.export_csv(store, filters, actor, settings.shadow_mode,
                                catalog.name_threshold),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="worklist.csv"'})
    page = worklist.read_page(store, filters, actor, limit=limit, offset=offset,
                              cursor=cursor)
    return WorklistPage.of(page, settings.viewer_url,
                           store.undelivered([e.id for e in page.entries]),
                           settings.shadow_mode)


@router.get("/entries/{entry_id}", response_model=WorklistEntry,
            responses=_errors({404: "No entry has this id", 422: _BAD_QUERY,
                               503: _STORE_DOWN}))
def get_entry(entry_id: EntryId, store: StoreDep, settings: SettingsDep,
              actor: ActorDep) -> WorklistEntry:
    """One entry with all its films; recorded in the audit trail as opened."""
    return WorklistEntry.of(worklist.open_entry(store, entry_id, actor), settings.viewer_url,
                            shadow_mode=settings.shadow_mode)


@router.patch("/entries/{entry_id}", response_model=WorklistEntry,
              responses=_errors({400: "A body that is not JSON",
                                 404: "No entry has this id",
                                 422: "Not {\"status\": one of new, opened, reported, "
                                      "dismissed}", 503: _STORE_DOWN}))
def set_status(entry_id: EntryId, change: StatusChange, store: StoreDep,
               settings: SettingsDep, actor: ActorDep) -> WorklistEntry:
    """Set an entry's status; who and when are kept on the entry and in the audit trail."""
    entry = worklist.change_status(store, entry_id, change.status, actor)
    return WorklistEntry.of(entry, settings.viewer_url, shadow_mode=settings.shadow_mode)


@router.put("/entries/{entry_id}/read", response_model=WorklistEntry,
            responses=_errors({400: "A body that is not JSON",
                               404: "No entry has this id",
                               422: "Not {\"finding\": one of pneumonia, no_pneumonia, "
                                    "indeterminate}", 503: _STORE_DOWN}))
def set_read(entry_id: EntryId, change: ReadChange, store: StoreDep, settings: SettingsDep,
             actor: ActorDep) -> WorklistEntry:
    """Give or change the radiologist's read of a study: what live performance is measured
    against (GET /operations/performance). For a RIS or a report-labelling script as for
    the page. Who and when are kept on the entry and in the audit trail (action `read`,
    from and to); the same finding again changes nothing."""
    entry = worklist.record_read(store, entry_id, change.finding, actor)
    return WorklistEntry.of(entry, settings.viewer_url, shadow_mode=settings.shadow_mode)


@router.get("/audit", response_model=AuditPage,
            responses=_errors({422: _BAD_QUERY, 503: _STORE_DOWN}))
def audit(store: StoreDep, entry_id: RowId = None, before_id: RowId = None,
          limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> AuditPage:
    """The audit trail, newest first: who opened, changed or exported which entry, and
    when, and what retention deleted; all of it, or one entry's."""
    records, older = worklist.audit_trail(store, entry_id=entry_id, limit=limit,
                                          before_id=before_id)
    return AuditPage(records=[AuditEntry.of(r) for r in records], next_before_id=older)


@router.get("/films/{film_id}/display", response_class=Response,
            responses={**_errors({404: "No copy of this film is kept: it is in the PACS",
                                  422: _BAD_QUERY, 503: _STORE_DOWN}),
                       200: {"content": {"image/png": {}},
                             "description": "The film at display size, as the model saw it"}})
def film_display(film_id: FilmId, store: StoreDep) -> Response:
    """A film at display size (512 px on its longest side) as the model saw it: the DICOM
    display pipeline's rendering (window applied, borders cropped), kept only while
    PNEUMONIA_WORKLIST_THUMBNAILS is on."""
    return Response(worklist.display_film(store, film_id), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/films/{film_id}/heatmap", response_class=Response,
            responses={**_errors({403: "Shadow mode: no heatmap is shown",
                                  404: "No heatmap for this film (not judged, no copy kept, "
                                       "or another model version scored it)",
                                  422: _BAD_QUERY,
                                  503: "Every heatmap place is busy, or the database did "
                                       "not answer"}),
                       200: {"content": {"image/png": {}},
                             "description": "A transparent overlay of the display's size"}})
def film_heatmap(film_id: FilmId, store: StoreDep, scorer: ScorerDep,
                 settings: SettingsDep) -> Response:
    """The occlusion heatmap of a film the model judged, as a transparent overlay of its
    display copy, drawn when asked (?model= the film's model, GET /models); the header
    X-Heatmap-Warning says when the map points mostly outside the body. Never in shadow
    mode."""
    if settings.shadow_mode:
        raise ShadowModeError()
    overlay, warning = worklist.heatmap_overlay(store, scorer, film_id)
    headers = {"Cache-Control": "private, max-age=3600"}
    if warning:  # a sentence of the app's own (app/contract/body.py), ASCII
        headers["X-Heatmap-Warning"] = warning.encode("ascii", "replace").decode()
    return Response(overlay, media_type="image/png", headers=headers)


@router.get("/films/{film_id}/thumbnail", response_class=Response,
            responses={**_errors({404: "No thumbnail stored for this film",
                                  422: _BAD_QUERY, 503: _STORE_DOWN}),
                       200: {"content": {"image/png": {}}, "description": "A small PNG"}})
def film_thumbnail(film_id: FilmId, store: StoreDep) -> Response:
    """A film's thumbnail, kept only while PNEUMONIA_WORKLIST_THUMBNAILS is on."""
    return Response(worklist.thumbnail(store, film_id), media_type="image/png")
