"""The store's fixtures: a test that takes `url` or `store` runs on SQLite and on a
throw-away PostgreSQL cluster (tests/pg.py), each test on a database of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from app.store import WorklistStore, upgrade
from tests.pg import Cluster, PostgresMissing, throwaway_cluster
from tests.store.factories import T0

BACKENDS = ["sqlite", "postgresql"]
_TEMPLATE = "worklist_at_head"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One cluster for the session, with a database at head that each test's is copied from.
    Missing PostgreSQL binaries FAIL the tests (never skip): CI installs them."""
    try:
        with throwaway_cluster() as cluster:
            upgrade(cluster.create_database(_TEMPLATE))
            yield cluster
    except PostgresMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _database(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
              at_head: bool) -> str:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'worklist.db'}"
        if at_head:
            upgrade(url)
        return url
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t_{uuid.uuid4().hex[:16]}",
                                   template=_TEMPLATE if at_head else None)


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database without the schema."""
    return _database(backend, tmp_path, request, at_head=False)


@pytest.fixture
def url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database at the code's head revision."""
    return _database(backend, tmp_path, request, at_head=True)


class Clock:
    """The store's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(url: str, clock: Clock) -> Iterator[WorklistStore]:
    worklist = WorklistStore(url, clock=clock)
    yield worklist
    worklist.close()
