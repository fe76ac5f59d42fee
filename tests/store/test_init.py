"""The store is free of the web layer and the model: a worker, the DICOM node or the console
can import it alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("fastapi", "starlette", "tensorflow", "keras", "app.web.schemas", "app.web.routes",
             "app.services", "app.web.main")


def test_import_store_loads_no_web_framework_or_model() -> None:
    code = ("import sys, app.store, app.store.retention; "
            f"print(sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r})))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert loaded == "[]"
