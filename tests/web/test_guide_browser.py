"""Real headless Chromium on /guide, the site `mkdocs build` makes from docs/, with every
request that leaves the machine aborted: the pages, their scripts and their search must work
offline and under the guide's Content-Security-Policy (issue 33)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.servers import REPO, running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real server serving a site freshly built from docs/."""
    folder = tmp_path_factory.mktemp("guide")
    site = folder / "site"
    built = subprocess.run([str(Path(sys.executable).with_name("mkdocs")), "build", "--quiet",
                            "--site-dir", str(site)], cwd=REPO, capture_output=True, text=True,
                           timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    with running_server(folder / "server.log", guide_dir=str(site)) as url:
        yield url


def test_guide_opens_offline_without_a_failed_request_or_console_error(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    local = urlsplit(server).netloc
    left, failed, errors = [], [], []

    def only_this_server(route):
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:  # the network outside is blocked: a page must not need it
            left.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(server + "/guide")
    expect(page.locator("article h1")).to_contain_text("Pediatric chest X-ray pneumonia triage")
    expect(page.locator("article img").first).to_have_js_property("complete", True)
    # Each page fetches the search index; leaving before it is in would cancel it (a
    # failed request that is no fault of the site's).
    page.wait_for_load_state("networkidle")
    page.locator("nav.md-nav--primary").get_by_role("link", name="For clinicians").first.click()
    expect(page.locator("article h1")).to_contain_text("For clinicians")
    expect(page.locator("#what-the-model-is-for-and-its-limits")).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.goto(server + "/guide/settings.html")
    expect(page.locator("article table tbody tr").first).to_be_visible()
    expect(page.locator("article")).to_contain_text("PNEUMONIA_GUIDE_DIR")
    # Search runs in a worker from the site's own files, under the same policy.
    page.locator("input.md-search__input").click()
    page.locator("input.md-search__input").press_sequentially("shadow mode")
    expect(page.locator(".md-search-result__item").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert left == [] and failed == [] and errors == [], (left, failed, errors)
    page.close()
