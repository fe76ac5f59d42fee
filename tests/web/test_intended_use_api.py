"""The intended-use gate at the web doors (/predict, /predict/batch and its CSV, the page, the
stored worklist with its CSV and page) on the real app and model: a real pneumonia film the
model flags, and the same film with one header fact outside the card's population, which is
never flagged anywhere but needs a human look with its reason code. And the site setting
that widens the card's ages, recorded in the audit trail."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from tests.builders import films as fb
from tests.builders.dicom import dicom_bytes

pytestmark = pytest.mark.realdata

MG = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Pres.
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
# (name, reason code, header edits of a film otherwise within the card's population)
CASES = [
    ("adult-by-age", "outside_intended_age", {"PatientAge": "045Y"}),
    ("adult-by-dates", "outside_intended_age", {"PatientBirthDate": "19800101"}),
    ("babygram", "not_chest", {"BodyPartExamined": "CHESTABDOMEN"}),
    ("mammography-class-labelled-dx", "not_chest_radiograph", {"SOPClassUID": MG}),
    ("dx-for-processing", "not_for_presentation", {"SOPClassUID": DX_FOR_PROCESSING}),
    ("presentation-intent-for-processing", "not_for_presentation",
     {"PresentationIntentType": "FOR PROCESSING"}),
]
IDS = [name for name, _, _ in CASES]


def film(gray: np.ndarray, **tags) -> bytes:
    """A DX chest film of a 4-year-old (dicom_bytes' header) in a study of its own, with
    `tags` set."""
    return fb.edited(dicom_bytes(gray), StudyInstanceUID=generate_uid(), **tags)


def post(client, data: bytes):
    return client.post("/predict", files={"file": ("film.dcm", data, "application/dicom")})


@pytest.fixture(scope="module")
def app(client_factory, tmp_path_factory):
    """The app on the committed models with a worklist of its own."""
    with client_factory(state_dir=tmp_path_factory.mktemp("state")) as client:
        yield client


@pytest.fixture(scope="module")
def gray(app, data_dir) -> np.ndarray:
    """A test-split pneumonia film (at most 256 px a side) that the model flags as a DICOM
    of the card's population: the control that makes 'never flagged' mean something."""
    for path in sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[:10]:
        image = Image.open(path).convert("L")
        image.thumbnail((256, 256))
        pixels = np.asarray(image)
        if post(app, film(pixels)).json()["flagged"]:
            return pixels
    pytest.fail("none of the first 10 pneumonia films is flagged")


def _assert_needs_a_look(body: dict, code: str) -> None:
    assert body["decision"] == "needs_human_look" and code in body["reasons"], body
    assert body["flagged"] is False and body["label"] is None
    assert body["triage_score"] is None and body["probability"] is None


@pytest.mark.parametrize(("name", "code", "tags"), CASES, ids=IDS)
def test_predict_answers_needs_a_human_look_with_the_reason(app, gray, name, code, tags):
    response = post(app, film(gray, **tags))
    assert response.status_code == 200
    body = response.json()
    _assert_needs_a_look(body, code)
    assert any(("(0010," in w or "(0018,0015)" in w or "(0008,00" in w) for w in body["warnings"])


def test_the_batch_flags_the_control_only_and_its_csv_ranks_none_of_the_others(app, gray):
    files = [("files", ("control.dcm", film(gray)))] + [
        ("files", (f"{name}.dcm", film(gray, **tags))) for name, _, tags in CASES]
    answer = app.post("/predict/batch", files=files).json()
    control, *cases = answer["results"]
    assert control["decision"] == "flagged"
    for (_, code, _), entry in zip(CASES, cases, strict=True):
        _assert_needs_a_look(entry, code)
    assert (answer["flagged"], answer["needs_human_look"]) == (1, len(CASES))
    text = app.post("/predict/batch?format=csv", files=files).text
    rows = {row["file"]: row for row in csv.DictReader(io.StringIO(text))}
    assert (rows["control.dcm"]["flagged"], rows["control.dcm"]["rank"]) == ("yes", "1")
    for name, code, _ in CASES:
        row = rows[f"{name}.dcm"]
        assert (row["group"], row["decision"], row["flagged"]) == (
            "needs a human look", "needs a human look", "no"), row
        assert code in row["reasons"].split() and row["rank"] == row["triage_score"] == ""


def test_the_page_shows_them_as_needing_a_look_never_flagged(app, gray):
    html = "text/html"
    for name, code, tags in CASES:
        page = app.post("/", files={"files": (f"{name}.dcm", film(gray, **tags))},
                        headers={"Accept": html}).text
        assert 'class="decision needs_human_look">needs a human look<' in page, name
        # Each reason as its sentence, the code kept on it (templates/index.html).
        assert re.search(r'id="reasons"><span class="reason" data-code="' + code, page), name
    files = [("files", ("control.dcm", film(gray)))] + [
        ("files", (f"{name}.dcm", film(gray, **tags))) for name, _, tags in CASES]
    page = app.post("/", files=files, headers={"Accept": html}).text
    assert page.count('class="decision-cell flagged"') == 1
    assert page.count('class="decision-cell needs_human_look"') == len(CASES)


def test_the_stored_worklist_lists_them_for_review_never_flagged(app, gray):
    files = [("files", ("control.dcm", film(gray)))] + [
        ("files", (f"{name}.dcm", film(gray, **tags))) for name, _, tags in CASES]
    stored = app.post("/worklist/films", files=files).json()
    control, *ids = [f["entry_id"] for f in stored["files"]]  # in upload order
    entries = {e["id"]: e for e in app.get("/worklist/entries?limit=500").json()["entries"]}
    assert entries[control]["group"] == "flagged"
    uids = {}
    for (name, code, _), entry_id in zip(CASES, ids, strict=True):
        entry = entries[entry_id]
        assert (entry["group"], entry["decision"], entry["flagged"]) == (
            "needs_review", "needs_human_look", False), entry
        [listed] = entry["films"]
        assert code in listed["reasons"] and listed["flagged"] in (False, None)
        uids[entry["study_instance_uid"]] = name
    rows = [row for row in csv.DictReader(io.StringIO(
        app.get("/worklist/entries?format=csv").text)) if row["study_instance_uid"] in uids]
    assert len(rows) == len(CASES)
    assert all((row["group"], row["flagged"], row["triage_score"]) == (
        "needs_review", "no", "") for row in rows), rows
    page = app.get("/worklist").text
    groups = dict(re.findall(r'<tbody class="group (\w+)".*?>(.*?)</tbody>', page, re.S))
    assert f'id="entry-{control}"' in groups["flagged"]
    for entry_id in ids:
        assert f'id="entry-{entry_id}"' in groups["needs_review"]
        assert f'id="entry-{entry_id}"' not in groups["flagged"]


# --- the site's widened ages ------------------------------------------------------------------


@pytest.fixture(scope="module")
def widened(client_factory, tmp_path_factory):
    """The app where the site has validated the default model on ages 0 to 18."""
    with client_factory(intended_age_years=(0, 18), offered_models=[],
                        state_dir=tmp_path_factory.mktemp("widened")) as client:
        yield client


def test_a_site_range_lets_a_10_year_old_be_ranked(app, widened, gray):
    ten = film(gray, PatientAge="010Y")
    _assert_needs_a_look(post(app, ten).json(), "outside_intended_age")
    assert post(widened, ten).json()["decision"] == "flagged"
    _assert_needs_a_look(post(widened, film(gray, PatientAge="045Y")).json(),
                         "outside_intended_age")
    body = post(widened, film(gray, PatientAge="045Y")).json()
    assert any("and this site on 0 to under 18 years" in w for w in body["warnings"])


def test_the_widening_is_in_the_audit_trail(app, widened):
    [record] = [r for r in widened.get("/worklist/audit").json()["records"]
                if r["action"] == "intended_use"]
    assert record["actor"] == "settings" and record["entry_id"] is None
    assert record["detail"]["age_years"] == [0, 18]
    assert record["detail"]["setting"] == "PNEUMONIA_INTENDED_AGE_YEARS"
    assert not [r for r in app.get("/worklist/audit").json()["records"]
                if r["action"] == "intended_use"]
