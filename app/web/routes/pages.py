"""HTML pages: the upload page (works with and without JavaScript), the report, the login."""

import hmac

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.contract.robustness import STRENGTH_NAMES
from app.errors import TooManyLoginsError
from app.services.batch import worklist_csv, worklist_order, worklist_summary
from app.services.pipeline import one_or_many, score_film, score_films
from app.web.auth import SESSION_COOKIE, LoginThrottleDep, new_session, require_token
from app.web.deps import (
    BatchDep,
    CatalogDep,
    ModelDep,
    ScorerDep,
    SettingsDep,
    results_shown,
    templates_of,
)
from app.web.schemas import BatchEntry, ModelsResponse, PredictionResponse
from app.web.upload import read_small_form

router = APIRouter(tags=["pages"], include_in_schema=False)


def _render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    return templates_of(request).TemplateResponse(request, name, context,
                                                  status_code=status_code)


def _page(request: Request, catalog, model, **context) -> HTMLResponse:
    """The upload page for `model`, with the chooser of the models offered."""
    return _render(request, "index.html", card=model.card,
                   models=ModelsResponse.of(catalog).models,
                   point=catalog.operating_point(model),
                   chosen=model is not catalog.default, **context)


@router.get("/", response_class=HTMLResponse, dependencies=[Depends(require_token)])
def index(request: Request, catalog: CatalogDep, model: ModelDep) -> HTMLResponse:
    return _page(request, catalog, model)


@router.post("/", response_class=HTMLResponse,
             dependencies=[Depends(require_token), Depends(results_shown)])
def index_submit(request: Request, catalog: CatalogDep, scorer: ScorerDep,
                 files: BatchDep, settings: SettingsDep,
                 explain: bool = False) -> HTMLResponse:
    """The no-JavaScript path: a plain form post of one film (rendered as a result) or many
    (rendered as the sorted worklist with its CSV). Errors of a single film are rendered as a
    page by the app's error handler (the browser asks for HTML)."""
    model = scorer.model
    single, many = one_or_many(files)
    if single is not None:
        name, data = single
        # This request holds a worklist place and a decode place: it never waits in the
        # heatmaps' queue with them. Without a free heatmap place it is scored without one,
        # as the page's script does.
        explain = explain and scorer.explains(True) and scorer.explanations.has_room
        prediction = score_film(scorer, data, explain=explain)
        return _page(request, catalog, model, filename=name,
                     result=PredictionResponse.from_prediction(prediction, model.card))
    results = list(score_films(scorer, many, thumbnails=True,
                               budget_seconds=settings.batch_budget_seconds))
    return _page(request, catalog, model,
                 worklist=[BatchEntry.of(r) for r in worklist_order(results)],
                 worklist_summary=worklist_summary(results),
                 worklist_csv=worklist_csv(results))


@router.get("/report", response_class=HTMLResponse)
def report(request: Request, catalog: CatalogDep, model: ModelDep) -> HTMLResponse:
    """The evaluation report, then the card of the model asked (?model=NAME, else the
    default) with its robustness table, and links to every offered model's card; 404 page
    for a model not offered."""
    return _render(request, "report.html", card=model.card, report=catalog.report,
                   models=ModelsResponse.of(catalog).models, robustness=model.robustness,
                   strength_names=STRENGTH_NAMES)


@router.post("/login")
async def login(request: Request, settings: SettingsDep,
                throttle: LoginThrottleDep) -> Response:
    """Exchange the access token for an HttpOnly, SameSite=Strict session cookie that is
    signed, different for every login and expires after Settings.session_hours. Failed
    logins are limited per client address (429 with Retry-After)."""
    if settings.api_token is None:
        return RedirectResponse("/", status_code=303)
    client = request.client.host if request.client else "?"
    if wait := throttle.retry_after(client):
        raise TooManyLoginsError(wait)
    given = (await read_small_form(request)).get("token", "")
    token = settings.api_token.get_secret_value()
    if not hmac.compare_digest(given.encode(), token.encode()):
        throttle.failed(client)
        return _render(request, "login.html", status_code=401, card=None, wrong=True)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, new_session(token), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/",
                        max_age=int(settings.session_hours * 3600))
    return response
