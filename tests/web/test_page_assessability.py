"""The page (templates/index.html, static/upload.js) in headless Chromium: a film the model
cannot judge shows no label or probability but 'needs a human look', and in a worklist it
sits in its own group after the judged films, in the order the server's CSV gives."""

from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from app.contract.assessability import REASONS
from tests.builders import films as fb

pytestmark = [pytest.mark.browser, pytest.mark.realdata]

@pytest.fixture(scope="module")
def server(live_server):
    return live_server[0]


def _negative(data_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "negative.jpeg"
    path.write_bytes(fb.jpeg_of(255 - fb.gray_of(data_dir / "test/NORMAL/IM-0001-0001.jpeg")))
    return path


def test_a_negative_film_needs_a_human_look_on_the_page(server, browser, data_dir, tmp_path):
    page = browser.new_page()
    page.goto(server + "/")
    page.set_input_files("#file", str(_negative(data_dir, tmp_path)))
    page.click("#submit")
    expect(page.locator("#decision")).to_have_text("needs a human look", timeout=20_000)
    expect(page.locator("#decision")).to_have_css("text-transform", "uppercase")
    expect(page.locator("#scored")).to_be_hidden()
    # The reason as its sentence for a clinician, the code (the API's) kept on hover.
    reason = page.locator("#reasons .reason[data-code=inverted]")
    expect(reason).to_have_text(REASONS["inverted"])
    expect(reason).to_have_attribute("title", "reason code: inverted")
    expect(page.locator("#heatmap-switch")).to_be_hidden()
    page.close()


def test_the_worklist_puts_them_in_their_group_in_the_csvs_order(server, browser, data_dir,
                                                                 tmp_path):
    films = sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[:2] + \
        sorted((data_dir / "test" / "NORMAL").glob("*.jpeg"))[:2]
    sideways = tmp_path / "sideways.jpeg"
    sideways.write_bytes(fb.jpeg_of(np.ascontiguousarray(np.rot90(fb.gray_of(films[0])))))
    chosen = [str(_negative(data_dir, tmp_path))] + [str(f) for f in films] + [str(sideways)]
    page = browser.new_page(accept_downloads=True)
    page.goto(server + "/")
    page.set_input_files("#file", chosen)
    page.click("#submit")
    expect(page.locator("#progress-text")).to_contain_text("2 need a human look",
                                                           timeout=30_000)
    expect(page.locator("#worklist-table tr.group")).to_have_count(1)
    expect(page.locator("#worklist-table tr.needs_human_look")).to_have_count(2)
    names = page.locator("#worklist-table td.name").all_inner_texts()
    assert names[-2:] == ["negative.jpeg", "sideways.jpeg"]  # upload order, after the judged
    with page.expect_download() as download:
        page.click("#csv")
    lines = Path(download.value.path()).read_text().strip().splitlines()
    assert [line.split(",")[1] for line in lines[1:]] == names
    assert all(",needs a human look," in line for line in lines[-2:])
    page.close()
