from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.schemas import HealthResponse, ModelInfo

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
def healthz() -> HealthResponse:
    """The process is up."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=HealthResponse,
            responses={503: {"model": HealthResponse}})
def readyz(request: Request):
    """The model is loaded and warmed up: traffic can be sent."""
    model = request.app.state.model
    if model is None:
        return JSONResponse(HealthResponse(status="loading").model_dump(), status_code=503)
    return HealthResponse(status="ready",
                          model=ModelInfo(name=model.card.name, version=model.card.version))
