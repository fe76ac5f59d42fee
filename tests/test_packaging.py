"""The package as a user installs it: `pip install .` (not editable) serves its pages and their
static files from any working directory, its templates and assets shipped inside it as the web
package's resources (setup.py, app/web/main.py `resource_dir`)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.servers import REPO, free_port, poll, stop_process

pytestmark = pytest.mark.slow


def _wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(out), str(REPO)], check=True, capture_output=True)
    (wheel,) = out.glob("pneumonia_triage-*.whl")
    return wheel


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


def test_the_wheel_ships_the_pages_and_assets_inside_the_web_package(tmp_path):
    names = set(zipfile.ZipFile(_wheel(tmp_path)).namelist())
    for folder, pattern in (("templates", "*.html"), ("static", "*")):
        for path in (REPO / folder).glob(pattern):
            assert f"app/web/{folder}/{path.name}" in names, path
    assert not any(name.startswith(("templates/", "static/")) for name in names)


def test_an_installed_package_serves_its_pages_from_another_working_directory(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(_wheel(tmp_path / "wheel"))], check=True,
                   capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    # The installed copy comes first on the path: the checkout's app/ is never read.
    env = {**os.environ, "PYTHONPATH": str(site), "PNEUMONIA_PORT": str(port),
           "PNEUMONIA_HOST": "127.0.0.1", "PNEUMONIA_MODEL_DIR": str(REPO / "models"),
           "PNEUMONIA_STATE_DIR": str(tmp_path / "state"), "PNEUMONIA_DICOM_PORT": "0"}
    for name in ("PNEUMONIA_TEMPLATES_DIR", "PNEUMONIA_STATIC_DIR"):
        env.pop(name, None)
    probe = subprocess.run([sys.executable, "-c", "import app; print(app.__file__)"], env=env,
                           cwd=elsewhere, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(site)), probe.stdout
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=elsewhere,
                                   stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: process.poll() is not None or _get(base + "/readyz")[0] == 200, 90,
             "the installed server to be ready")
        assert process.poll() is None, log.read_text()[-2000:]
        for path, text in (("/", b"<form"), ("/worklist", b"orklist"), ("/report", b"<table"),
                           ("/static/style.css", b"{"), ("/static/upload.js", b"function"),
                           ("/static/worklist.js", b"function"),
                           ("/favicon.ico", b"<svg")):
            status, body = _get(base + path)
            assert status == 200 and text in body, (path, status, body[:200])
    finally:
        stop_process(process)
