"""The per-install secret of the patient key (app/contract/identifiers.py `patient_key`: a
salted hash of Patient ID and Issuer, the only trace of the patient the worklist keeps).

PNEUMONIA_IDENTITY_SECRET when set (replicas that share a database must share it: a study
first seen by one replica must have the same key on the other, or its next film there is a
conflict); else 32 random bytes in the state folder (`identity.key`, created once, readable
by the app's user only). Never in the database beside the keys, so that a copy of the
database is no dictionary for guessing Patient IDs; never logged.
"""

from __future__ import annotations

import logging
import os
import secrets
from contextlib import suppress
from pathlib import Path

from app.config import Settings
from app.errors import StartupError

log = logging.getLogger("app.dicom")

SECRET_FILE = "identity.key"
_SECRET_BYTES = 32


def install_secret(settings: Settings) -> bytes:
    """The secret the settings name, or the state folder's (made on first use); a
    StartupError, naming the setting, when there is neither and it cannot be made."""
    if settings.identity_secret is not None:
        return settings.identity_secret.get_secret_value().encode("utf-8")
    if settings.database_url is not None:
        log.warning("PNEUMONIA_IDENTITY_SECRET is not set: the patient key's secret is this "
                    "replica's own (%s); replicas that share the database must share one",
                    SECRET_FILE)
    path = settings.state_dir / SECRET_FILE
    try:
        return _read_or_make(path)
    except OSError as exc:
        raise StartupError(
            f"The identity secret {path} cannot be read or made ({exc.strerror or exc}): "
            "make the state folder writable or set PNEUMONIA_IDENTITY_SECRET",
            "PNEUMONIA_IDENTITY_SECRET") from exc


def _read_or_make(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a name of its own, then linked in place: of two processes
        # starting at once, one link wins and both read the same whole secret.
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(_SECRET_BYTES))
                file.flush()
                os.fsync(file.fileno())
            with suppress(FileExistsError):  # the other process's is the one
                os.link(draft, path)
        finally:
            draft.unlink(missing_ok=True)
    secret = path.read_bytes()
    if len(secret) < 16:
        raise OSError(f"it holds {len(secret)} bytes, fewer than 16")
    return secret
