from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from app.errors import StoreNotReadyError
from app.web.deps import CatalogDep, DefaultModelDep, store_problem, templates_of
from app.web.errors import wants_html
from app.web.schemas import (
    ErrorResponse,
    HealthResponse,
    ModelInfo,
    ModelsResponse,
    ReadyResponse,
)

router = APIRouter(tags=["health"])


# HEAD answers as GET does (probes and load balancers use either), documented once.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up. Answered on the event loop, never behind the worker threads."""
    return HealthResponse(status="ok")


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", response_model=ReadyResponse,
            responses={503: {"model": ErrorResponse,
                             "description": "Still loading (Retry-After), or failed"}})
async def readyz(model: DefaultModelDep, catalog: CatalogDep,
                 problem: Annotated[str | None, Depends(store_problem)]) -> ReadyResponse:
    """The default model (and any other offered) is loaded and warmed up, and the worklist's
    database is reachable at the code's schema: traffic can be sent. `warnings` names what
    an operator should still know (a site profile that is not applied): ready all the
    same."""
    if problem is not None:
        raise StoreNotReadyError(problem)
    return ReadyResponse(status="ready",
                         model=ModelInfo(name=model.card.name, version=model.card.version),
                         warnings=catalog.warnings)


@router.get("/models", response_model=ModelsResponse,
            responses={200: {"content": {"text/html": {"schema": {"type": "string"}}},
                             "description": "JSON; a page when the client asks for "
                                            "text/html (a browser)"},
                       503: {"model": ErrorResponse, "description": "Not ready yet"}})
async def models(request: Request, catalog: CatalogDep,
                 default: DefaultModelDep) -> ModelsResponse | HTMLResponse:
    """The models this server offers, the default first; ask one with ?model=NAME. A
    browser (Accept: text/html) gets them as a page, with each one's threshold as this
    server applies it and links to its card and to the upload page."""
    offered = ModelsResponse.of(catalog)
    if not wants_html(request):
        return offered
    applied = {m.card.name: catalog.operating_point(m) for m in catalog.models.values()}
    robustness = {m.card.name: m.robustness for m in catalog.models.values()}
    return templates_of(request).TemplateResponse(
        request, "models.html", {"card": default.card, "models": offered.models,
                                 "applied": applied, "robustness": robustness})
