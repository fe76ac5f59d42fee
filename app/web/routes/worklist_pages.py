"""The worklist's pages: the list (server-rendered, so it works without JavaScript; the
script re-fetches its rows fragment every second and adds the keyboard), a study opened for
reading (its films large, the result and reasons, the read), the status and read buttons'
form posts, and the audit trail. Same token rule as the API; the page's login cookie counts
as the token. In shadow mode no page shows a result (app/web/schemas.py WorklistEntry.of).
"""

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.config import Settings
from app.errors import MalformedUploadError
from app.services import worklist
from app.services.catalog import ModelCatalog
from app.services.intake import store_uploads
from app.services.worklist import ListFilters
from app.store import Finding, Sort, Status
from app.store.service import MAX_PAGE
from app.web.auth import ActorDep, refuse_cross_site, require_token
from app.web.deps import (
    BatchDep,
    CatalogDep,
    EntryId,
    FiltersDep,
    IdentitySecretDep,
    RowId,
    ScorerDep,
    SettingsDep,
    StoreDep,
    templates_of,
)
from app.web.schemas import AuditEntry, WorklistEntry
from app.web.upload import read_small_form

router = APIRouter(prefix="/worklist", tags=["pages"], include_in_schema=False,
                   dependencies=[Depends(require_token)])

