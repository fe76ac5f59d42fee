"""Fixtures of the DICOM node's tests; helpers live in tests/dicom/nodes.py and orthanc.py."""

from __future__ import annotations

import pytest

from app.services.catalog import ModelCatalog
from tests.servers import settings_for_tests


@pytest.fixture(scope="session")
def committed_model_catalog() -> ModelCatalog:
    """The committed default model, loaded once (TensorFlow): for the end-to-end tests."""
    catalog = ModelCatalog()
    catalog.load(settings_for_tests(offered_models=[]))
    if catalog.default is None:
        pytest.fail(f"the committed model did not load: {catalog.failure}")
    return catalog
