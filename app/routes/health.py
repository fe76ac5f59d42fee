from fastapi import APIRouter, Request

from app.errors import ModelNotReadyError
from app.schemas import ErrorResponse, HealthResponse, ModelInfo, ModelsResponse, OfferedModel

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up. Answered on the event loop, never behind the worker threads."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=HealthResponse,
            responses={503: {"model": ErrorResponse,
                             "description": "Still loading (Retry-After), or failed"}})
async def readyz(request: Request) -> HealthResponse:
    """The default model (and any other offered) is loaded and warmed up: traffic can be
    sent."""
    model = _ready_default(request)
    return HealthResponse(status="ready",
                          model=ModelInfo(name=model.card.name, version=model.card.version))


@router.get("/models", response_model=ModelsResponse,
            responses={503: {"model": ErrorResponse, "description": "Not ready yet"}})
async def models(request: Request) -> ModelsResponse:
    """The models this server offers, the default first; ask one with ?model=NAME."""
    slot = request.app.state.slot
    _ready_default(request)
    return ModelsResponse(models=[OfferedModel.of(m.card, default=m is slot.model)
                                  for m in slot.models.values()])


def _ready_default(request: Request):
    slot = request.app.state.slot
    if slot.model is None:
        raise ModelNotReadyError(failed=slot.failure is not None)
    return slot.model
