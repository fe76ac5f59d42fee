"""The serving process's log lines: text for a person at a terminal, or one JSON object per
line (PNEUMONIA_LOG_FORMAT=json) for a log pipeline; the facts of the request a line
belongs to; and TensorFlow's native start-up lines logged in the same format.

Patient data never enters a line: the access line names the route's template
(`/worklist/entries/{entry_id}`), never the path or the query; films are named by code,
model and outcome; the other modules log no identifier of a patient (`silence_decoder_chatter`
silences the decoders that would quote tags).

TensorFlow's C++ code writes to file descriptor 2 directly, and before absl's logging is
initialised it ignores TF_CPP_MIN_LOG_LEVEL: a CPU-only machine prints "Could not find cuda
drivers on your machine" and "failed call to cuInit" at every start, and JSON mode would
get lines that are not JSON. `route_native_stderr` puts a filter thread on descriptor 2:
CUDA lines are dropped on a machine without an NVIDIA device (on one with a device they
are real errors and kept), native lines below TF_CPP_MIN_LOG_LEVEL are dropped as it asks,
and every other line is logged (logger `native`, or `stderr` for anything else written
there), so that in JSON mode it is an object of its own.
"""

from __future__ import annotations

import atexit
import glob
import json
import logging
import os
import re
import sys
import threading
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

TEXT_FORMAT = "%(levelname)s:     %(name)s: %(message)s"
# Extra fields of a record that a JSON line carries, in this order.
REQUEST_FIELDS = ("request_id", "route", "method", "status", "duration_ms", "model",
                  "outcome", "films")


@dataclass
class RequestFacts:
    """What the access line says about one HTTP request; the pipeline and the error table
    fill in the model and the outcome from the request's threads (a context variable
    holds this object, and a worker thread's copy of the context shares it)."""

    method: str
    model: str | None = None
    outcome: str | None = None  # one film's, or an error code
    films: dict[str, int] = field(default_factory=dict)  # outcome -> films, for a batch

    def film(self, model: str | None, outcome: str) -> None:
        if model is not None:
            self.model = model
        self.films[outcome] = self.films.get(outcome, 0) + 1
        total = sum(self.films.values())
        self.outcome = outcome if total == 1 else "batch"


CURRENT_REQUEST: ContextVar[RequestFacts | None] = ContextVar("request", default=None)


def note_film(model: str | None, outcome: str) -> None:
    """One film's outcome (`flagged`, `not_flagged`, `not_assessable` or its error code)
    for the access line of the request it belongs to; nothing outside a request."""
    facts = CURRENT_REQUEST.get()
    if facts is not None:
        facts.film(model, outcome)


def note_outcome(outcome: str) -> None:
    """The request's outcome (an error code); a film outcome noted already is kept."""
    facts = CURRENT_REQUEST.get()
    if facts is not None and facts.outcome is None:
        facts.outcome = outcome


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the
    request fields a record carries, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        for name in REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# uvicorn's start-up lines that say nothing a person can act on; its "Uvicorn running on
# http://..." line (where to open the app) and its errors stay.
_UVICORN_CHATTER = ("Started server process", "Waiting for application startup",
                    "Application startup complete", "Shutting down",
                    "Waiting for application shutdown", "Application shutdown complete",
                    "Finished server process")
# Third-party loggers that talk at INFO at every start or every film: alembic names each
# migration it runs (the lifespan brings the worklist database to head at every start),
# highdicom describes every SR and secondary capture it builds.
QUIET_LIBRARIES = ("alembic", "highdicom", "pynetdicom", "ray")


class _Chatter(logging.Filter):
    """Lines nothing an operator can act on: alembic's two at every connection it inspects
    (each /readyz check and each scrape asks whether the schema is at head), and uvicorn's
    start and stop steps (_UVICORN_CHATTER)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name == "alembic.runtime.migration":
            return not message.startswith(("Context impl ", "Will assume "))
        return not (record.name == "uvicorn.error" and record.levelno <= logging.INFO
                    and message.startswith(_UVICORN_CHATTER))


def configure(log_format: str, stream: IO[str] | None = None,
              level: int = logging.INFO) -> None:
    """The root logger's one handler, in `log_format` ("text" or "json"), on `stream`
    (default: stderr). uvicorn's loggers propagate to it (run it with log_config=None)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_Chatter())
    for name in QUIET_LIBRARIES:
        library = logging.getLogger(name)
        if library.level < logging.WARNING:  # NOTSET too; silence_decoder_chatter's kept
            library.setLevel(logging.WARNING)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


