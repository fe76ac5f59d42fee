"""The app under test: settings on the committed models, a TestClient factory, and the real
server (`python -m app`) on a free port. Waits poll with a deadline; none sleeps blindly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.services.catalog import ModelCatalog
from app.web.main import create_app

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data" / "chest_xray"
# The settings that decide what a catalog loads: apps that agree on them share one catalog.
CATALOG_SETTINGS = {"model_dir", "model_name", "model_version", "offered_models", "threshold",
                    "batch_wait_ms", "intended_age_years"}


# The worklist's embedded database of this test session: never the checkout's var/.
STATE_DIR = Path(tempfile.mkdtemp(prefix="triage-tests-state-"))


def heavy_imports(modules: str, heavy: set[str]) -> list[str]:
    """The packages of `heavy` that importing `modules` (comma-separated, as in an import
    statement) loads, in a fresh interpreter: [] for a module that must stay light."""
    code = (f"import json, sys, {modules}; heavy = {sorted(heavy)!r}; "
            "print(json.dumps(sorted(set(heavy) & {m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, check=True)
    return json.loads(result.stdout)


def settings_for_tests(**overrides) -> Settings:
    """Settings on the committed model, whatever the working directory, with this session's
    own state folder."""
    values = {"model_dir": REPO / "models", "state_dir": STATE_DIR,
              "dicom_port": 0,  # the DICOM node's listener only where a test asks for it
              **overrides}
    return Settings(**values)


def poll(condition: Callable[[], object], timeout: float, what: str,
         interval: float = 0.02) -> object:
    """`condition()`'s first truthy value, checked every `interval` s; fails the test after
    `timeout` s naming `what`. The deadline is a safety net, never the thing tested."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)
    return value


def wait_until_settled(client: TestClient, timeout: float = 120) -> int:
    """Poll /readyz until the background load ends: 200 ready, or 503 without Retry-After
    (failed). Returns the final status."""
    def settled():
        response = client.get("/readyz")
        done = response.status_code == 200 or "retry-after" not in response.headers
        return response.status_code if done else None

    return poll(settled, timeout, "the model to finish loading")


class ClientFactory:
    """TestClients of the real app, each model set loaded once per session: `with
    factory(max_concurrent_decodes=1) as client:` gets an app on those settings, with the
    catalog of any earlier app that agreed on CATALOG_SETTINGS."""

    def __init__(self) -> None:
        self._catalogs: dict[str, ModelCatalog] = {}

    @contextmanager
    def __call__(self, **overrides) -> Iterator[TestClient]:
        settings = settings_for_tests(**overrides)
        key = settings.model_dump_json(include=CATALOG_SETTINGS)
        catalog = self._catalogs.setdefault(key, ModelCatalog())
        with TestClient(create_app(settings, catalog=catalog)) as client:
            wait_until_settled(client)
            yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def server_process(log_path: Path, state_dir: Path | None = None,
                   **settings: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python -m app` (uvicorn) on a free port with PNEUMONIA_* `settings`, keeping its
    state in `state_dir` (default: a `state` folder beside its log); its base URL and its
    process, which a test may kill. Stopped (if it still runs) on exit."""
    port = free_port()
    env = {**os.environ, "PNEUMONIA_PORT": str(port), "PNEUMONIA_HOST": "127.0.0.1",
           "PNEUMONIA_MODEL_DIR": str(REPO / "models"),
           "PNEUMONIA_STATE_DIR": str(state_dir or log_path.parent / "state"),
           "PNEUMONIA_DICOM_PORT": "0",
           **{f"PNEUMONIA_{key.upper()}": value for key, value in settings.items()}}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: process.poll() is not None or is_ready(url), 90, "the server to start")
        if process.poll() is not None:
            pytest.fail("server exited: " + log_path.read_text()[-2000:])
        yield url, process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen) -> None:
    """Ask a server to stop (SIGTERM); kill it if it is still there 20 s later."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_server(log_path: Path, state_dir: Path | None = None,
                   **settings: str) -> Iterator[str]:
    """`python -m app` (uvicorn) on a free port with PNEUMONIA_* `settings`; its base URL."""
    with server_process(log_path, state_dir, **settings) as (url, _):
        yield url
