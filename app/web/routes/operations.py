"""What the people who run the node read: Prometheus metrics and the drift state, behind
the same token rule as the API (Prometheus sends it as a bearer token)."""

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.web.auth import require_token
from app.web.deps import MetricsDep
from app.web.schemas import DriftResponse, ErrorResponse

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
