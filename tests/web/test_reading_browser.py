"""Reading from the worklist in real headless Chromium (issue 31), on the real server: the
keyboard alone moves through the list, opens a study and records reads that survive a
reload and are in the audit trail; the film is shown at its full display size with its
heatmap; times are in the browser's time zone, in the format of the server's filter. Every
check is an auto-waiting `expect` or wait, never a sleep. With SCREENSHOT_DIR set, the last
test saves the docs' screenshots (SCREENSHOT_DIR=docs)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import expect

from app.services.display import when
from tests.builders.images import jpeg_bytes
from tests.servers import running_server
from tests.web.test_reading import real_dicom

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWER = "https://pacs.example/viewer?StudyInstanceUIDs={study_uid}"
SAMPLE = "person1945_bacteria_4872.jpeg"  # 1336 x 840: 512 x 322 at display size


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real server keeping copies of films (thumbnails and the study view's)."""
    folder = tmp_path_factory.mktemp("reading-server")
    with running_server(folder / "server.log", viewer_url=VIEWER, decode_workers="0",
                        worklist_thumbnails="true") as url:
        yield url


def keys_ready(page) -> None:
    """The page's script listens to the keyboard (it sets data-keys once it does)."""
    expect(page.locator("html")).to_have_attribute("data-keys", "ready")


def add(server: str, *films: bytes) -> list[dict]:
    """Films stored by another client: their entries, as the API answers them."""
    response = httpx.post(server + "/worklist/films", timeout=120,
                          files=[("files", (f"f{n}", data)) for n, data in enumerate(films)])
    assert response.status_code == 200, response.text
    entries = {e["id"]: e for e in response.json()["entries"]}
    return [entries[f["entry_id"]] for f in response.json()["files"]]


def test_the_keyboard_alone_moves_opens_and_reads(server, page):
    add(server, jpeg_bytes(seed=301), jpeg_bytes(seed=302), jpeg_bytes(seed=303))
    listed = httpx.get(server + "/worklist/entries", params={"sort": "newest", "limit": 3})
    newest = [e["id"] for e in listed.json()["entries"]]  # these three, as the list orders them
    page.goto(server + "/worklist?sort=newest")
    rows = page.locator("#worklist-table tr.entry")
    expect(rows.first).to_have_id(f"entry-{newest[0]}")
    keys_ready(page)
    page.keyboard.press("j")  # to the list, on its first study
    expect(page.locator(f"#entry-{newest[0]}")).to_be_focused()
    page.keyboard.press("j")
    expect(page.locator(f"#entry-{newest[1]}")).to_be_focused()
    page.keyboard.press("j")
    page.keyboard.press("k")
    second = page.locator(f"#entry-{newest[1]}")
    expect(second).to_be_focused()
    expect(second).to_have_class(r"entry status-new selected")  # its visible ring's class
    # A read from the list: n, kept through the next refreshes and a reload.
    page.keyboard.press("n")
    expect(second.locator(".read-value")).to_have_text("No pneumonia, by anonymous")
    expect(second).to_be_focused()  # the refreshed row keeps the keyboard
    page.reload()
    expect(page.locator(f"#entry-{newest[1]} button.read-button.current")).to_have_attribute(
        "value", "no_pneumonia")
    # Enter opens the focused study; p reads it there; Esc goes back.
    keys_ready(page)
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.locator(f"#entry-{newest[1]}")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server}/worklist/studies/{newest[1]}")
    keys_ready(page)
    page.keyboard.press("p")
    expect(page.locator("#read-value")).to_contain_text("Read pneumonia by anonymous")
    page.reload()
    expect(page.locator("#read-value")).to_contain_text("Read pneumonia by anonymous")
    expect(page.locator("#read button.current")).to_have_attribute("value", "pneumonia")
    keys_ready(page)
    page.keyboard.press("Escape")
    expect(page).to_have_url(f"{server}/worklist?sort=newest")
    expect(page.locator(f"#entry-{newest[1]} .read-value")).to_have_text(
        "Pneumonia, by anonymous")
    page.goto(f"{server}/worklist/audit-trail?entry_id={newest[1]}")
    trail = page.locator("#audit-table tbody")
    expect(trail.locator("tr.read").first).to_contain_text("to: pneumonia")
    expect(trail.locator("tr.read").nth(1)).to_contain_text("to: no_pneumonia")
    expect(trail.locator("tr.opened")).to_have_count(2)  # the study view, twice


