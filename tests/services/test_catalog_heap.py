"""Once the models are loaded, the server's long-lived objects are frozen out of the
garbage collector's full collections (app/services/catalog.py `_settle_heap`): a full
collection walked TensorFlow's and the models' objects with the interpreter lock held."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.servers import REPO

PROBE = """
import gc, json
from app.services.catalog import ModelCatalog
from tests.servers import settings_for_tests
catalog = ModelCatalog()
catalog.load(settings_for_tests(offered_models=[]))
print(json.dumps({"ready": catalog.default is not None, "frozen": gc.get_freeze_count(),
                  "scanned": len(gc.get_objects())}))
"""


@pytest.mark.slow
def test_a_full_collection_after_the_models_loaded_scans_only_what_came_after():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["ready"]
    assert found["frozen"] > 100_000  # TensorFlow's and the model's objects
    assert found["scanned"] < found["frozen"] // 20, found
