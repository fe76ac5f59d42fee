"""HTML pages: the upload page (works with and without JavaScript) and the report."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.deps import ModelDep, SettingsDep, UploadDep
from app.schemas import PredictionResponse
from app.services.inference import predict_image

router = APIRouter(tags=["pages"], include_in_schema=False)


def _render(request: Request, name: str, **context) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(request, name, context)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, model: ModelDep) -> HTMLResponse:
    return _render(request, "index.html", card=model.card)


@router.post("/", response_class=HTMLResponse)
def index_submit(request: Request, model: ModelDep, upload: UploadDep,
                 settings: SettingsDep) -> HTMLResponse:
    """The no-JavaScript path: a plain form post that renders the result into the page.
    Errors are rendered as a page by the app's error handler (the browser asks for HTML)."""
    prediction = predict_image(upload, model, settings.threshold, settings.max_image_pixels)
    return _render(request, "index.html", card=model.card,
                   result=PredictionResponse.from_prediction(prediction, model.card))


@router.get("/report", response_class=HTMLResponse)
def report(request: Request, model: ModelDep) -> HTMLResponse:
    return _render(request, "report.html", card=model.card,
                   report=request.app.state.slot.report)