@pytest.mark.realdata
def test_the_film_is_shown_at_its_full_display_size_with_its_heatmap(server, page,
                                                                      samples_dir):
    [entry] = add(server, real_dicom(samples_dir / SAMPLE))
    page.goto(f"{server}/worklist/studies/{entry['id']}")
    film = page.locator("img.film-display")
    expect(film).to_be_visible()
    keys_ready(page)
    page.wait_for_function("document.querySelector('img.film-display').naturalWidth > 0")
    natural = film.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    box = film.bounding_box()
    assert natural == [512, 322]
    assert (round(box["width"]), round(box["height"])) == (512, 322)  # not scaled down
    page.keyboard.press("h")
    overlay = page.locator("img.film-overlay")
    expect(overlay).to_be_visible(timeout=60_000)  # drawn on the server when first asked
    assert overlay.bounding_box() == box
    expect(page.locator("button.heatmap-toggle")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("h")
    expect(overlay).to_be_hidden()


@pytest.mark.parametrize("zone", ["Australia/Adelaide", "America/St_Johns", "UTC"])
def test_times_are_in_the_browser_s_time_zone(server, browser, zone):
    [entry] = add(server, jpeg_bytes(seed=310 + len(zone)))
    context = browser.new_context(timezone_id=zone)
    page = context.new_page()
    page.goto(f"{server}/worklist?sort=newest")
    received = datetime.fromisoformat(entry["received_at"].replace("Z", "+00:00"))
    shown = page.locator(f"#entry-{entry['id']} td.received time")
    expect(shown).to_have_text(received.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M"))
    named = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")  # ICU's name
    expect(shown).to_have_attribute("title", named)
    expect(page.locator(".time-zone")).to_have_text(f"in your browser's time zone, {named}")
    if zone == "UTC":  # the script's copy of the rule is the server's filter, to the letter
        expect(shown).to_have_text(when(received))
    context.close()


@pytest.mark.realdata
def test_a_realistic_list_study_and_performance_page(server, page, samples_dir, data_dir):
    """Real films (pneumonia and normal, as DICOM with accession numbers), some read: the
    list, a study with its heatmap, the performance page. With SCREENSHOT_DIR set, the
    docs' screenshots of all three."""
    films = [real_dicom(samples_dir / name, AccessionNumber=f"A{2000 + n}")
             for n, name in enumerate(sorted(p.name for p in samples_dir.glob("*.jpeg")))]
    for label, count in (("PNEUMONIA", 5), ("NORMAL", 4)):
        for index in range(count):
            films.append(real_dicom(
                sorted((data_dir / "test" / label).glob("*.jpeg"))[index],
                AccessionNumber=f"A{2100 + len(films)}"))
    entries = add(server, *films)
    truth = ["pneumonia", "no_pneumonia", "pneumonia"] + ["pneumonia"] * 5 + ["no_pneumonia"] * 4
    with httpx.Client(base_url=server, timeout=30) as http:
        for entry, finding in list(zip(entries, truth))[:-2]:  # two left to read
            assert http.put(f"/worklist/entries/{entry['id']}/read",
                            json={"finding": finding}).status_code == 200
    page.goto(server + "/worklist")
    expect(page.locator("#worklist-table tr.entry").first).to_be_visible()
    keys_ready(page)
    page.keyboard.press("j")
    page.keyboard.press("j")
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "worklist-reading.png"))
    sample = next(e for e in entries if e["accession_number"] == "A2002")
    page.goto(f"{server}/worklist/studies/{sample['id']}")
    keys_ready(page)
    page.keyboard.press("h")
    expect(page.locator("img.film-overlay")).to_be_visible(timeout=60_000)
    if shots:
        page.screenshot(path=str(Path(shots) / "study-view.png"), full_page=True)
    page.goto(server + "/operations/performance")
    expect(page.locator(".model-performance h2").first).to_contain_text("version")
    if shots:
        page.screenshot(path=str(Path(shots) / "performance.png"), full_page=True)
