from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from app.services.batch import worklist_csv, worklist_summary
from app.services.pipeline import Scorer, score_film, score_films
from app.web.auth import require_token
from app.web.deps import BatchDep, ScorerDep, SettingsDep, UploadDep, results_shown
from app.web.schemas import (
    BatchEntry,
    BatchResponse,
    ErrorResponse,
    ModelInfo,
    PredictionResponse,
    multipart_body,
)
from app.web.upload import FileUpload

router = APIRouter(tags=["prediction"],
                   dependencies=[Depends(require_token), Depends(results_shown)])


_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "Empty, truncated or damaged image; malformed multipart body; two files",
    401: "An access token is configured and the request did not carry it",
    403: "Shadow mode (PNEUMONIA_SHADOW_MODE): no result is shown; use /worklist/films",
    404: "?model= names a model this server does not offer (GET /models lists them)",
    413: "File over the byte limit, or image over the pixel limit",
    415: "Not an image, a format other than JPEG/PNG/DICOM, an animation, or an intact "
         "DICOM in an encoding the server does not read (unsupported_encoding: JPEG XL, "
         "JPEG progressive, float pixel data, ...)",
    422: "No 'file' field in the form, or a DICOM that must not be scored (CT, lateral, an "
         "unusable rescale, compressed pixels without file meta, ...)",
    408: "The upload was sent too slowly",
    503: "The model is not ready yet, or the decoder's admission is full: every place and "
         "its line taken, or the film waited its time in the line (see Retry-After)",
}.items()}


@router.post("/predict", response_model=PredictionResponse, responses=_ERRORS,
             openapi_extra={"requestBody": multipart_body(
                 "file", "Chest X-ray: JPEG, PNG or DICOM, any size", many=False)})
async def predict(scorer: ScorerDep, upload: UploadDep, explain: bool = False) -> Response:
    """Pneumonia probability for one chest X-ray uploaded as multipart field `file`.

    `explain=true` adds an occlusion-sensitivity heatmap (the film and an overlay, as PNG
    data URIs).
    The body is read on the event loop; everything else (parsing it, the film's place in
    the decoder's admission, scoring, the answer's JSON) is one call in a worker thread.
    """
    return await run_in_threadpool(_predict, scorer, upload, explain)


def _predict(scorer: Scorer, upload: FileUpload, explain: bool) -> Response:
    """The route's thread: the film parsed out of its body, scored (its admission places
    taken, and waited for, here) and answered as JSON, PredictionResponse's as FastAPI
    would write it (so FastAPI need not serialise it in a thread of its own)."""
    prediction = score_film(scorer, upload.data(), explain=explain, admit=True)
    answer = PredictionResponse.from_prediction(prediction, scorer.model.card)
    return Response(answer.model_dump_json(by_alias=True), media_type="application/json")


@router.post("/predict/batch", response_model=BatchResponse,
             responses={**_ERRORS, 200: {"content": {"text/csv": {}}, "description":
                                         "JSON in upload order, or the CSV worklist"}},
             openapi_extra={"requestBody": multipart_body(
                 "files", "Chest X-rays (JPEG, PNG, DICOM, mixed)", many=True)})
def predict_batch(scorer: ScorerDep, files: BatchDep, settings: SettingsDep,
                  thumbnails: bool = False, format: Literal["json", "csv"] = "json"):
    """A worklist: every file in the multipart field `files` (repeated), scored in one call.

    One entry per file in upload order; a file that cannot be scored carries its error and
    never fails the others; a film the model cannot judge has `assessable: false`, its
    reasons and no label. `format=csv` returns the worklist as CSV: judged films highest
    triage score first, then those that need a human look, then the errors, exactly as the
    page's table and download show it.
    """
    results = list(score_films(scorer, files, thumbnails=thumbnails,
                               budget_seconds=settings.batch_budget_seconds))
    if format == "csv":
        return PlainTextResponse(worklist_csv(results), media_type="text/csv",
                                 headers={"Content-Disposition":
                                          'attachment; filename="worklist.csv"'})
    card = scorer.model.card
    read = [r.prediction for r in results if r.prediction is not None]
    judged = [p for p in read if p.assessable]
    return BatchResponse(
        model=ModelInfo(name=card.name, version=card.version), threshold=scorer.threshold,
        count=len(results), scored=len(judged), flagged=sum(p.flagged for p in judged),
        needs_human_look=len(read) - len(judged), not_scored=len(results) - len(read),
        summary=worklist_summary(results),
        results=[BatchEntry.of(result) for result in results],
        elapsed_ms=round(sum(p.elapsed_ms for p in read), 2), note=card.disclaimer)
