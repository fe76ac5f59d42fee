"""Fixtures only; the helpers they use live in tests/servers.py and tests/builders/images.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.servers import DEFAULT_DATA_DIR, ClientFactory, running_server


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


@pytest.fixture(scope="session")
def client_factory() -> ClientFactory:
    """Apps on any settings, each set of models loaded once per session."""
    return ClientFactory()


@pytest.fixture(scope="session")
def client(client_factory: ClientFactory) -> Iterator[TestClient]:
    """The real app on the committed models, with the default settings."""
    with client_factory() as test_client:
        assert test_client.get("/readyz").status_code == 200
        yield test_client


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The real server (`python -m app`, uvicorn) on a free port: (base URL, its log file)."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(log_path) as url:
        yield url, log_path


@pytest.fixture
def worklist(tmp_path):
    """An embedded worklist store at the code's schema, in the test's own folder."""
    from app.store import WorklistStore, upgrade

    url = f"sqlite:///{tmp_path / 'worklist.db'}"
    upgrade(url)
    store = WorklistStore(url)
    yield store
    store.close()
