"""DICOMweb STOW-RS: POST /dicomweb/studies and /dicomweb/studies/{study}.

Each instance of the multipart/related body goes through the DICOM node's ingest (the same
pipeline, worklist and results as a C-STORE), its bytes as they arrived, as soon as its part
has arrived (app/web/upload.py `related_parts`), from a worker thread; the answer is the
Store Instances Response (app/dicom/stow.py). Same token rule as /predict. Each film takes
its own decode slot inside the ingest, so this route takes none; like a worklist upload, it
counts its bytes in the budget for bodies in flight (shared with the node's C-STORE data
sets) and holds a place among the worklist requests from its first part on.
"""

from __future__ import annotations

from contextlib import aclosing

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.dicom.ingest import Ingest
from app.dicom.stow import DICOM_JSON, StowSession
from app.errors import ServerBusyError, UploadError
from app.web.auth import require_token
from app.web.deps import (
    BodyPlaces,
    IngestDep,
    SettingsDep,
    StowBoundaryDep,
    StowPlacesDep,
    body_timeouts,
)
from app.web.upload import related_parts

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"],
                   dependencies=[Depends(require_token)])

_RESPONSES = {
    200: {"description": "Every instance stored (Store Instances Response, DICOM JSON)"},
    202: {"description": "Some stored; the others in FailedSOPSequence, or with a "
                         "WarningReason (listed, not scored)"},
    409: {"description": "None stored (each instance's failure in FailedSOPSequence or "
                         "OtherFailuresSequence, a FailureReason and an ErrorComment)"},
    415: {"description": 'Not multipart/related; type="application/dicom"'},
    503: {"description": "None stored because the node is busy or its model not ready: "
                         "send again"},
}


@router.post("/studies", responses=_RESPONSES)
async def store_instances(request: Request, boundary: StowBoundaryDep, ingest: IngestDep,
                          settings: SettingsDep, places: StowPlacesDep) -> JSONResponse:
    """Store instances (PS3.18 10.5): radiographs (CR, DX, SC) as Part 10 files."""
    return await _store(request, boundary, ingest, settings, None, places)


@router.post("/studies/{study}", responses=_RESPONSES)
async def store_study_instances(study: str, request: Request, boundary: StowBoundaryDep,
                                ingest: IngestDep, settings: SettingsDep,
                                places: StowPlacesDep) -> JSONResponse:
    """Store instances of one study: an instance of another study fails (0xA900)."""
    return await _store(request, boundary, ingest, settings, study, places)


async def _store(request: Request, boundary: str, ingest: Ingest, settings: Settings,
                 study: str | None, places: BodyPlaces) -> JSONResponse:
    """Each part ingested as soon as it has arrived; the body is never held whole. Its
    bytes count in the server's budget for bodies in flight, and from its first part on it
    holds a place among the worklist requests (503 `busy` when either is full)."""
    session = StowSession(ingest, study_uid=study)
    try:
        async with aclosing(related_parts(request, boundary, settings.max_upload_bytes,
                                          settings.max_batch_files, settings.max_batch_bytes,
                                          body_timeouts(settings), places.held)) as parts:
            async for part in parts:
                places.admit()
                await run_in_threadpool(session.add, part.data, part.content_type)
                del part  # not held while the next part arrives
    except (UploadError, ServerBusyError) as exc:
        if not session.outcomes:
            raise  # nothing was stored: the request's own error (app/web/errors.py)
        # Parts were stored, and their results queued: the answer lists them, and what was
        # not read and why, as a Store Instances Response (PS3.18 10.5.3).
        session.not_read(exc)
    status, answer = session.response()
    return JSONResponse(answer, status_code=status, media_type=DICOM_JSON)