PAGE_SIZE = 100  # entries on one page of the list
Cursor = Annotated[str | None, Query(max_length=512)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def _render(request: Request, name: str, **context) -> HTMLResponse:
    return templates_of(request).TemplateResponse(request, name, context)


def _list_context(request: Request, store, catalog: ModelCatalog, settings: Settings,
                  filters: ListFilters, cursor: str | None, limit: int, actor: str) -> dict:
    """What the page and its rows fragment show: one page of the list, in its groups, its
    reading recorded (services/worklist.py PageViews: a refresh of the same page within
    its window is not recorded again)."""
    page = request.app.state.page_views.read(store, filters, actor, limit=limit,
                                             cursor=cursor)
    undelivered = store.undelivered([e.id for e in page.entries])
    entries = [WorklistEntry.of(e, settings.viewer_url, undelivered.get(e.id),
                                settings.shadow_mode) for e in page.entries]
    here = {**filters.query(), **({"cursor": cursor} if cursor else {}),
            **({"limit": str(limit)} if limit != PAGE_SIZE else {})}
    model = catalog.default
    return {
        "card": model.card if model else None,
        "threshold": catalog.threshold(model) if model else None,
        "point": catalog.operating_point(model) if model else None,
        # In shadow mode one group, in arrival order: the groups would tell the result.
        "groups": [("arrival", "In order of arrival", entries)] if settings.shadow_mode
        else [(key, label, [e for e in entries if e.group == key])
              for key, label in worklist.GROUP_LABELS.items()],
        "reads": worklist.READ_ACTIONS,
        "sorts": {sort: urlencode({**filters.query(), "sort": sort.value})
                  for sort in Sort},
        "sort": filters.sort, "sort_labels": worklist.SORT_LABELS,
        "shown": len(entries), "total": page.total, "filters": filters,
        "statuses": list(Status), "actions": worklist.STATUS_ACTIONS,
        "here": urlencode(here),
        "next_page": None if page.next_cursor is None else urlencode(
            {**filters.query(), "cursor": page.next_cursor}),
        "first_page": urlencode(filters.query()) if cursor else None,
        "csv": urlencode({**filters.query(), "format": "csv"}),
    }


@router.get("", response_class=HTMLResponse)
def worklist_page(request: Request, store: StoreDep, catalog: CatalogDep,
                  settings: SettingsDep, filters: FiltersDep, actor: ActorDep,
                  cursor: Cursor = None, limit: Limit = PAGE_SIZE) -> HTMLResponse:
    """The list in priority order with its filters and status buttons."""
    return _render(request, "worklist.html", **_list_context(
        request, store, catalog, settings, filters, cursor, limit, actor))


@router.get("/rows", response_class=HTMLResponse)
def worklist_rows(request: Request, store: StoreDep, catalog: CatalogDep,
                  settings: SettingsDep, filters: FiltersDep, actor: ActorDep,
                  cursor: Cursor = None, limit: Limit = PAGE_SIZE) -> HTMLResponse:
    """The page's list alone, as the page renders it: what its script polls, so that the
    rows have one template whether JavaScript runs or not."""
    return _render(request, "worklist_rows.html", **_list_context(
        request, store, catalog, settings, filters, cursor, limit, actor))


@router.post("", dependencies=[Depends(refuse_cross_site)])
def add_films_form(scorer: ScorerDep, files: BatchDep, store: StoreDep,
                   settings: SettingsDep, secret: IdentitySecretDep) -> Response:
    """The upload page's "Add to worklist" without JavaScript: the films scored and stored,
    then the worklist."""
    store_uploads(store, scorer, files, thumbnails=settings.worklist_thumbnails,
                  budget_seconds=settings.batch_budget_seconds, secret=secret)
    return RedirectResponse("/worklist", status_code=303)


async def finding_field(request: Request) -> Finding:
    """The finding a read button posted (its form's `finding` field); 400 for anything else."""
    finding = (await read_small_form(request)).get("finding", "")
    if finding not in set(Finding):
        raise MalformedUploadError("unknown finding")
    return Finding(finding)


async def status_field(request: Request) -> Status:
    """The status a button posted (its form's `status` field); 400 for anything else."""
    status = (await read_small_form(request)).get("status", "")
    if status not in set(Status):
        raise MalformedUploadError("unknown status")
    return Status(status)


@router.post("/entries/{entry_id}/status", dependencies=[Depends(refuse_cross_site)])
def status_form(entry_id: EntryId, status: Annotated[Status, Depends(status_field)],
                store: StoreDep, actor: ActorDep, filters: FiltersDep,
                cursor: Cursor = None) -> Response:
    """A status button without JavaScript: set it, then back to the same view of the list
    (its filters re-encoded from their parsed values, never echoed)."""
    worklist.change_status(store, entry_id, status, actor)
    back = {**filters.query(), **({"cursor": cursor} if cursor else {})}
    return RedirectResponse("/worklist" + (f"?{urlencode(back)}" if back else ""),
                            status_code=303)


# Not .../read: that path is the API's PUT, and a POST beside it would answer what the
# OpenAPI description says it does not (405).
@router.post("/entries/{entry_id}/read-form", dependencies=[Depends(refuse_cross_site)])
def read_form(entry_id: EntryId, finding: Annotated[Finding, Depends(finding_field)],
              store: StoreDep, actor: ActorDep, filters: FiltersDep,
              cursor: Cursor = None) -> Response:
    """A read button of the list without JavaScript: record it, then back to the same view
    of the list."""
    worklist.record_read(store, entry_id, finding, actor)
    back = {**filters.query(), **({"cursor": cursor} if cursor else {})}
    return RedirectResponse("/worklist" + (f"?{urlencode(back)}" if back else ""),
                            status_code=303)


@router.post("/studies/{entry_id}/read", dependencies=[Depends(refuse_cross_site)])
def study_read_form(entry_id: EntryId, finding: Annotated[Finding, Depends(finding_field)],
                    store: StoreDep, actor: ActorDep) -> Response:
    """A read button of the study view without JavaScript: record it, then the study."""
    worklist.record_read(store, entry_id, finding, actor)
    return RedirectResponse(f"/worklist/studies/{entry_id}", status_code=303)


@router.get("/studies/{entry_id}", response_class=HTMLResponse)
def study_page(request: Request, entry_id: EntryId, store: StoreDep, catalog: CatalogDep,
               settings: SettingsDep, actor: ActorDep) -> HTMLResponse:
    """A study opened for reading: its films large (the display copy the model saw, with
    its heatmap as a toggle, and the window used), the result and its reasons, the read
    buttons, the external viewer's link; recorded in the audit trail as opened. Without a
    kept copy, the page says the film is in the PACS."""
    entry = WorklistEntry.of(worklist.open_entry(store, entry_id, actor), settings.viewer_url,
                             store.undelivered([entry_id]).get(entry_id),
                             settings.shadow_mode)
    model = catalog.default
    return _render(request, "study.html", card=model.card if model else None, e=entry,
                   reads=worklist.READ_ACTIONS, statuses=worklist.STATUS_ACTIONS)


@router.get("/audit-trail", response_class=HTMLResponse)
def audit_trail_page(request: Request, store: StoreDep, catalog: CatalogDep,
                     entry_id: RowId = None, before_id: RowId = None) -> HTMLResponse:
    """The audit trail, newest first; one entry's with ?entry_id=."""
    records, older = worklist.audit_trail(store, entry_id=entry_id, limit=PAGE_SIZE,
                                          before_id=before_id)
    older_query = None if older is None else urlencode(
        {**({"entry_id": entry_id} if entry_id else {}), "before_id": older})
    model = catalog.default
    return _render(request, "audit.html", card=model.card if model else None,
                   records=[AuditEntry.of(r) for r in records], entry_id=entry_id,
                   older=older_query)
