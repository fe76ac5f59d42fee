"""Fixtures of the services' tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def store(worklist):
    """The embedded worklist store of tests/conftest.py, under the name these tests use."""
    return worklist
