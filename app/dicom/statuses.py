"""The one table from an ingest's outcome to a C-STORE response status (PS3.4 Annex B,
Table B.2-1, and PS3.7 Annex C), with an Error Comment (0000,0902) naming our error code.

| Outcome                                                  | Status | PS3.4 meaning            |
|----------------------------------------------------------|--------|--------------------------|
| scored, committed                                        | 0x0000 | Success                  |
| committed, not scored: lateral view, several frames,     | 0xB000 | Warning (no Table B.2-1  |
|   colour, a modality not scored, a result of this node   |        |   code fits "kept, not   |
|   (the film is listed "needs a human look")              |        |   processed"; B000 is    |
|                                                          |        |   the base of the range) |
| committed, not scored: no Pixel Data in an image class   | 0xA900 | Error: Data Set does not |
| data set without its SOP Class/Instance or Study UID,    |        |   match SOP Class        |
|   or its SOP Class differs from the one negotiated       |        |                          |
| committed, not scored: damaged or truncated pixel data,  | 0xC000 | Error: Cannot understand |
|   not an image, too large, too slow to decode            |        |                          |
| data set that pydicom cannot parse (not listed)          | 0xC000 | Error: Cannot understand |
| model loading or failed, every decode slot taken, the    | 0xA700 | Refused: Out of          |
|   store could not commit, any unexpected error           |        |   Resources (retry)      |

Why: a PACS retries a refusal (A7xx) and treats errors (A9xx, Cxxx) as final, so only what
a later attempt can change is a refusal; an unexpected error is one too, so a film is never
lost to a bug the sender cannot see (it is logged with its traceback). A warning lets a
PACS's forwarding job finish while the comment says why the film was not scored; success
is answered only after the ingest returned, that is after the commit.
Association-level refusals happen before any of this: a SOP class we do not score (CT, MR,
SR...) is rejected at negotiation, a caller not on the allow-list is rejected (calling AE
title not recognised), and one over the association limit is rejected as transient.
"""

from __future__ import annotations

from app.contract.errors import DicomNotScoredError, ImageError
from app.contract.identifiers import InvalidInstanceError
from app.dicom.ingest import IngestResult, NotStoredError
from app.errors import ModelNotReadyError, ServerBusyError

SUCCESS = 0x0000
WARNING_NOT_SCORED = 0xB000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122  # PS3.18 Table I.2-2: Referenced Transfer Syntax

# DicomNotScoredError reasons that mean the data set is not what its SOP class promises.
_NOT_AN_IMAGE_REASONS = ("no_pixel_data",)
_COMMENT_LENGTH = 64  # Error Comment is an LO


def result_status(result: IngestResult) -> tuple[int, str | None]:
    """(status, Error Comment or None) for a committed instance."""
    if result.prediction is not None:
        return SUCCESS, None
    assert result.error is not None
    return film_error_status(result.error)


def film_error_status(error: ImageError) -> tuple[int, str]:
    if isinstance(error, DicomNotScoredError):
        status = (DOES_NOT_MATCH_SOP_CLASS if error.reason in _NOT_AN_IMAGE_REASONS
                  else WARNING_NOT_SCORED)
        return status, _comment(f"listed, not scored: {error.code}")
    return CANNOT_UNDERSTAND, _comment(f"listed, not scored: {error.code}")


def error_status(exc: Exception) -> tuple[int, str]:
    """(status, Error Comment) for an ingest that raised: nothing was committed."""
    if isinstance(exc, InvalidInstanceError):
        return DOES_NOT_MATCH_SOP_CLASS, _comment(f"no {exc.missing}")
    if isinstance(exc, ModelNotReadyError | ServerBusyError | NotStoredError):
        return OUT_OF_RESOURCES, _comment(f"{exc.code}: try again later")
    return OUT_OF_RESOURCES, "internal error: try again later"


def _comment(text: str) -> str:
    return text[:_COMMENT_LENGTH]
