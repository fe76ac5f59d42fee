"""What the people who run the node read: Prometheus metrics, the drift state and the
model's live performance from radiologists' reads, behind the same token rule as the API
(Prometheus sends it as a bearer token)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.services import performance as live
from app.services.worklist import start_of
from app.web.auth import require_token
from app.web.deps import CardsDep, MetricsDep, Moment, SettingsDep, StoreDep, templates_of
from app.web.errors import wants_html
from app.web.schemas import DriftResponse, ErrorResponse
from app.web.schemas_performance import PerformanceResponse

router = APIRouter(tags=["operations"], dependencies=[Depends(require_token)])
_UNAUTHORIZED = {401: {"model": ErrorResponse,
                       "description": "An access token is configured and was not sent"}}


@router.get("/metrics", response_class=Response, responses={
    **_UNAUTHORIZED, 200: {"content": {CONTENT_TYPE_LATEST: {}},
                           "description": "Prometheus text format"}})
def metrics(metrics: MetricsDep) -> Response:
    """Counters, histograms and gauges in the Prometheus text format (README "Operations"
    lists them). A plain function: the worklist's gauges are read from the database, in a
    worker thread."""
    return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)


@router.get("/operations/drift", response_model=DriftResponse, responses=_UNAUTHORIZED)
def drift(metrics: MetricsDep) -> DriftResponse:
    """Each model's recent films against its validation films: the population stability
    index of the score, the input guard's distance, brightness and contrast, and which
    are over the threshold (the pages' banner)."""
    return DriftResponse.of(metrics.drift.state())


@router.get("/operations/performance", response_model=PerformanceResponse, responses={
    **_UNAUTHORIZED, 422: {"model": ErrorResponse, "description": "last out of its range, "
                                                                 "or since not ISO 8601"},
    200: {"content": {"text/html": {}}, "description": "JSON; a page for a browser "
                                                       "(Accept: text/html)"}})
def performance(
    request: Request, store: StoreDep, cards: CardsDep, settings: SettingsDep,
    last: Annotated[int, Query(ge=1, le=live.MAX_LAST, description=(
        "The window: the newest this many reads"))] = live.DEFAULT_LAST,
    since: Annotated[Moment, Query(description=(
        "The window: only reads given from then on; a date (YYYY-MM-DD) from its start in "
        "UTC, a datetime without offset in UTC"))] = None,
):
    """The model's live performance from radiologists' reads (PUT
    /worklist/entries/{id}/read), per model and version over a window: reads, sensitivity,
    specificity, PPV, NPV and the flagged rate with 95% Wilson intervals, beside the model
    card's figures at its operating point, and a verdict; studies the model could not judge
    counted apart. In shadow mode, what the model would have done. A plain function: the
    reads are read from the database in a worker thread."""
    report = live.measure(store, cards.card, last=last, since=start_of(since))
    if wants_html(request):
        return templates_of(request).TemplateResponse(request, "performance.html", {
            "report": PerformanceResponse.of(report, settings.shadow_mode),
            "names": live.FIGURE_NAMES, "verdicts": live.VERDICT_NAMES, "card": None})
    return PerformanceResponse.of(report, settings.shadow_mode)
