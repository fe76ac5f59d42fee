"""HTML pages: the upload page (works with and without JavaScript) and the report."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.deps import ModelDep, SettingsDep
from app.errors import UploadError, describe
from app.routes.predict import predict_upload
from app.schemas import PredictionResponse
from training.preprocessing import ImageError

router = APIRouter(tags=["pages"], include_in_schema=False)


def _render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status_code)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, model: ModelDep) -> HTMLResponse:
    return _render(request, "index.html", card=model.card)


@router.post("/", response_class=HTMLResponse)
async def index_submit(request: Request, model: ModelDep, settings: SettingsDep) -> HTMLResponse:
    """The no-JavaScript path: a plain form post that renders the result into the page."""
    try:
        prediction = await predict_upload(request, model, settings)
    except (UploadError, ImageError) as exc:
        status, _, message = describe(exc)
        return _render(request, "index.html", status_code=status, card=model.card,
                       error=message)
    return _render(request, "index.html", card=model.card,
                   result=PredictionResponse.from_prediction(prediction))


@router.get("/report", response_class=HTMLResponse)
def report(request: Request, model: ModelDep) -> HTMLResponse:
    return _render(request, "report.html", card=model.card, report=request.app.state.report)
