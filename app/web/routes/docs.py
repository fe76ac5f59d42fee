"""The interactive API page, served by the app itself so that it works without internet,
under a Content-Security-Policy that still has no unsafe-inline: Swagger UI's assets come
from the `swagger-ui-bundle-v2` package under /docs/assets, its one inline script is allowed
by its hash."""

import base64
import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from app.web.deps import static_dir_of

router = APIRouter(include_in_schema=False)
ASSETS = "/docs/assets"  # where main.py mounts `assets`
assets = StaticFiles(directory=str(swagger_ui_path))

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(openapi_url=request.app.openapi_url,
                               title=request.app.title + " - API",
                               swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css",
                               swagger_favicon_url="/static/favicon.svg")
    body = bytes(page.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(body))
    policy = (f"default-src 'none'; script-src 'self' {hashes}; style-src 'self'; "
              "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
              "base-uri 'none'")
    return HTMLResponse(body, headers={"Content-Security-Policy": policy})


@router.get("/favicon.ico")
async def favicon(request: Request) -> Response:
    """Browsers ask for it on every page that names none (the JSON answers)."""
    icon = static_dir_of(request) / "favicon.svg"
    return Response(icon.read_bytes(), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400"})
