"""The one table from an ingest's outcome to a C-STORE response status (PS3.4 Annex B,
Table B.2-1, and PS3.7 Annex C), with an Error Comment (0000,0902) naming our error code.

| Outcome                                                  | Status | PS3.4 meaning            |
|----------------------------------------------------------|--------|--------------------------|
| scored, committed                                        | 0x0000 | Success                  |
| not a radiograph class (SR, presentation state, other    | 0x0000 | Success (acknowledged,   |
|   images and objects) or a result of this node: ignored  |        |   never listed)          |
|   the same film sent again (same pixels): a retry        | 0x0000 | Success (idempotent)     |
| committed, not scored: lateral view, several frames,     | 0xB000 | Warning (no Table B.2-1  |
|   colour, a modality not scored                          |        |   code fits "kept, not   |
|   (the film is listed "needs a human look")              |        |   processed"; B000 is    |
|                                                          |        |   the base of the range) |
| committed apart: a film of another patient than its      | 0xB000 | Warning: kept (listed as |
|   study was first seen with (no results sent)            |        |   a conflict), not merged|
| not kept: a stored SOP Instance UID with other pixels,   | 0x0111 | Failure: Duplicate SOP   |
|   or in another study (the stored film stands)           |        |   Instance (PS3.7 C.4)   |
| committed, not scored: no Pixel Data in an image class   | 0xA900 | Error: Data Set does not |
| data set without its SOP Class/Instance or Study UID,    |        |   match SOP Class        |
|   one that is not a valid UID (over 64 characters, not   |        |                          |
|   digits and dots), or its SOP Class differs from the    |        |                          |
|   one negotiated (not listed)                            |        |                          |
| committed, not scored: damaged or truncated pixel data,  | 0xC000 | Error: Cannot understand |
|   not an image, too large, too slow to decode; intact    |        |                          |
|   pixels in an encoding the decoder does not read (float |        |                          |
|   pixels, only an icon, JPEG samples wider than          |        |                          |
|   allocated, ...: unsupported_encoding)                  |        |                          |
| committed, not scored: a transfer syntax the decoder     | 0xC122 | Error: Cannot understand |
|   does not read (JPEG progressive, JPEG XL, HTJ2K, ...:  |        |   (PS3.18's "Referenced  |
|   unsupported_encoding)                                  |        |   Transfer Syntax not    |
|                                                          |        |   supported" in Cxxx)    |
| data set that pydicom cannot parse, or whose sequences   | 0xC000 | Error: Cannot understand |
|   nest deeper than 32 levels (not listed)                |        |                          |
| data set over the byte limit: read past, not kept        | 0xC000 | Error: Cannot understand |
|   (not listed)                                           |        |                          |
| model loading or failed, every decode slot taken, the    | 0xA700 | Refused: Out of          |
|   store could not commit, the memory budget for data     |        |   Resources (retry)      |
|   sets in flight full, any unexpected error              |        |                          |

Why: a PACS retries a refusal (A7xx) and treats errors (A9xx, Cxxx) as final, so only what
a later attempt can change is a refusal; an unexpected error is one too, so a film is never
lost to a bug the sender cannot see (it is logged with its traceback). A warning lets a
PACS's forwarding job finish while the comment says why the film was not scored; success
is answered only after the ingest returned, that is after the commit.
Duplicate SOP Instance (0x0111) is one of the general statuses PS3.7 Annex C defines for
every DIMSE service (pynetdicom's C-STORE table includes them): "the SOP Instance UID is
already in use", exactly this case; a failure, not a warning, because nothing of the film
was kept and the sender must know its archive holds two images under one UID; outside A7xx,
so it is never retried. A film of another patient under a study's UID is kept, in an entry
of its own for a human, so it gets a warning whose comment says so, like other films kept
but not processed. An unsupported transfer syntax gets 0xC122, which PS3.18 Table I.2-2
(STOW-RS) defines as "Referenced Transfer Syntax not supported" and which lies in PS3.4's
Cxxx "Cannot understand" range for C-STORE, so both doors answer the same code.
Association-level refusals happen before any of this: a SOP class pynetdicom does not know
as a storage class, or a deflated transfer syntax (the association would inflate it whole),
is rejected at negotiation; a caller not on the allow-list is rejected (calling AE title not
recognised), and one over the association limit is rejected as transient.
"""

from __future__ import annotations

from app.contract.errors import (
    DicomNotScoredError,
    FileTooLargeError,
    ImageError,
    UnsupportedEncodingError,
    size_text,
)
from app.contract.identifiers import InvalidInstanceError
from app.dicom.ingest import IngestResult, NotStoredError
from app.errors import ModelNotReadyError, ServerBusyError

SUCCESS = 0x0000
WARNING_NOT_SCORED = 0xB000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 Annex C general status: UID already in use
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122  # PS3.18 Table I.2-2: Referenced Transfer Syntax

# DicomNotScoredError reasons that mean the data set is not what its SOP class promises.
_NOT_AN_IMAGE_REASONS = ("no_pixel_data",)
_COMMENT_LENGTH = 64  # Error Comment is an LO


def result_status(result: IngestResult) -> tuple[int, str | None]:
    """(status, Error Comment or None) for a committed instance."""
    if result.conflict == "instance":
        return DUPLICATE_SOP_INSTANCE, _comment(
            "conflict: UID stored with other pixels or study")
    if result.conflict == "patient":
        return WARNING_NOT_SCORED, _comment("conflict: listed apart, patient differs")
    if result.prediction is not None or result.ignored is not None:
        return SUCCESS, None
    assert result.error is not None
    return film_error_status(result.error)


def film_error_status(error: ImageError) -> tuple[int, str]:
    if isinstance(error, UnsupportedEncodingError):
        status = TRANSFER_SYNTAX_NOT_SUPPORTED if error.syntax else CANNOT_UNDERSTAND
        return status, _comment(f"{error.code}: {error.brief}")
    if isinstance(error, DicomNotScoredError):
        status = (DOES_NOT_MATCH_SOP_CLASS if error.reason in _NOT_AN_IMAGE_REASONS
                  else WARNING_NOT_SCORED)
        return status, _comment(f"listed, not scored: {error.code}")
    return CANNOT_UNDERSTAND, _comment(f"listed, not scored: {error.code}")


def error_status(exc: Exception) -> tuple[int, str]:
    """(status, Error Comment) for an ingest that raised: nothing was committed."""
    if isinstance(exc, InvalidInstanceError):
        return DOES_NOT_MATCH_SOP_CLASS, _comment(exc.comment)
    if isinstance(exc, FileTooLargeError):
        # A data set over the byte limit, read past and never kept (app/dicom/transport.py):
        # sending it again cannot change that, so a final error, not Out of Resources.
        # PS3.4 Table B.2-1 has no "too large"; C000-CFFF is its final "cannot understand",
        # and the comment names the limit.
        return CANNOT_UNDERSTAND, _comment(f"{exc.code}: over {size_text(exc.limit)}, "
                                           "not kept")
    if isinstance(exc, ModelNotReadyError | ServerBusyError | NotStoredError):
        return OUT_OF_RESOURCES, _comment(f"{exc.code}: try again later")
    return OUT_OF_RESOURCES, "internal error: try again later"


def _comment(text: str) -> str:
    return text[:_COMMENT_LENGTH]
