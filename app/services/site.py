"""The site profile on disk: adopt a local validation's operating point, revert it, read it
back, and list the validations kept (app/contract/site.py says what each file holds and the
rule that applies the profile).

Adopting or reverting changes what every door flags: `pneumonia-triage site adopt|revert`
(app/cli.py) records each in the worklist's audit trail (`record`), and the server reads
the profile at start, so a change applies from its next start.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from app.contract.site import (
    SITE_PROFILE_FILE,
    VALIDATION_ID,
    VALIDATIONS_FOLDER,
    SiteProfile,
    SiteSummary,
)
from app.contract.validation import (
    VALIDATION_FILE,
    Validation,
    ValidationFileError,
    read_validation,
)
from app.store import AuditAction, AuditRecord, WorklistStore

REPORT_FILE = "report.html"
LOCK_FILE = ".site_profile.lock"  # in the state folder: one `site` command at a time
# Each file adopted is read whole: validate writes ~20 KB and ~0.5 MB; far more is no
# validation's. The kept report is served at /validation/<id>/report.html.
MAX_FILE_BYTES = 64 * 1024 * 1024
# "found": in force at a server's start with no record saying so (app/web/main.py).
Change = Literal["adopted", "reverted", "shown", "found"]
# The server at start, as the audit trail names it for the settings it records.
AT_START = "settings"


class SiteProfileError(ValueError):
    """A site profile that cannot be adopted or read back; the message names the file and
    what to do."""


def profile_path(state_dir: Path) -> Path:
    return Path(state_dir) / SITE_PROFILE_FILE


@contextmanager
def changing(state_dir: Path, *, required: bool = True) -> Iterator[None]:
    """Hold the state folder's site lock (an exclusive flock on STATE_DIR/LOCK_FILE) while
    a `site` command changes the profile and records it, or a server starting reads and
    records it: another one waits, so the audit trail's records follow the changes in their
    order (two adopts at once, or a server starting beside an adopt, would otherwise record
    another profile than the one in force). SiteProfileError when the state folder cannot
    be written; without the lock instead when not `required` (a read-only state folder: no
    command can change the profile there either)."""
    folder = Path(state_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / LOCK_FILE, "a")  # noqa: SIM115 - held until the change is done
    except OSError as exc:
        if required:
            raise SiteProfileError(f"The state folder {folder} cannot be written "
                                   f"({exc.strerror or exc}): make it writable or set "
                                   "PNEUMONIA_STATE_DIR to one") from None
        lock = None
    if lock is None:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on a crash
        yield


def who_runs_this() -> str:
    """The OS user running the command (`--by NAME` overrides it); "unknown" where the
    system has no name for it (a container's bare uid)."""
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


def adopt(state_dir: Path, validation_dir: Path, who: str,
          now: datetime | None = None) -> SiteProfile:
    """Adopt the site operating point of the validation in `validation_dir` (its
    validation.json and report.html, as `pneumonia-triage validate` wrote them): both are
    copied into STATE_DIR/validations/<id>/ and STATE_DIR/site_profile.json is written
    atomically (a temporary file, then os.replace: a reader sees the old profile or the
    new one, never half of one). Raises SiteProfileError (a file missing or invalid, a link
    or not a regular file, or over MAX_FILE_BYTES)."""
    folder = Path(validation_dir)
    source, report = folder / VALIDATION_FILE, folder / REPORT_FILE
    try:
        data, report_bytes = _read_own(source), _read_own(report)
    except OSError as exc:
        raise SiteProfileError(f"{exc.filename}: cannot be read ({exc.strerror}); adopt "
                               "the folder `pneumonia-triage validate --out DIR` wrote"
                               ) from None
    try:
        read_validation(source)  # its messages name the file and the field
        validation = Validation.model_validate_json(data)  # the bytes hashed, exactly
    except (ValidationFileError, ValidationError) as exc:
        raise SiteProfileError(str(exc).splitlines()[0]) from None
    sha256 = hashlib.sha256(data).hexdigest()
    profile = SiteProfile(
        model_name=validation.model.name, model_version=validation.model.version,
        threshold=validation.site_operating_point.threshold,
        target_sensitivity=validation.site_operating_point.target_sensitivity,
        card_threshold=validation.model.threshold, films_used=validation.films.used,
        validated_at=validation.created_at, validation_sha256=sha256,
        adopted_by=who, adopted_at=now or datetime.now(UTC), summary=summary_of(validation))
    kept = Path(state_dir) / VALIDATIONS_FOLDER / profile.validation_id
    try:
        kept.mkdir(parents=True, exist_ok=True)
        _write_atomically(kept / VALIDATION_FILE, data)
        _write_atomically(kept / REPORT_FILE, report_bytes)
        # Last: the copies are in place before the profile that names them.
        _write_atomically(profile_path(state_dir),
                          (profile.model_dump_json(indent=2) + "\n").encode())
    except OSError as exc:
        raise SiteProfileError(f"The state folder {state_dir} cannot be written "
                               f"({exc.strerror or exc}): make it writable or set "
                               "PNEUMONIA_STATE_DIR to one") from None
    return profile


def summary_of(validation: Validation) -> SiteSummary:
    point = validation.site_operating_point
    return SiteSummary(
        auc=validation.auc.value, auc_low=validation.auc.low, auc_high=validation.auc.high,
        sensitivity=point.sensitivity.value, sensitivity_low=point.sensitivity.low,
        sensitivity_high=point.sensitivity.high, specificity=point.specificity.value,
        specificity_low=point.specificity.low, specificity_high=point.specificity.high)


def revert(state_dir: Path) -> SiteProfile | None:
    """Remove the site profile (the card's operating point applies again from the next
    start); the profile removed, None when there was none or it could not be read (a
    damaged profile is removed too: reverting is how it is fixed). The copies under
    validations/ stay, listed on /validation. SiteProfileError when it cannot be removed
    (a folder of that name, a read-only state folder)."""
    path = profile_path(state_dir)
    try:
        removed = load(state_dir)
    except SiteProfileError:
        removed = None
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise SiteProfileError(f"The site profile {path} cannot be removed "
                               f"({exc.strerror or exc}): remove it by hand") from None
    return removed


def load(state_dir: Path) -> SiteProfile | None:
    """The site profile in force, or None. Raises SiteProfileError for a file that cannot
    be read or does not validate, naming it and the way out: at start, not later."""
    path = profile_path(state_dir)
    try:
        text = path.read_bytes()  # not UTF-8: "damaged", as any invalid JSON
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SiteProfileError(f"The site profile {path} cannot be read ({exc.strerror}): "
                               "fix its permissions, or run `pneumonia-triage site revert`"
                               ) from None
    try:
        return SiteProfile.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(whole file)"
        raise SiteProfileError(
            f"The site profile {path} is damaged (field '{field}': {first['msg']}): run "
            "`pneumonia-triage site revert` to remove it, then adopt the validation again"
        ) from None


def record(store: WorklistStore, change: Change, profile: SiteProfile | None,
           who: str, *, forgotten: bool = False) -> AuditRecord:
    """The audit record of a site profile adopted, reverted, shown or found, by `who`: the
    model version, the operating point and the validation's hash (None: there was none);
    a found one says what it means (`forgotten`: the trail held no change of it at all)."""
    detail: dict = {"change": change, "file": SITE_PROFILE_FILE}
    if profile is not None:
        detail.update(_detail(profile))
    if change == "found":
        detail["meaning"] = _FOUND[profile is not None, forgotten]
    return store.record_settings(AuditAction.SITE_PROFILE, detail, actor=who)


# A "found" record's meaning: (a profile in force, the trail holds no change of it at all).
_FOUND = {
    (True, False): "in force at the server's start, where the audit trail's last change "
                   "says otherwise: written into the state folder by hand, or restored",
    (True, True): "in force at the server's start; the audit trail holds no change of the "
                  "site profile (adopted by hand, or its record past the audit retention)",
    (False, False): "removed from the state folder by hand: the card's operating point "
                    "applies",
}


def record_in_force(store: WorklistStore, profile: SiteProfile | None) -> AuditRecord | None:
    """At a server's start: a "found" record of the site profile it is about to apply
    (None: none) when the audit trail's newest site_profile record does not name that
    profile as in force: a profile copied, restored or edited by hand, or one removed by
    hand. So no operating point applies without a record of it. None when the trail
    already says so, or has no record and there is no profile. Replicas starting at once
    may each record it."""
    last = _last_change(store)
    now = None if profile is None else _detail(profile)
    if _in_force(last) == now:
        return None
    return record(store, "found", profile, AT_START, forgotten=last is None)


def _last_change(store: WorklistStore) -> dict | None:
    """The detail of the newest site_profile record that changed what applies (adopted,
    reverted, found; a `site show` changes nothing, so it does not vouch for a profile);
    None when there is none."""
    before = None
    while page := store.audit(action=AuditAction.SITE_PROFILE, limit=100, before_id=before):
        for found in page:
            if (found.detail or {}).get("change") != "shown":
                return found.detail or {}
        before = page[-1].id
    return None


# What `_detail` records of a profile, and what a record's detail is compared by.
_DETAIL_KEYS = ("model", "version", "threshold", "card_threshold", "films", "validated_at",
                "validation_sha256", "adopted_by")


def _detail(profile: SiteProfile) -> dict:
    """What the audit trail records of a profile, as JSON gives it back."""
    return dict(zip(_DETAIL_KEYS, (
        profile.model_name, profile.model_version, profile.threshold, profile.card_threshold,
        profile.films_used, profile.validated_at.isoformat(), profile.validation_sha256,
        profile.adopted_by), strict=True))


def _in_force(detail: dict | None) -> dict | None:
    """The profile a site_profile record leaves in force (as `_detail` gives it), or None:
    no record, a revert, or a record of no profile."""
    if detail is None or detail.get("change") == "reverted" or \
            "validation_sha256" not in detail:
        return None
    return {key: detail.get(key) for key in _DETAIL_KEYS}


@dataclass(frozen=True)
class KeptValidation:
    """One validation under STATE_DIR/validations/: its id (folder), the validation (None
    when its file does not read: `problem` says why) and whether it is the one in force."""

    id: str
    validation: Validation | None
    problem: str | None
    adopted: bool

    @property
    def has_report(self) -> bool:
        return self.validation is not None


def kept_validations(state_dir: Path, adopted: SiteProfile | None) -> list[KeptValidation]:
    """Every validation kept, the adopted one first, then newest first."""
    root = Path(state_dir) / VALIDATIONS_FOLDER
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not re.fullmatch(VALIDATION_ID, folder.name) or not folder.is_dir():
            continue
        try:
            validation, problem = read_validation(folder), None
        except ValidationFileError as exc:
            validation, problem = None, str(exc)
        found.append(KeptValidation(folder.name, validation, problem,
                                    adopted is not None
                                    and adopted.validation_id == folder.name))
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda kept: (not kept.adopted, -(
        kept.validation.created_at if kept.validation else oldest).timestamp()))


def report_file(state_dir: Path, validation_id: str) -> Path | None:
    """A kept validation's report.html, or None. `validation_id` must be 12 lowercase hex
    digits (the route checks it too): nothing else reaches the file system."""
    if not re.fullmatch(VALIDATION_ID, validation_id):
        return None
    path = Path(state_dir) / VALIDATIONS_FOLDER / validation_id / REPORT_FILE
    # A link is none of the reports adopt copied (regular files): not served.
    return path if path.is_file() and not path.is_symlink() else None


def _read_own(path: Path) -> bytes:
    """The bytes of `path`, a regular file of its own: not a link (whatever it points to
    would be copied and served as the report), nor over MAX_FILE_BYTES. SiteProfileError
    otherwise; OSError where it cannot be read."""
    found = os.lstat(path)
    if not stat.S_ISREG(found.st_mode):
        raise SiteProfileError(f"{path}: not a file of its own (a link, a folder or a "
                               "device); adopt the folder `pneumonia-triage validate --out "
                               "DIR` wrote")
    if found.st_size > MAX_FILE_BYTES:
        raise SiteProfileError(f"{path}: {found.st_size} bytes, larger than a validation "
                               f"writes ({MAX_FILE_BYTES} at most)")
    return path.read_bytes()


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
