"""Real headless Chromium against the real server: upload a sample X-ray, open the report."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.realdata]

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = {**os.environ, "PNEUMONIA_PORT": str(port), "PNEUMONIA_HOST": "127.0.0.1",
           "PNEUMONIA_MODEL_DIR": str(REPO / "models"),
           "PNEUMONIA_TEMPLATES_DIR": str(REPO / "templates"),
           "PNEUMONIA_STATIC_DIR": str(REPO / "static")}
    process = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("server did not become ready: " + process.stderr.read().decode()[-2000:])
        time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Chromium not found: install Debian's 'chromium' package (make test does)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


def _sample(samples_dir: Path) -> Path:
    return samples_dir / "person1945_bacteria_4872.jpeg"


def test_browser_uploads_sample_sees_probability_and_opens_report(server, browser, samples_dir):
    page = browser.new_page()
    page.goto(server + "/")
    assert "not a diagnosis" in page.inner_text("body")
    page.set_input_files("#file", str(_sample(samples_dir)))
    assert page.is_visible("#preview")
    page.click("#submit")
    page.wait_for_selector("#outcome:not([hidden])", timeout=20_000)
    probability = page.inner_text("#probability")
    assert probability.endswith("%") and 0 <= float(probability.strip("<>%")) <= 100
    assert page.inner_text("#label") in ("PNEUMONIA", "NORMAL")
    assert page.url.rstrip("/") == server  # stayed on the page: JavaScript path
    page.click("text=Model report")
    page.wait_for_selector("h1")
    assert page.inner_text("h1") == "Evaluation report"
    assert page.locator("#experiments tbody tr").count() == 7
    page.close()


def test_browser_without_javascript_posts_the_form(server, browser, samples_dir):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server + "/")
    page.set_input_files("#file", str(_sample(samples_dir)))
    page.click("#submit")
    page.wait_for_selector("#outcome")
    assert page.inner_text("#probability").endswith("%")
    assert page.inner_text("#label") in ("PNEUMONIA", "NORMAL")
    context.close()
