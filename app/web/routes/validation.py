"""The site's local validations (issue 30): /validation lists the one adopted (the site
profile in force) and every one kept in the state folder, each linking to its report,
served as `pneumonia-triage validate` wrote it. Same token rule as the worklist and the
scoring routes: a validation names the site's own films (its labels file's lines and
sources), so it is the site's data, not the model's (unlike /report, the model's own).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse, HTMLResponse

from app.contract.site import VALIDATION_ID
from app.errors import UnknownValidationError
from app.services import site
from app.web.auth import require_token
from app.web.deps import CatalogDep, SettingsDep, templates_of

router = APIRouter(prefix="/validation", tags=["pages"], include_in_schema=False,
                   dependencies=[Depends(require_token)])

# The report is self-contained HTML with its own inline style and embedded figures (data:
# images): this route's own policy lets that style in, and no script, no request, no form;
# `sandbox` gives the page an origin of its own, so nothing in it can reach the app's.
REPORT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                 "frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox")

ValidationId = Annotated[str, Path(pattern=VALIDATION_ID)]


@router.get("", response_class=HTMLResponse)
def validations(request: Request, settings: SettingsDep,
                catalog: CatalogDep) -> HTMLResponse:
    """The adopted validation (with the operating point the server applies) and the kept
    ones, newest first."""
    kept = site.kept_validations(settings.state_dir, catalog.site)
    model = catalog.default
    return templates_of(request).TemplateResponse(request, "validation.html", {
        "card": model.card if model else None, "profile": catalog.site, "kept": kept,
        "point": catalog.operating_point(model) if model else None,
        "warnings": catalog.warnings})


@router.get("/{validation_id}/report.html", response_class=FileResponse)
def report(validation_id: ValidationId, settings: SettingsDep) -> FileResponse:
    """A kept validation's report.html, as it was written (the id is 12 lowercase hex
    digits, checked before the file system is asked: no other path reaches it)."""
    path = site.report_file(settings.state_dir, validation_id)
    if path is None:
        raise UnknownValidationError()
    return FileResponse(path, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": REPORT_POLICY})
