"""Fixtures of the services' tests."""

from __future__ import annotations

import pytest

from app.store import WorklistStore, upgrade


@pytest.fixture
def store(tmp_path):
    """An embedded worklist store at the code's schema, in the test's own folder."""
    url = f"sqlite:///{tmp_path / 'worklist.db'}"
    upgrade(url)
    worklist = WorklistStore(url)
    yield worklist
    worklist.close()
