"""Real headless Chromium against the real server: upload a sample X-ray, open the report."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.realdata]


@pytest.fixture(scope="module")
def server(live_server):
    return live_server[0]


def _sample(samples_dir: Path) -> Path:
    return samples_dir / "person1945_bacteria_4872.jpeg"


# Every check below is an auto-waiting `expect`: it retries until true or its timeout.
def test_browser_uploads_sample_sees_probability_and_opens_report(server, browser, samples_dir):
    page = browser.new_page()
    page.goto(server + "/")
    expect(page.locator("body")).to_contain_text("not a diagnosis")
    page.set_input_files("#file", str(_sample(samples_dir)))
    expect(page.locator("#preview")).to_be_visible()
    page.click("#submit")
    expect(page.locator("#outcome")).to_be_visible(timeout=20_000)
    expect(page.locator("#probability")).to_have_text(re.compile(r"^(>99\.9|<0\.1|\d{1,2}\.\d)%$"))
    expect(page.locator("#decision")).to_have_text(
        re.compile("^(flagged for priority read|not flagged)$"))
    expect(page.locator("#triage-score")).to_have_text(re.compile(r"^\d{1,2}$"))
    expect(page).to_have_url(server + "/")  # stayed on the page: the JavaScript path
    page.click("text=Model report")
    expect(page.locator("h1")).to_have_text("Evaluation report")
    expect(page.locator("#experiments tbody tr")).to_have_count(7)
    page.close()


def test_browser_shows_the_api_text_and_decision(server, browser, samples_dir):
    """The script prints what the API returned, not its own rounding or threshold rule."""
    page = browser.new_page()
    page.goto(server + "/")
    with page.expect_response("**/predict") as response_info:
        page.set_input_files("#file", str(_sample(samples_dir)))
        page.click("#submit")
    body = response_info.value.json()
    assert body["heatmap"] is None  # one Score button: the heatmap only when switched on
    expect(page.locator("#probability")).to_have_text(body["probability_text"])
    expect(page.locator("#decision")).to_have_text(body["decision_text"])
    expect(page.locator("#triage-score")).to_have_text(body["triage_score_text"])
    page.close()


def test_browser_without_javascript_posts_the_form(server, browser, samples_dir):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server + "/")
    page.set_input_files("#file", str(_sample(samples_dir)))
    page.click("#submit")
    expect(page.locator("#outcome")).to_be_visible(timeout=20_000)
    expect(page.locator("#probability")).to_have_text(re.compile(r"%$"))
    expect(page.locator("#decision")).to_have_text(
        re.compile("^(flagged for priority read|not flagged)$"))
    context.close()


def test_browser_scores_five_films_into_a_sorted_worklist_and_downloads_csv(
        server, browser, data_dir, tmp_path):
    from PIL import Image

    from tests.builders.dicom import dicom_bytes

    films = sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[:2] + \
        sorted((data_dir / "test" / "NORMAL").glob("*.jpeg"))[:3]
    dicom = tmp_path / (films[-1].stem + ".dcm")  # a test film as a DICOM file
    dicom.write_bytes(dicom_bytes(np.asarray(Image.open(films.pop()).convert("L"))))
    page = browser.new_page(accept_downloads=True, viewport={"width": 1200, "height": 1100})
    page.goto(server + "/")
    page.set_input_files("#file", [str(f) for f in films] + [str(dicom)])
    expect(page.locator("#chosen")).to_have_text("5 files chosen")
    page.click("#submit")
    expect(page.locator("#progress")).to_be_visible()
    expect(page.locator("#progress-text")).to_contain_text("5 files: 5 scored", timeout=30_000)
    rows = page.locator("#worklist-table tbody tr")
    expect(rows).to_have_count(5)
    expect(page.locator("#worklist-table img.thumb")).to_have_count(5)
    shown = [int(t) for t in page.locator("#worklist-table td.score").all_inner_texts()]
    assert shown == sorted(shown, reverse=True)
    expect(page.locator("#worklist-table tr.flagged").first).to_be_visible()
    expect(page.locator("#worklist-table tr.flagged td.decision-cell").first).to_have_text(
        "flagged for priority read")
    with page.expect_download() as download_info:
        page.click("#csv")
    lines = Path(download_info.value.path()).read_text().strip().splitlines()
    assert lines[0].startswith("rank,file,decision,triage_score,probability")
    table_files = page.locator("#worklist-table td.name").all_inner_texts()
    assert [line.split(",")[1] for line in lines[1:]] == table_files
    if os.environ.get("SCREENSHOT_DIR"):  # README screenshot: SCREENSHOT_DIR=docs make test
        # docs/worklist.png is the worklist page (benchmarks/screenshots.py)
        page.screenshot(path=str(Path(os.environ["SCREENSHOT_DIR"]) / "upload-worklist.png"),
                        full_page=True)
    page.close()


def test_browser_shows_heatmap_overlay_with_slider_and_a_guard_warning(server, browser,
                                                                       tmp_path, samples_dir):
    import skimage.data
    from PIL import Image

    cat = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(cat)
    page = browser.new_page()
    page.goto(server + "/")
    page.set_input_files("#file", str(cat))
    page.click("#submit")
    expect(page.locator("#outcome")).to_be_visible(timeout=20_000)
    expect(page.locator("#warnings")).to_be_visible()
    expect(page.locator("#warnings")).to_contain_text("unlike the chest films")
    expect(page.locator("#heatmap")).to_be_hidden()  # not assessable: no map of its score
    expect(page.locator("#heatmap-switch")).to_be_hidden()  # nothing to map
    page.set_input_files("#file", str(_sample(samples_dir)))
    page.click("#submit")
    expect(page.locator("#decision")).to_have_text(
        re.compile("^(flagged for priority read|not flagged)$"), timeout=20_000)
    expect(page.locator("#heatmap")).to_be_hidden()  # one Score button: no map until asked
    with page.expect_response("**/predict?explain=true"):
        page.locator("#show-heatmap").check()
    expect(page.locator("#heatmap")).to_be_visible(timeout=20_000)
    expect(page.locator("#heat-overlay")).to_have_attribute("src", re.compile("^data:image/png"))
    page.locator("#opacity").fill("20")
    expect(page.locator("#heat-overlay")).to_have_css("opacity", "0.2")
    page.locator("#show-heatmap").uncheck()
    expect(page.locator("#heatmap")).to_be_hidden()
    page.close()


def test_without_javascript_one_score_button_and_the_heatmap_button_beside_it(
        server, browser, samples_dir):
    """With JavaScript the form has one Score button (the heatmap is a switch on the
    result); without it, the page cannot ask again for a film it has not kept, so a second
    button scores with the heatmap."""
    page = browser.new_page()
    page.goto(server + "/")
    expect(page.locator("#upload-form button[type=submit]:visible")).to_have_count(2)  # and Add
    expect(page.locator("#submit-explain")).to_have_count(0)  # inside <noscript>: not parsed
    page.close()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server + "/")
    page.set_input_files("#file", str(_sample(samples_dir)))
    page.click("#submit-explain")
    expect(page.locator("#heatmap")).to_be_visible(timeout=20_000)
    expect(page.locator("#heatmap-switch")).to_be_hidden()
    context.close()


def test_browser_chooses_model_8_and_the_page_asks_it(server, browser, samples_dir):
    """The chooser is a link: the page reloads for that model, and the script posts the film
    to it and shows its answer."""
    page = browser.new_page()
    page.goto(server + "/")
    expect(page.locator("#models a.chosen")).to_contain_text("Model 5")
    page.click("#models a[data-model=pneumonia_compact]")
    expect(page).to_have_url(server + "/?model=pneumonia_compact")
    expect(page.locator("#models a.chosen")).to_contain_text("Model 8")
    expect(page.locator("footer")).to_contain_text("pneumonia_compact")
    with page.expect_response("**/predict?model=pneumonia_compact") as answer:
        page.set_input_files("#file", str(_sample(samples_dir)))
        page.click("#submit")
    body = answer.value.json()
    assert body["model"]["name"] == "pneumonia_compact"
    expect(page.locator("#probability")).to_have_text(body["probability_text"])
    expect(page.locator("#decision")).to_have_text(body["decision_text"])
    if os.environ.get("SCREENSHOT_DIR"):  # README screenshot: SCREENSHOT_DIR=docs make test
        page.locator("#show-heatmap").check()
        expect(page.locator("#heat-film")).to_be_visible()
        page.screenshot(path=str(Path(os.environ["SCREENSHOT_DIR"]) / "chooser.png"),
                        full_page=True)
    page.close()


def test_the_page_script_orders_and_writes_the_worklist_as_the_server_does(server, browser):
    """The script's copy of the worklist rules (it joins several requests' files) against
    app/services/batch.py on one set of files: ties, errors, warnings, and names that a
    CSV must quote or neutralise."""
    import httpx

    from tests.builders.images import jpeg_bytes, png_bytes

    same = jpeg_bytes(120, 100, seed=3)
    files = [("files", (name, data)) for name, data in (
        ("a,comma.jpeg", jpeg_bytes(seed=1)), ("=SUM(1+1).jpeg", same),
        ("x;=1+1;y.jpg", jpeg_bytes(seed=5)),
        ('quote"d.png', png_bytes()), ("tie.jpeg", same), ("broken.jpeg", b"\xff\xd8\xff"),
        ("-minus.txt", b"not an image"), ("tiny.png", png_bytes(20, 20)))]
    with httpx.Client(base_url=server, timeout=60) as client:
        batch = client.post("/predict/batch", files=files).json()
        entries = batch["results"]
        server_csv = client.post("/predict/batch?format=csv", files=files).text
    assert any(e["error"] for e in entries) and any(e["warnings"] for e in entries)
    page = browser.new_page()
    page.goto(server + "/")
    script_csv = page.evaluate(
        "entries => window.triageWorklist.csv(window.triageWorklist.order(entries))", entries)
    script_summary = page.evaluate("entries => window.triageWorklist.summary(entries)", entries)
    page.close()
    assert script_csv == server_csv
    assert script_summary == batch["summary"]


def test_the_api_page_renders_its_operations_with_the_network_blocked(server, browser):
    """/docs must work on a hospital machine without internet: every request that leaves
    the server is refused, and the operations list still renders, with no console error."""
    page = browser.new_page()
    left = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
               else (left.append(route.request.url), route.abort()))
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(server + "/docs")
    expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=20_000)
    expect(page.locator(".opblock-summary-path", has_text="/predict/batch")).to_have_count(1)
    page.close()
    assert left == [] and errors == []
