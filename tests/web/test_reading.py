"""The reading loop over HTTP (issue 31): reads through the API and the page, the live
performance they give (the same figures as a computation from the definitions, on SQLite and
PostgreSQL), its gauges, the study view with its film and heatmap, the list's label, age
band and orders."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid
from scipy.stats import binomtest

from app.contract.card import read_card
from app.store import upgrade
from tests.builders.dicom import dicom_bytes
from tests.builders.images import jpeg_bytes
from tests.pg import PostgresMissing, throwaway_cluster
from tests.servers import REPO
from tests.store.factories import film
from tests.web.test_worklist_routes import store_of, upload

CARD = read_card(REPO / "models" / "pneumonia" / "2")
OP = CARD.threshold
# (probability, read, through): flagged when the probability reaches the operating point.
READS = ([(0.9, "pneumonia", "api")] * 6 + [(0.9, "pneumonia", "page")] * 3
         + [(0.05, "pneumonia", "api")] * 2 + [(0.05, "pneumonia", "page")]
         + [(0.8, "no_pneumonia", "page")] * 4 + [(0.02, "no_pneumonia", "api")] * 8
         + [(0.02, "no_pneumonia", "page")] * 2 + [(0.6, "indeterminate", "api")])


@pytest.fixture(scope="module")
def postgres() -> Iterator:
    try:
        with throwaway_cluster() as cluster:
            yield cluster
    except PostgresMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request, client_factory, tmp_path):
    """The app on the committed model, its worklist on SQLite or on PostgreSQL."""
    settings = {"state_dir": tmp_path, "decode_workers": 0}
    if request.param == "postgresql":
        cluster = request.getfixturevalue("postgres")
        url = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")
        upgrade(url)
        settings["database_url"] = url
    with client_factory(**settings) as client:
        yield client


def _expected() -> dict[str, tuple[int, int]]:
    """Each figure's (successes, total), from the definitions."""
    judged = [(p >= OP, read) for p, read, _ in READS]
    tp = sum(f and r == "pneumonia" for f, r in judged)
    fn = sum(not f and r == "pneumonia" for f, r in judged)
    fp = sum(f and r == "no_pneumonia" for f, r in judged)
    tn = sum(not f and r == "no_pneumonia" for f, r in judged)
    return {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp), "ppv": (tp, tp + fp),
            "npv": (tn, tn + fn), "flagged_rate": (sum(f for f, _ in judged), len(judged))}


def test_reads_through_the_api_and_the_page_give_the_reference_figures(app):
    store = store_of(app)
    for n, (probability, finding, through) in enumerate(READS):
        (entry,) = store.add_films([film(f"1.2.3.{n}", probability=probability, threshold=OP,
                                         model_version=str(CARD.version))])
        if through == "api":
            response = app.put(f"/worklist/entries/{entry.id}/read", json={"finding": finding})
            assert response.status_code == 200 and response.json()["read"]["finding"] == finding
        else:  # the list's button without JavaScript: a form post, then the list again
            response = app.post(f"/worklist/entries/{entry.id}/read-form",
                                data={"finding": finding}, follow_redirects=False)
            assert response.status_code == 303
    body = app.get("/operations/performance").json()
    [model] = body["models"]
    assert (model["model"], model["version"], model["reads"], model["indeterminate"]) == (
        CARD.name, str(CARD.version), len(READS), 1)
    for name, (k, total) in _expected().items():
        figure = model["figures"][name]
        ci = binomtest(k, total).proportion_ci(0.95, method="wilson")
        assert (figure["successes"], figure["total"]) == (k, total), name
        assert figure["value"] == pytest.approx(k / total)
        assert (figure["low"], figure["high"]) == pytest.approx((ci.low, ci.high), abs=1e-4)
    (tn, fp), (fn, tp) = CARD.metrics["test"].confusion_matrix
    assert model["validated"]["figures"]["sensitivity"]["value"] == pytest.approx(tp / (tp + fn))
    assert model["verdict"] == "below"  # 9 of 12: the interval (0.47, 0.91) is under 0.95
    page = app.get("/operations/performance", headers={"Accept": "text/html"}).text
    sensitivity = re.search(r'<tr class="figure-sensitivity below">(.*?)</tr>', page, re.S)[1]
    assert f'{model["figures"]["sensitivity"]["value"]:.3f}' in sensitivity
    assert "Below the validated figures" in page
    metrics = app.get("/metrics").text
    labels = f'figure="sensitivity",model="{CARD.name}",version="{CARD.version}"'
    for family, value in (("pneumonia_performance", model["figures"]["sensitivity"]["high"]),
                          ("pneumonia_performance_validated",
                           model["validated"]["figures"]["sensitivity"]["low"])):
        bound = "high" if family == "pneumonia_performance" else "low"
        found = re.search(rf'^{family}\{{bound="{bound}",{labels}\}} (\S+)$', metrics, re.M)
        assert found and float(found[1]) == pytest.approx(value), family


