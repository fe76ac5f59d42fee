"""Log lines (app/logs.py, app/web/middleware.py): PNEUMONIA_LOG_FORMAT=json gives one JSON
object per line with the request's facts and never a patient's name or ID; TensorFlow's CUDA
lines are not printed on a machine without a GPU."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app import logs
from app.logs import JsonFormatter, native_record
from tests.builders.dicom import PATIENT_ID, PATIENT_NAME, dicom_bytes, study_film
from tests.builders.images import jpeg_bytes, xray_like
from tests.dicom.nodes import NODE_AE, StandInPacs, store
from tests.servers import free_port, poll, running_server

# What a line must never hold: the test films' patient (tests/builders/dicom.py) and the
# client's file names.
SECRETS = (PATIENT_NAME, PATIENT_ID, "Doe", "SECRET", "jane-doe-film")
ACCESS_FIELDS = {"time", "level", "logger", "message", "request_id", "route", "method",
                 "status", "duration_ms", "outcome"}


def parse_lines(text: str) -> list[dict]:
    """Every non-empty line as a JSON object (fails the test on any other line)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"line {number} is not JSON: {line[:200]!r}")
    return found


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger in JSON, into a buffer, for the test (the test client's own httpx
    lines, which quote its URLs, left out: they are not the server's)."""
    root, client_log, buffer = logging.getLogger(), logging.getLogger("httpx"), io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    levels = root.level, client_log.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    client_log.setLevel(logging.WARNING)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        client_log.setLevel(levels[1])


def _upload(client: TestClient, data: bytes, name: str = "jane-doe-film.dcm"):
    return client.post("/predict", files={"file": (name, data, "application/dicom")})


def test_every_line_of_a_request_is_json_with_its_facts_and_no_patient_data(client,
                                                                             json_log):
    film = dicom_bytes(xray_like(256, 256))  # PatientName and PatientID set
    assert _upload(client, film).status_code == 200
    assert _upload(client, dicom_bytes(xray_like(), modality="CT")).status_code == 422
    batch = client.post("/predict/batch", files=[
        ("files", ("jane-doe-film-1.dcm", film, "application/dicom")),
        ("files", ("jane-doe-film-2.jpeg", jpeg_bytes(300, 280), "image/jpeg"))])
    assert batch.status_code == 200
    assert client.get("/nowhere/jane-doe-film").status_code == 404
    text = json_log.getvalue()
    for secret in SECRETS:
        assert secret not in text
    lines = parse_lines(text)
    access = [line for line in lines if line["logger"] == "app.access"]
    assert [(line["route"], line["status"]) for line in access] == [
        ("/predict", 200), ("/predict", 422), ("/predict/batch", 200), ("unmatched", 404)]
    for line in access:
        assert line.keys() >= ACCESS_FIELDS and len(line["request_id"]) == 16
        assert line["time"].endswith("Z") and line["duration_ms"] > 0
    single, refused, many, missing = access
    assert single["model"] == "pneumonia"
    assert single["outcome"] in ("flagged", "not_flagged", "not_assessable")
    assert refused["outcome"] == "dicom_modality"
    assert many["outcome"] == "batch" and sum(many["films"].values()) == 2
    assert missing["outcome"] == "error"


def test_the_access_line_s_request_id_is_the_response_s(client, json_log):
    response = client.get("/models")
    assert client.get("/healthz").status_code == 200  # probes and scrapes: DEBUG
    [line] = [line for line in parse_lines(json_log.getvalue())
              if line["logger"] == "app.access"]
    assert line["request_id"] == response.headers["x-request-id"]
    assert (line["route"], line["method"], line["outcome"]) == ("/models", "GET", "ok")


def test_an_exception_becomes_one_json_line_with_its_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("app.test").makeRecord(
            "app.test", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed here" and "ValueError: boom" in line["exception"]
    assert "\n" not in JsonFormatter().format(record)


CUDA_LINES = [
    "I0000 00:00:1795978314.577650   16004 cudart_stub.cc:31] Could not find cuda drivers "
    "on your machine, GPU will not be used.",
    "E0000 00:00:1795978316.618589   16004 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]


@pytest.mark.parametrize("line", CUDA_LINES)
def test_cuda_lines_are_dropped_without_a_gpu_and_kept_with_one(line):
    assert native_record(line, gpu=False, min_level=0) is None
    kept = native_record(line, gpu=True, min_level=0)
    assert kept is not None and kept[0] == "native"


@pytest.mark.parametrize(("line", "expected"), [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
     None),
    ("I0000 00:00:1.5   1 port.cc:153] oneDNN custom operations are on.", None),
    ("W0000 00:00:1.5   1 loader.cc:9] a native warning",
     ("native", logging.WARNING, "loader.cc:9: a native warning")),
    ("Traceback (most recent call last):",
     ("stderr", logging.WARNING, "Traceback (most recent call last):")),
    ("", None),
])
def test_native_lines_below_tf_cpp_min_log_level_are_dropped_and_the_rest_logged(line, expected):
    assert native_record(line, gpu=False, min_level=1) == expected


@pytest.mark.slow
def test_the_served_process_logs_only_json_without_cuda_lines_or_patient_data(tmp_path):
    """`python -m app` on this CPU-only machine, its stdout and stderr together: a film
    uploaded and one sent by C-STORE, both with the patient's name and ID."""
    if logs.has_nvidia_device():
        pytest.skip("this machine has a GPU: CUDA lines are real there")
    log_path, node_port = tmp_path / "server.log", free_port()
    with running_server(log_path, log_format="json", dicom_port=str(node_port),
                        dicom_ae_title=NODE_AE) as url:
        boundary = "jane-doe-boundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"jane-doe-film.dcm\"\r\nContent-Type: application/dicom\r\n\r\n"
                ).encode() + dicom_bytes(xray_like(256, 256)) + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            url + "/predict", data=body, method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        [status] = store(node_port, [study_film(xray_like(256, 256))])
        assert status.Status in (0x0000, 0xB000, 0xB007)
    text = log_path.read_text()
    lines = parse_lines(text)
    assert "cuda" not in text.lower() and "cuinit" not in text.lower()
    for secret in SECRETS:
        assert secret not in text
    assert any(line["logger"] == "app.model" and "ready" in line["message"] for line in lines)
    [predict] = [line for line in lines if line.get("route") == "/predict"]
    assert predict["status"] == 200 and predict["model"] == "pneumonia"
    assert any(line["logger"] == "app.dicom" and "from dicom:PACS" in line["message"]
               for line in lines)


# A text line (app/logs.py TEXT_FORMAT): level, logger, message.
TEXT_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+([\w.\-]+): (.*)$")


def _not_the_app_s_own(text: str) -> list[str]:
    """The lines of a text-format log that come from no `app.*` logger; uvicorn's
    "Uvicorn running on http://..." is allowed: it says where to open the app."""
    strangers = []
    for line in text.splitlines():
        match = TEXT_LINE.match(line)
        if match is None:  # a native line, a continuation, a progress bar: not the app's
            strangers.append(line)
            continue
        _, name, message = match.groups()
        if not (name.startswith("app.") or name == "app" or (
                name == "uvicorn.error" and message.startswith("Uvicorn running on http"))):
            strangers.append(line)
    return strangers


@pytest.mark.slow
def test_a_start_and_a_dicom_result_print_only_the_app_s_own_lines(tmp_path):
    """`pneumonia-triage serve` as `make run` starts it (text lines), with a DICOM node and
    a results destination, on a fresh state folder (the worklist database created): a film
    sent by C-STORE gets its SR and secondary capture built with highdicom and delivered.
    No line of uvicorn's start-up steps, alembic's migrations, highdicom or TensorFlow."""
    log_path, node_port = tmp_path / "server.log", free_port()
    with StandInPacs() as pacs, running_server(
            log_path, log_format="text", dicom_port=str(node_port), dicom_ae_title=NODE_AE,
            results_destination=f"PACS@127.0.0.1:{pacs.port}", decode_workers="1"):
        [status] = store(node_port, [study_film(xray_like(256, 256))])
        assert status.Status in (0x0000, 0xB000, 0xB007)
        poll(lambda: pacs.received, 60, "the results to reach the PACS")
    text = log_path.read_text()
    assert "ready" in text and "Uvicorn running on http" in text
    assert _not_the_app_s_own(text) == [], text
