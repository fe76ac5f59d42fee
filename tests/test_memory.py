"""One memory budget for the process tree (app/memory.py, Settings.memory_budget_mb):
each decode worker's cap derived from it, and a configuration that cannot fit refused at
start with the settings to change, never a secret."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.memory import MIN_WORKER_MB, RESULTS_BUILD_MB
from tests.servers import REPO

MIB = 1 << 20


def test_each_workers_cap_is_what_the_server_and_the_bodies_leave():
    settings = Settings(memory_budget_mb=3072, server_memory_mb=1280, decode_workers=2,
                        max_upload_memory_bytes=256 * MIB)
    assert settings.decode_memory_mb == (3072 - 1280 - 256) // 2
    assert Settings(decode_workers=2).decode_memory_mb == 2048  # no budget: as set


@pytest.mark.parametrize("sends", [{"results_destination": "PACS@pacs:104"},
                                   {"results_dicomweb_url": "http://pacs/dicom-web"}])
def test_a_node_that_sends_results_leaves_the_build_process_its_share(sends):
    """The results' build process (app/dicom/build_process.py) has its share of the budget
    where the node sends results; not in shadow mode, which sends none."""
    budget = {"memory_budget_mb": 3072, "server_memory_mb": 1280, "decode_workers": 2,
              "max_upload_memory_bytes": 256 * MIB}
    settings = Settings(**budget, **sends)
    assert settings.results_build_process
    assert settings.decode_memory_mb == (3072 - 1280 - 256 - RESULTS_BUILD_MB) // 2
    shadow = Settings(**budget, **sends, shadow_mode=True)
    assert not shadow.results_build_process
    assert shadow.decode_memory_mb == (3072 - 1280 - 256) // 2
    with pytest.raises(ValidationError) as refused:
        Settings(**{**budget, "memory_budget_mb": 1280 + 256 + 2 * MIN_WORKER_MB}, **sends)
    assert f"the DICOM results' build process ({RESULTS_BUILD_MB} MiB" in str(refused.value)


@pytest.mark.parametrize(("settings", "words"), [
    ({"decode_workers": 2, "decode_memory_mb": 2048}, "capped at PNEUMONIA_DECODE_MEMORY_MB"),
    ({"decode_workers": 8}, f"under the {MIN_WORKER_MB} MiB a worker needs"),
    ({"decode_workers": 0, "server_memory_mb": 4000}, "PNEUMONIA_SERVER_MEMORY_MB=4000"),
])
def test_settings_that_pass_the_budget_are_refused_naming_what_to_change(settings, words):
    with pytest.raises(ValidationError) as refused:
        Settings(memory_budget_mb=3072, **settings)
    assert "PNEUMONIA_MEMORY_BUDGET_MB=3072 is too small" in str(refused.value)
    assert words in str(refused.value)


def test_the_server_refuses_to_start_over_its_budget_and_says_why(tmp_path):
    token = "a-secret-token-never-printed"
    with socket.socket() as taken:  # were the settings let through, it would stop here too
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**os.environ, "PNEUMONIA_MEMORY_BUDGET_MB": "2048",
               "PNEUMONIA_DECODE_WORKERS": "2", "PNEUMONIA_API_TOKEN": token,
               "PNEUMONIA_STATE_DIR": str(tmp_path), "PNEUMONIA_DICOM_PORT": "0",
               "PNEUMONIA_HOST": "127.0.0.1", "PNEUMONIA_PORT": str(taken.getsockname()[1])}
        done = subprocess.run([sys.executable, "-m", "app"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    said = done.stdout + done.stderr
    assert done.returncode == 2
    assert "the settings cannot work: PNEUMONIA_MEMORY_BUDGET_MB=2048 is too small" in said
    assert "Raise the budget to at least 2560" in said and "Traceback" not in said
    assert token not in said
