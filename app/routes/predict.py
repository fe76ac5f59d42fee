from fastapi import APIRouter, Depends

from app.deps import ModelDep, SettingsDep, UploadDep
from app.schemas import ErrorResponse, PredictionResponse
from app.security import require_token
from app.services.inference import predict_image

router = APIRouter(tags=["prediction"], dependencies=[Depends(require_token)])

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
    400: "Empty, truncated or damaged image; malformed multipart body; two files",
    401: "An access token is configured and the request did not carry it",
    413: "File over the byte limit, or image over the pixel limit",
    415: "Not an image, a format other than JPEG/PNG, or an animation",
    422: "No 'file' field in the form",
    503: "The model is not ready yet (Retry-After says when to try again)",
}.items()}


@router.post("/predict", response_model=PredictionResponse, responses=_ERRORS,
             openapi_extra={"requestBody": _UPLOAD_BODY})
def predict(model: ModelDep, upload: UploadDep, settings: SettingsDep) -> PredictionResponse:
    """Pneumonia probability for one chest X-ray uploaded as multipart field `file`.

    A plain function: FastAPI runs it in a worker thread, off the event loop.
    """
    prediction = predict_image(upload, model, settings.threshold, settings.max_image_pixels)
    return PredictionResponse.from_prediction(prediction, model.card)
