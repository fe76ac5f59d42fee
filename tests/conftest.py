from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data" / "chest_xray"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real dataset. Missing data FAILS the test (never skips): CI must have it."""
    path = Path(os.environ.get("PNEUMONIA_DATA_DIR", DEFAULT_DATA_DIR))
    if not (path / "test").is_dir():
        pytest.fail(f"chest X-ray data not found at {path}; set PNEUMONIA_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def samples_dir(data_dir: Path) -> Path:
    path = data_dir.parent / "samples"
    if not path.is_dir():
        pytest.fail(f"full-resolution samples not found at {path}")
    return path


def settings_for_tests(**overrides) -> Settings:
    """Settings on the committed model, whatever the working directory."""
    values = {"model_dir": REPO / "models", "templates_dir": REPO / "templates",
              "static_dir": REPO / "static", **overrides}
    return Settings(**values)


def wait_until_settled(client: TestClient, timeout: float = 120) -> int:
    """Poll /readyz until the background load ends: 200 ready, or 503 without Retry-After
    (failed). Returns the final status."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == 200 or "retry-after" not in response.headers:
            return response.status_code
        if time.monotonic() > deadline:
            pytest.fail("the model did not finish loading")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The real app on the committed model; `with` runs the lifespan, which starts the load."""
    with TestClient(create_app(settings_for_tests())) as test_client:
        assert wait_until_settled(test_client) == 200
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(log_path: Path, **settings: str) -> Iterator[str]:
    """`python -m app` (uvicorn) on a free port with PNEUMONIA_* `settings`; its base URL."""
    port = _free_port()
    env = {**os.environ, "PNEUMONIA_PORT": str(port), "PNEUMONIA_HOST": "127.0.0.1",
           "PNEUMONIA_MODEL_DIR": str(REPO / "models"),
           "PNEUMONIA_TEMPLATES_DIR": str(REPO / "templates"),
           "PNEUMONIA_STATIC_DIR": str(REPO / "static"),
           **{f"PNEUMONIA_{key.upper()}": value for key, value in settings.items()}}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("server did not become ready: " + log_path.read_text()[-2000:])
        time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The real server (`python -m app`, uvicorn) on a free port: (base URL, its log file)."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(log_path) as url:
        yield url, log_path