@pytest.fixture
def client(client_factory, tmp_path):
    with client_factory(state_dir=tmp_path, decode_workers=0) as test_client:
        yield test_client


@pytest.fixture
def keeping(client_factory, tmp_path):
    """The app that keeps copies of films (thumbnails and the study view's display copy)."""
    with client_factory(state_dir=tmp_path, decode_workers=0,
                        worklist_thumbnails=True) as test_client:
        yield test_client


def test_read_answers_a_wrong_finding_or_entry_with_4xx(client):
    (entry,) = store_of(client).add_films([film("2.1")])
    assert client.put(f"/worklist/entries/{entry.id}/read",
                      json={"finding": "probably"}).status_code == 422
    assert client.put(f"/worklist/entries/{entry.id}/read",
                      json={"finding": "pneumonia", "extra": 1}).status_code == 422
    missing = client.put(f"/worklist/entries/{entry.id + 99}/read", json={"finding": "pneumonia"})
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_entry"
    forged = client.post(f"/worklist/entries/{entry.id}/read-form", data={"finding": "pneumonia"},
                         headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and store_of(client).entry(entry.id).read is None
    for query in ({"last": 0}, {"last": 10**6}, {"since": "yesterday"}):
        assert client.get("/operations/performance", params=query).status_code == 422, query


def test_the_performance_window_is_the_last_reads_since_a_day(client):
    store = store_of(client)
    for n in range(3):
        (entry,) = store.add_films([film(f"6.{n}", probability=0.9, threshold=OP,
                                         model_version=str(CARD.version))])
        client.put(f"/worklist/entries/{entry.id}/read", json={"finding": "pneumonia"})
    window = client.get("/operations/performance", params={"last": 2}).json()
    assert (window["last"], window["reads"]) == (2, 2)
    assert client.get("/operations/performance",
                      params={"since": "2999-01-01"}).json()["models"] == []
    page = client.get("/operations/performance", params={"since": "2999-01-01"},
                      headers={"Accept": "text/html"}).text
    assert 'id="no-reads"' in page


def test_a_read_shows_on_the_list_the_study_and_the_audit_trail(client):
    (entry,) = store_of(client).add_films([film("3.1", accession_number="ACC31")])
    client.put(f"/worklist/entries/{entry.id}/read", json={"finding": "no_pneumonia"})
    rows = client.get("/worklist/rows").text
    assert 'value="no_pneumonia" data-key="n" class="read-button current"' in rows
    assert "No pneumonia, by anonymous" in rows
    study = client.get(f"/worklist/studies/{entry.id}").text
    assert "Read no pneumonia by anonymous" in study
    records = client.get("/worklist/audit", params={"entry_id": entry.id}).json()["records"]
    assert [(r["action"], r["detail"]) for r in records] == [
        ("opened", None), ("read", {"from": None, "to": "no_pneumonia"})]
    csv = client.get("/worklist/entries", params={"format": "csv"}).text
    assert "no_pneumonia,anonymous," in csv


def test_the_list_names_a_study_briefly_and_shows_the_age_band(client):
    uid = "2.25.123456789012345678901234567890"
    store_of(client).add_films([film(uid, patient_age="004Y", patient_sex="F"),
                                film("4.2", accession_number="A42")])
    rows = client.get("/worklist/rows").text
    assert f'title="Study Instance UID {uid}">…34567890</span>' in rows
    assert f'data-uid="{uid}"' in rows
    assert '>A42</span>' in rows
    assert '<td class="patient name">1-5 y F</td>' in rows
    assert "004Y" not in rows  # the band, not the age


def test_the_list_sorts_by_arrival_and_keeps_the_order_in_its_links(client):
    store_of(client).add_films([film("5.1", probability=0.1, minutes=0),
                                film("5.2", probability=0.9, minutes=1),
                                film("5.3", probability=0.5, minutes=2)])
    page = client.get("/worklist", params={"sort": "newest"}).text
    assert page.index("5.3") < page.index("5.2") < page.index("5.1")
    assert 'name="sort" value="newest"' in page  # the filter form keeps the order
    assert "Sorted by newest first." in page
    oldest = client.get("/worklist/entries", params={"sort": "oldest"}).json()["entries"]
    assert [e["study_instance_uid"] for e in oldest] == ["5.1", "5.2", "5.3"]
    assert client.get("/worklist/entries", params={"sort": "random"}).status_code == 422


def real_dicom(path, **tags) -> bytes:
    """A real film (a JPEG at `path`) as a DX DICOM of a 5-year-old (the card's ages)."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.asarray(Image.open(path).convert("L")))))
    ds.StudyInstanceUID, ds.PatientAge, ds.PatientSex = generate_uid(), "005Y", "M"
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.realdata
def test_the_study_view_shows_the_film_the_model_saw_and_its_heatmap(keeping, samples_dir):
    body = upload(keeping, real_dicom(samples_dir / "person1945_bacteria_4872.jpeg")).json()
    entry_id = body["entries"][0]["id"]
    [listed] = body["entries"][0]["films"]
    assert listed["assessable"] and listed["heatmap"], listed["warnings"]
    assert listed["display"] == f"/worklist/films/{listed['id']}/display"
    assert listed["window"]  # the DICOM display pipeline's window
    page = keeping.get(f"/worklist/studies/{entry_id}").text
    assert f'src="{listed["display"]}"' in page and "as the model saw it" in page
    assert f"window: {listed['window']}" in page
    shown = keeping.get(listed["display"])
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    width, height = Image.open(io.BytesIO(shown.content)).size
    assert (width, height) == (512, 322)  # 1336 x 840 at HEATMAP_SIZE on its longest side
    overlay = keeping.get(listed["heatmap"], params={"model": listed["model_name"]})
    assert overlay.status_code == 200
    assert Image.open(io.BytesIO(overlay.content)).size == (width, height)
    other = keeping.get(listed["heatmap"], params={"model": "pneumonia_compact"})
    assert other.status_code == 404 and other.json()["error"] == "no_heatmap"


def test_without_kept_copies_the_study_view_says_the_film_is_in_the_pacs(client):
    (entry_id,) = [f["entry_id"] for f in upload(client, jpeg_bytes(seed=41)).json()["files"]]
    page = client.get(f"/worklist/studies/{entry_id}").text
    assert "is not kept here: it is in the PACS" in page and "film-display" not in page
    [f] = client.get(f"/worklist/entries/{entry_id}").json()["films"]
    assert f["display"] is None
    missing = client.get(f"/worklist/films/{f['id']}/display")
    assert missing.status_code == 404 and missing.json()["error"] == "no_film_copy"
