"""A served model is TensorFlow and its signatures: loading one must not load Keras, nor
the training libraries Keras brings where they are installed (app/services/saved_model.py
`import_tensorflow`: 165 MiB and 1.3 s of the serving process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.servers import REPO

PROBE = """
import json, sys
from pathlib import Path
from app.services.catalog import load_model
model = load_model(Path("models"), "pneumonia", None)
loaded = sorted(m for m in ("keras", "sklearn", "matplotlib", "pandas") if m in sys.modules)
import tensorflow as tf
keras_later = tf.keras.__name__  # Keras is still there for a process that asks for it
from tensorflow.keras import layers  # through tensorflow.__path__, as TensorFlow set it
import pkgutil
listed = sum(1 for _ in pkgutil.iter_modules(tf.__path__))
print(json.dumps({"loaded": loaded, "keras_later": keras_later, "layers": layers.__name__,
                  "path_ok": None not in tf.__path__ and listed > 0,
                  "score": float(model.predict(__import__("numpy").zeros(
                      (1, *model.card.input_size, model.card.channels)))[0])}))
"""


@pytest.mark.slow
def test_serving_a_model_loads_no_keras_and_keras_stays_importable():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["loaded"] == []
    assert found["keras_later"].startswith("keras")
    assert found["layers"].startswith("keras")
    assert found["path_ok"]
    assert 0.0 <= found["score"] <= 1.0
