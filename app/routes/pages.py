"""HTML pages: the upload page (works with and without JavaScript), the report, the login."""

import hmac
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.deps import BatchDep, DecoderDep, ModelDep, SettingsDep, ThresholdDep, decode_slot
from app.errors import MalformedUploadError
from app.schemas import BatchEntry, OfferedModel, PredictionResponse
from app.security import SESSION_COOKIE, require_token, session_value
from app.services.inference import predict_files, predict_image
from app.services.worklist import worklist_csv, worklist_order

router = APIRouter(tags=["pages"], include_in_schema=False)

_MAX_LOGIN_BODY = 4096


def _render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(request, name, context,
                                                        status_code=status_code)


def _page(request: Request, model, **context) -> HTMLResponse:
    """The upload page for `model`, with the chooser of the models offered."""
    slot = request.app.state.slot
    offered = [OfferedModel.of(m.card, default=m is slot.model) for m in slot.models.values()]
    return _render(request, "index.html", card=model.card, models=offered,
                   chosen=model is not slot.model, **context)


@router.get("/", response_class=HTMLResponse, dependencies=[Depends(require_token)])
def index(request: Request, model: ModelDep) -> HTMLResponse:
    return _page(request, model)


@router.post("/", response_class=HTMLResponse,
             dependencies=[Depends(require_token), Depends(decode_slot)])
def index_submit(request: Request, model: ModelDep, files: BatchDep,
                 settings: SettingsDep, threshold: ThresholdDep,
                 decoder: DecoderDep) -> HTMLResponse:
    """The no-JavaScript path: a plain form post of one film (rendered as a result) or many
    (rendered as the sorted worklist with its CSV). Errors of a single film are rendered as a
    page by the app's error handler (the browser asks for HTML)."""
    if len(files) == 1:
        prediction = predict_image(files[0][1], model, threshold,
                                   settings.max_image_pixels, explain=True, decoder=decoder)
        return _page(request, model,
                     result=PredictionResponse.from_prediction(prediction, model.card))
    results = predict_files(files, model, threshold, settings.max_image_pixels,
                            thumbnails=True, decoder=decoder)
    entries = [BatchEntry.of(result, model.card) for result in results]
    return _page(request, model, worklist=worklist_order(entries),
                 worklist_csv=worklist_csv(entries))


@router.get("/report", response_class=HTMLResponse)
def report(request: Request, model: ModelDep) -> HTMLResponse:
    return _render(request, "report.html", card=model.card,
                   report=request.app.state.slot.report)


@router.post("/login")
async def login(request: Request, settings: SettingsDep) -> Response:
    """Exchange the access token for an HttpOnly, SameSite=Strict session cookie."""
    if settings.api_token is None:
        return RedirectResponse("/", status_code=303)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_LOGIN_BODY:
            raise MalformedUploadError("login form too large")
    given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
    token = settings.api_token.get_secret_value()
    response = RedirectResponse("/", status_code=303)
    expected = session_value(token)
    if not hmac.compare_digest(session_value(given).encode(), expected.encode()):
        return _render(request, "login.html", status_code=401, card=None, wrong=True)
    response.set_cookie(SESSION_COOKIE, expected, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response
