"""The interactive API page, under a Content-Security-Policy that still has no unsafe-inline:
Swagger UI's one inline script is allowed by its hash, its assets by their CDN origin."""

import base64
import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

_CDN = "https://cdn.jsdelivr.net"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(openapi_url=request.app.openapi_url,
                               title=request.app.title + " - API")
    body = bytes(page.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(body))
    policy = (f"default-src 'none'; script-src {_CDN} {hashes}; style-src {_CDN}; "
              f"img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
              "frame-ancestors 'none'; base-uri 'none'")
    return HTMLResponse(body, headers={"Content-Security-Policy": policy})
