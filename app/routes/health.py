from fastapi import APIRouter

from app.deps import ModelDep
from app.schemas import ErrorResponse, HealthResponse, ModelInfo

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up. Answered on the event loop, never behind the worker threads."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=HealthResponse,
            responses={503: {"model": ErrorResponse,
                             "description": "Still loading (Retry-After), or failed"}})
async def readyz(model: ModelDep) -> HealthResponse:
    """The model is loaded and warmed up: traffic can be sent."""
    return HealthResponse(status="ready",
                          model=ModelInfo(name=model.card.name, version=model.card.version))
