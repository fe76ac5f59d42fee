"""The documentation site at /guide: what `mkdocs build` writes from docs/ into
Settings.guide_dir, served as files when it is there (main.py mounts it), under a
Content-Security-Policy of its own.

Material for MkDocs' pages carry small inline scripts (the page's scope and colour scheme,
set before the bundle loads); each is allowed by its hash, page by page, as /docs allows
Swagger UI's. Nothing else is loosened: scripts, styles, the search worker and images come
from the site's own files, and every other page keeps the app's policy
(app/web/middleware.py, which leaves a route's own policy in place).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.types import Scope

PREFIX = "/guide"
router = APIRouter(include_in_schema=False)

# An inline script is a <script> without attributes: those with src= are the site's files,
# and Material's configuration block (type="application/json") is data, never run.
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def is_built(guide_dir: Path) -> bool:
    return (guide_dir / "index.html").is_file()


def policy(page: bytes) -> str:
    """The Content-Security-Policy of one page of the site: its own inline scripts by their
    SHA-256, everything else from the site's origin only (fonts included: the theme's font
    is off, so none is fetched from the internet)."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page))
    return (f"default-src 'none'; script-src 'self'{hashes}; style-src 'self'; "
            "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class GuideFiles(StaticFiles):
    """The site's files; an HTML page (a few tens of KB) is read whole to hash its scripts."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 404:
            # MkDocs' 404.html links its assets from the site's root (/assets/...), which
            # is the app's here: the app's own "not found" answers instead.
            raise HTTPException(status_code=404)
        if isinstance(response, FileResponse) and response.media_type == "text/html":
            page = Path(response.path).read_bytes()
            return Response(page, status_code=response.status_code, media_type="text/html",
                            headers={"Content-Security-Policy": policy(page)})
        return response


@router.get(PREFIX)
async def guide_home() -> RedirectResponse:
    """/guide to the site's home, /guide/ (a path only: no address from the Host header)."""
    return RedirectResponse(PREFIX + "/", status_code=307)
