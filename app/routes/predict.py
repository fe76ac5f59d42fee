from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.deps import ModelDep, SettingsDep
from app.schemas import ErrorResponse, PredictionResponse
from app.services.inference import predict_image
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


@router.post("/predict", response_model=PredictionResponse, responses=_ERRORS,
             openapi_extra={"requestBody": _UPLOAD_BODY})
async def predict(request: Request, model: ModelDep, settings: SettingsDep) -> PredictionResponse:
    """Pneumonia probability for one chest X-ray uploaded as multipart field `file`."""
    data = await read_file_field(request, settings.max_upload_bytes)
    prediction = await run_in_threadpool(
        predict_image, data, model, settings.threshold, settings.max_image_pixels)
    return PredictionResponse.from_prediction(prediction)