# --- TensorFlow's native lines --------------------------------------------------------
# I0000 00:00:1795978314.577650   16004 cudart_stub.cc:31] Could not find cuda drivers ...
_NATIVE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.\-]+:\d+)\] ?(.*)$")
_NATIVE_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR,
                  "F": logging.CRITICAL}
_CUDA = re.compile(r"cuda|cuInit|cudart|cudnn|cublas|cufft|GPU will not be used", re.I)
# absl's banner before its own initialisation, and cpu_feature_guard's second line
_NATIVE_NOISE = re.compile(r"^WARNING: All log messages before absl::InitializeLog|"
                           r"^To enable the following instructions:")


def has_nvidia_device() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def native_record(line: str, gpu: bool, min_level: int) -> tuple[str, int, str] | None:
    """What becomes of one line written to descriptor 2: None (dropped), or (logger name,
    level, message) to log it as."""
    if not line.strip() or _NATIVE_NOISE.match(line):
        return None
    match = _NATIVE.match(line)
    if match is None:  # a Python warning or traceback written to sys.stderr, line by line
        return "stderr", logging.WARNING, line
    letter, where, message = match.groups()
    if "IWEF".index(letter) < min_level or (not gpu and _CUDA.search(line)):
        return None
    return "native", _NATIVE_LEVELS[letter], f"{where}: {message}"


def route_native_stderr() -> IO[str]:
    """Descriptor 2 through the filter (see the module's doc), each kept line logged (so in
    the configured format); returns a stream on the real stderr for the log handler
    (`configure`). Call before TensorFlow is imported."""
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    gpu = has_nvidia_device()
    min_level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") or 0)

    def pump() -> None:
        with os.fdopen(read_end, "r", errors="replace") as lines:
            for line in lines:
                record = native_record(line.rstrip("\n"), gpu, min_level)
                if record is not None:
                    name, level, message = record
                    logging.getLogger(name).log(level, "%s", message)

    thread = threading.Thread(target=pump, name="native-stderr", daemon=True)
    thread.start()

    def drain() -> None:
        # Descriptor 2 back on the real stderr: the pipe's last writer closes (a decode
        # worker still alive holds it a little longer), and what is left is logged.
        sys.stderr.flush()
        os.dup2(real, 2)
        thread.join(timeout=2)

    atexit.register(drain)
    return os.fdopen(os.dup(real), "w", buffering=1)


def quiet_command() -> None:
    """For a command at a terminal (`pneumonia-triage score`, `archive score`): descriptor 2
    through the native filter (no CUDA line without a GPU, no line below
    TF_CPP_MIN_LOG_LEVEL), warnings and errors as text lines, and `sys.stderr` on the real
    stderr, so that a progress bar and a traceback show as they are. Call before
    TensorFlow is imported."""
    stream = route_native_stderr()
    configure("text", stream, level=logging.WARNING)
    silence_decoder_chatter()
    sys.stderr = stream


def silence_decoder_chatter() -> None:
    """Decoders talk about the files they read: python-multipart quotes bytes of malformed
    bodies, Pillow quotes EXIF tags, pydicom quotes tag values it finds malformed (a body
    part, a date: possibly a patient's). Nothing derived from an upload is logged, so the
    serving processes and the decode workers silence them."""
    # highdicom warns with a patient's name it finds unusual (check_person_name).
    for name in ("python_multipart", "pydicom", "highdicom"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # pynetdicom logs every association and request at INFO (three lines a film); its
    # warnings and errors (a rejected association, an aborted one) stay.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    for module in ("PIL", "pydicom", "highdicom"):
        warnings.filterwarnings("ignore", module=module)
