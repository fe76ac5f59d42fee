"""Request and server-state errors: why a request was not served, before any film is decoded.

Like the film errors (app/contract/errors.py) each has a stable `code` and a `message` for a
person; none imports a web framework, so services raise them and every door (HTTP, DICOM)
answers them in its own terms (app/web/errors.py maps both vocabularies to HTTP).
"""

from __future__ import annotations

from app.contract.errors import size_text


class AppError(Exception):
    """Problems with the request or the server's state, before any image decoding."""

    code = "bad_request"
    message = "The request could not be served."


class ModelNotReadyError(AppError):
    def __init__(self, failed: bool) -> None:
        super().__init__(failed)
        self.failed = failed

    @property
    def code(self) -> str:  # type: ignore[override]
        return "model_unavailable" if self.failed else "model_loading"

    @property
    def message(self) -> str:  # type: ignore[override]
        if self.failed:
            return "The model could not be loaded; the server log says why."
        return "The model is still loading. Try again in a moment."


class StoreNotReadyError(AppError):
    """The worklist's database is unreachable, or its schema is not the code's."""

    code = "store_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def message(self) -> str:  # type: ignore[override]
        return f"The worklist database is not ready: {self.reason}."


class UnauthorizedError(AppError):
    code = "unauthorized"
    message = "This server needs an access token: send 'Authorization: Bearer <token>'."


class TooManyLoginsError(AppError):
    """Too many failed logins from this client: it waits `retry_after` seconds."""

    code = "too_many_logins"
    message = "Too many failed logins. Wait a few minutes before trying again."

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class UnknownModelError(AppError):
    """The request asked for a model this server does not offer."""

    code = "unknown_model"

    def __init__(self, asked: str, offered: list[str]) -> None:
        super().__init__(asked, offered)
        self.asked = asked
        self.offered = offered

    @property
    def message(self) -> str:  # type: ignore[override]
        return ("This server offers the models " + ", ".join(repr(n) for n in self.offered)
                + "; ask for one of them with ?model=NAME, or leave it out for the default.")


class ServerBusyError(AppError):
    """Every decode slot is taken: refused at once rather than queued."""

    code = "busy"
    message = "The server is scoring as many films as it can. Try again in a moment."


class UploadError(AppError):
    code = "malformed_upload"
    message = "The upload could not be read: the multipart/form-data body is malformed."


class MissingFileError(UploadError):
    """No part named `field` (the one this route reads: 'file' or 'files')."""

    code = "missing_file"

    def __init__(self, field: str = "file") -> None:
        super().__init__(field)
        self.field = field

    @property
    def message(self) -> str:  # type: ignore[override]
        many = "X-rays" if self.field == "files" else "X-ray"
        return (f"No file was uploaded. Send the {many} as multipart/form-data in a field "
                f"named '{self.field}'.")


class TooManyFilesError(UploadError):
    code = "too_many_files"

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    @property
    def message(self) -> str:  # type: ignore[override]
        if self.limit == 1:
            return ("More than one file was sent in the field 'file'. Send one X-ray per "
                    "request, or many to /predict/batch.")
        return f"More than {self.limit} files in one request."


class MalformedUploadError(UploadError):
    """The multipart body cannot be parsed (framing, boundary, headers, part count)."""


class UploadTimeoutError(UploadError):
    """The client sent its upload too slowly."""

    code = "upload_too_slow"
    message = "The upload was too slow and was stopped. Try again."


class ClientDisconnectedError(UploadError):
    """The client went away mid-upload: nobody reads the answer, one INFO line is enough."""

    code = "client_disconnected"
    message = "The upload was interrupted."


class UploadTooLargeError(UploadError):
    code = "file_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    @property
    def message(self) -> str:  # type: ignore[override]
        return f"The file is larger than the {size_text(self.limit)} upload limit."


class UnknownEntryError(AppError):
    """No worklist entry has this id: never stored, or deleted by retention."""

    code = "unknown_entry"

    def __init__(self, entry_id: int) -> None:
        super().__init__(entry_id)
        self.entry_id = entry_id

    @property
    def message(self) -> str:  # type: ignore[override]
        return (f"No worklist entry has the id {self.entry_id}: it was never stored, or "
                "retention has deleted it.")


class UnknownValidationError(AppError):
    """No validation report with this id is kept in the state folder (/validation)."""

    code = "unknown_validation"
    message = "No validation report with this id is kept on this server."


class NoThumbnailError(AppError):
    code = "no_thumbnail"
    message = ("No thumbnail is stored for this film (thumbnails are kept only when "
               "PNEUMONIA_WORKLIST_THUMBNAILS is on).")


class NoDisplayError(NoThumbnailError):
    code = "no_film_copy"
    message = ("No copy of this film is kept here (films are kept only while "
               "PNEUMONIA_WORKLIST_THUMBNAILS is on): it is in the PACS.")


class NoHeatmapError(NoThumbnailError):
    code = "no_heatmap"
    message = ("No heatmap for this film: the model could not judge it, this model draws "
               "none, or no copy of the film is kept.")


class ShadowModeError(AppError):
    """A clinician asked for a result while the server runs in shadow mode (issue 31)."""

    code = "shadow_mode"
    message = ("This server runs in shadow mode (PNEUMONIA_SHADOW_MODE): films are scored and "
               "stored for a silent trial, and no result is shown. Add films to the worklist "
               "instead.")


class InvalidCursorError(AppError):
    code = "invalid_cursor"
    message = ("The paging cursor is not one this server wrote. Start again from the first "
               "page.")


class CrossSiteFormError(AppError):
    """A post that another site's page made the browser send (cross-site request forgery):
    refused, whatever cookie it carries."""

    code = "cross_site_request"
    message = "This can only be sent from this server's own pages."


class StartupError(Exception):
    """The server cannot start as configured: a port in use, a state folder it cannot write.
    Its one line names the problem and the setting to change (`setting`, which the line
    names too); the console command prints it, without a traceback, and exits non-zero. Not
    a request's error: nothing answers it over HTTP."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.message = message
        self.setting = setting
