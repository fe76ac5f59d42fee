"""The documentation's screenshots, at 1280 px wide in Debian's Chromium (issue 33): the
upload page's result for a real film with its heatmap switched on, the worklist page with
real films on it (one of them a film the model cannot judge), and the report's first screen.

    python -m benchmarks.screenshots [--data-dir ../shared/data/chest_xray]
        [--film ../shared/data/samples/person1945_bacteria_4872.jpeg] [--out docs]

Run from the repository root. The real server (`python -m app`) starts on a free port with a
throw-away state folder, so the worklist holds only the films sent here, and with
PNEUMONIA_WORKLIST_THUMBNAILS on, so that its rows show the films. Written: OUT/
upload-result.png and OUT/worklist.png (full pages) and OUT/report.png (the first screen,
1280 x 800).
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from tests.builders.dicom import study_film
from tests.servers import server_process
from tests.web.conftest import CHROMIUM_FLAGS

WIDTH = 1280


def worklist_films(data_dir: Path) -> list[tuple[str, bytes]]:
    """Six test films (three of each class), one of them as a DICOM study with its tags, and
    a negative of a normal film (inverted: the model cannot judge it)."""
    pneumonia = sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[:3]
    normal = sorted((data_dir / "test" / "NORMAL").glob("*.jpeg"))[:3]
    films = [(f.name, f.read_bytes()) for f in pneumonia + normal[:2]]
    grey = np.asarray(Image.open(normal[2]).convert("L"))
    buffer = io.BytesIO()
    dicom = study_film(grey)
    dicom.AccessionNumber = "A1042"  # the builder's says it is a secret: not for a picture
    dicom.save_as(buffer)
    films.append((normal[2].stem + ".dcm", buffer.getvalue()))
    negative = io.BytesIO()
    Image.fromarray(255 - np.asarray(Image.open(normal[0]).convert("L"))).save(negative, "JPEG")
    films.append(("negative.jpeg", negative.getvalue()))
    return films


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/chest_xray"))
    parser.add_argument("--film", type=Path,
                        default=Path("../shared/data/samples/person1945_bacteria_4872.jpeg"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("Chromium not found: install Debian's 'chromium' package")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, \
            server_process(Path(tmp) / "server.log", worklist_thumbnails="true") as (url, _), \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.goto(url + "/")
        page.set_input_files("#file", str(args.film))
        page.click("#submit")
        expect(page.locator("#decision")).not_to_be_empty(timeout=60_000)
        page.locator("#show-heatmap").check()
        expect(page.locator("#heat-film")).to_be_visible(timeout=60_000)
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        page.screenshot(path=str(args.out / "upload-result.png"), full_page=True)

        with httpx.Client(base_url=url, timeout=120) as client:
            for name, data in worklist_films(args.data_dir):
                client.post("/worklist/films", files={"files": (name, data)}).raise_for_status()
        page.goto(url + "/worklist")
        expect(page.locator("#worklist-table tr.entry")).to_have_count(7, timeout=30_000)
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        page.screenshot(path=str(args.out / "worklist.png"), full_page=True)

        page.set_viewport_size({"width": WIDTH, "height": 800})
        page.goto(url + "/report")
        expect(page.locator("#at-a-glance")).to_be_visible()
        page.screenshot(path=str(args.out / "report.png"))
        browser.close()
    for name in ("upload-result.png", "worklist.png", "report.png"):
        print(args.out / name)


if __name__ == "__main__":
    main()
