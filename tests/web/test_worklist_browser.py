"""Real headless Chromium on the worklist page of the real server: a film stored by another
client appears within 2 s, a status click survives a reload, the page works without
JavaScript, and the upload page's "Add to worklist". Every check is an auto-waiting
`expect`, never a sleep."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from playwright.sync_api import expect
from pydicom.uid import generate_uid

from tests.builders.dicom import dicom_bytes
from tests.builders.images import jpeg_bytes
from tests.servers import running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWER = "https://pacs.example/viewer?StudyInstanceUIDs={study_uid}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real server with a worklist of its own, a viewer link and thumbnails."""
    folder = tmp_path_factory.mktemp("worklist-server")
    with running_server(folder / "server.log", viewer_url=VIEWER, decode_workers="0",
                        worklist_thumbnails="true") as url:
        yield url


def add(server: str, *films: bytes) -> list[int]:
    """Films stored by another client (not the page): their entries' ids."""
    response = httpx.post(server + "/worklist/films", timeout=60,
                          files=[("files", (f"f{n}", data)) for n, data in enumerate(films)])
    assert response.status_code == 200, response.text
    return [f["entry_id"] for f in response.json()["files"]]


@pytest.mark.realdata
def test_real_films_are_listed_in_priority_order(server, page, data_dir, tmp_path):
    """Real test films (one as a DICOM with a patient's identity): flagged ones first, most
    probable first, and a file that is not an X-ray in "needs a human look". First in the
    module, so that with SCREENSHOT_DIR set the README's screenshot shows these alone."""
    from PIL import Image

    films = [path.read_bytes() for path in
             sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[:3]
             + sorted((data_dir / "test" / "NORMAL").glob("*.jpeg"))[:2]]
    normal = sorted((data_dir / "test" / "NORMAL").glob("*.jpeg"))[2]
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.asarray(Image.open(normal).convert("L")))))
    ds.StudyInstanceUID, ds.AccessionNumber = generate_uid(), "A1042"
    ds.PatientAge, ds.PatientSex = "005Y", "M"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    films.append(buffer.getvalue())
    ids = add(server, *films, b"%PDF-1.4 not an X-ray")
    page.goto(server + "/worklist")
    flagged = page.locator("tbody.flagged tr.entry td.priority")
    expect(flagged.first).to_be_visible()
    shown = [int(text.split()[0]) for text in flagged.all_inner_texts()]
    assert shown == sorted(shown, reverse=True) and min(shown) >= 50
    expect(flagged.first).to_contain_text("flagged for priority read")
    expect(page.locator(f"tbody.needs_review #entry-{ids[-1]}")).to_be_visible()
    expect(page.locator("#operating-point")).to_contain_text("operating point is 50")
    page.locator(f"#entry-{ids[0]} button[value=opened]").click()
    expect(page.locator(f"#entry-{ids[0]} .status-value")).to_have_text("opened")
    if os.environ.get("SCREENSHOT_DIR"):  # README screenshot: SCREENSHOT_DIR=docs make test
        page.screenshot(path=str(Path(os.environ["SCREENSHOT_DIR"]) / "worklist-page.png"),
                        full_page=True)


def test_a_film_added_by_another_client_appears_within_2_s(server, page):
    add(server, jpeg_bytes(seed=201))
    page.goto(server + "/worklist")
    expect(page.locator("#worklist-table tr.entry").first).to_be_visible()
    (entry_id,) = add(server, jpeg_bytes(seed=202))
    expect(page.locator(f"#entry-{entry_id}")).to_be_visible(timeout=2000)
    expect(page.locator(f"#entry-{entry_id} a.viewer")).to_have_attribute(
        "href", re.compile(r"^https://pacs\.example/viewer\?StudyInstanceUIDs=2\.25\.\d+$"))


def test_a_status_click_survives_a_reload(server, page):
    (entry_id,) = add(server, jpeg_bytes(seed=203))
    page.goto(server + "/worklist")
    row = page.locator(f"#entry-{entry_id}")
    expect(row.locator(".status-value")).to_have_text("new")
    row.locator("button[value=reported]").click()
    expect(page.locator(f"#entry-{entry_id} .status-value")).to_have_text("reported")
    expect(page).to_have_url(server + "/worklist")  # the script's PATCH, not the form post
    page.reload()
    row = page.locator(f"#entry-{entry_id}")
    expect(row.locator(".status-value")).to_have_text("reported")
    expect(row.locator("button.current")).to_have_text("Reported")
    expect(row.locator(".status")).to_contain_text("by anonymous")
    page.click(f"#entry-{entry_id} a.history")
    expect(page.locator("#audit-table tbody tr").first).to_contain_text("status changed")


def test_the_page_works_without_javascript(server, browser):
    (entry_id,) = add(server, jpeg_bytes(seed=204))
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server + "/worklist?status=new")
    page.locator(f"#entry-{entry_id} button[value=dismissed]").click()
    expect(page).to_have_url(server + "/worklist?status=new")  # the form's post, then back
    expect(page.locator(f"#entry-{entry_id}")).to_have_count(0)  # no longer new
    page.select_option("select[name=status]", "dismissed")
    page.click("#filters button")
    expect(page.locator(f"#entry-{entry_id} .status-value")).to_have_text("dismissed")
    context.close()


def test_add_to_worklist_from_the_upload_page(server, page, tmp_path):
    films = []
    for seed in (205, 206):
        films.append(tmp_path / f"film{seed}.jpeg")
        films[-1].write_bytes(jpeg_bytes(seed=seed))
    page.goto(server + "/")
    page.set_input_files("#file", [str(f) for f in films])
    page.click("#add-to-worklist")
    expect(page.locator("#added")).to_contain_text("2 of 2 films on the worklist")
    page.click("#added a")
    expect(page).to_have_url(server + "/worklist")
    expect(page.locator("h1")).to_have_text("Triage worklist")
