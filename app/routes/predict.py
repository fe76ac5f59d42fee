from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.deps import ModelDep, SettingsDep
from app.schemas import ErrorResponse, PredictionResponse
from app.services.inference import Prediction, predict_image
from app.services.registry import LoadedModel
from app.upload import read_file_field

router = APIRouter(tags=["prediction"])

_UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "Chest X-ray, JPEG or PNG, any size"}},
    }}},
}
_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "Empty, truncated or damaged image",
    413: "File over the byte limit, or image over the pixel limit",
    415: "Not an image, or a format other than JPEG/PNG",
    422: "No 'file' field in the form",
}.items()}


async def predict_upload(request: Request, model: LoadedModel, settings: Settings) -> Prediction:
    """Read the uploaded file (in memory, size-limited) and score it in a worker thread."""
    data = await read_file_field(request, settings.max_upload_bytes)
    return await run_in_threadpool(
        predict_image, data, model, settings.threshold, settings.max_image_pixels)


@router.post("/predict", response_model=PredictionResponse, responses=_ERRORS,
             openapi_extra={"requestBody": _UPLOAD_BODY})
async def predict(request: Request, model: ModelDep, settings: SettingsDep) -> PredictionResponse:
    """Pneumonia probability for one chest X-ray uploaded as multipart field `file`."""
    return PredictionResponse.from_prediction(await predict_upload(request, model, settings))
