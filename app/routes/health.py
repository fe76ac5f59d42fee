from typing import Annotated

from fastapi import APIRouter, Depends

from app.deps import CatalogDep, DefaultModelDep, store_problem
from app.errors import StoreNotReadyError
from app.schemas import ErrorResponse, HealthResponse, ModelInfo, ModelsResponse, OfferedModel

router = APIRouter(tags=["health"])


# HEAD answers as GET does (probes and load balancers use either), documented once.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up. Answered on the event loop, never behind the worker threads."""
    return HealthResponse(status="ok")


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", response_model=HealthResponse,
            responses={503: {"model": ErrorResponse,
                             "description": "Still loading (Retry-After), or failed"}})
async def readyz(model: DefaultModelDep,
                 problem: Annotated[str | None, Depends(store_problem)]) -> HealthResponse:
    """The default model (and any other offered) is loaded and warmed up, and the worklist's
    database is reachable at the code's schema: traffic can be sent."""
    if problem is not None:
        raise StoreNotReadyError(problem)
    return HealthResponse(status="ready",
                          model=ModelInfo(name=model.card.name, version=model.card.version))


@router.get("/models", response_model=ModelsResponse,
            responses={503: {"model": ErrorResponse, "description": "Not ready yet"}})
async def models(catalog: CatalogDep,
                 default: DefaultModelDep) -> ModelsResponse:
    """The models this server offers, the default first; ask one with ?model=NAME."""
    return ModelsResponse(models=[OfferedModel.of(m.card, default=m is default)
                                  for m in catalog.models.values()])
