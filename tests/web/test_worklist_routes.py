"""The stored worklist's API and pages (app/web/routes/worklist.py and worklist_pages.py)
on the real app and model: storing uploads, the list's order, paging and filters, statuses
and the audit trail with who acted, the CSV, tokens, and no patient identity anywhere. The
slow tests drive the real server: kill -9 loses no acknowledged entry; two servers on one
PostgreSQL see each other's entries."""

from __future__ import annotations

import base64
import csv
import io
import logging
import os
import random
import signal
import threading
from datetime import timedelta

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy.exc import OperationalError

from app.errors import InvalidCursorError
from app.services import worklist as stored_worklist
from app.store import WorklistStore, upgrade
from tests.builders.dicom import PATIENT_ID, PATIENT_NAME, dicom_bytes
from tests.builders.images import jpeg_bytes, xray_like
from tests.pg import throwaway_cluster
from tests.servers import poll, server_process
from tests.store.factories import T0, film, mixed_models, refused

TOKEN = "s3cret-token-for-worklist-tests"
VIEWER = "https://pacs.example/viewer?StudyInstanceUIDs={study_uid}"
# What of the patient must never leave: name (whole and its parts), ID, birth date.
IDENTITY = (PATIENT_NAME, "Doe^Jane", "Jane", PATIENT_ID, "20200229", "2020-02-29")


@pytest.fixture
def client(client_factory, tmp_path):
    """The app on the committed model with a worklist of its own, a viewer link, and
    decoding in the request's thread."""
    with client_factory(state_dir=tmp_path, decode_workers=0, viewer_url=VIEWER) as test_client:
        yield test_client


def store_of(client) -> WorklistStore:
    return client.app.state.store


def new_study_uid() -> str:
    return generate_uid()[:50].rstrip(".")  # room for the series' ".1"


def dicom_film(study_uid: str, sop_uid: str | None = None, seed: int = 0) -> bytes:
    """A DX film of `study_uid` with a patient's name, ID and birth date in its header."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(xray_like(96, 80, seed))))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, study_uid + ".1"
    ds.PatientAge, ds.PatientSex, ds.AccessionNumber = "004Y", "F", "A77"
    if sop_uid is not None:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def upload(client, *files: bytes, **params):
    return client.post("/worklist/films", params=params,
                       files=[("files", (f"film{n}.bin", data, "application/octet-stream"))
                              for n, data in enumerate(files)])


# --- storing ------------------------------------------------------------------------------

def test_add_films_stores_each_file_committed_before_the_answer(client):
    response = upload(client, jpeg_bytes(seed=1), jpeg_bytes(seed=2), b"not an image")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["count"], body["stored"]) == (3, 3)
    assert body["model"]["name"] == "pneumonia" and body["note"]
    files = body["files"]
    assert [f["index"] for f in files] == [0, 1, 2] and all(f["stored"] for f in files)
    assert files[0]["error"] is None
    assert files[2]["error"]["error"] == "not_an_image"  # listed, with why it was not scored
    by_id = {e["id"]: e for e in body["entries"]}
    assert {f["entry_id"] for f in files} == set(by_id)
    assert by_id[files[2]["entry_id"]]["group"] == "needs_review"
    # Committed: another connection to the database sees all three at once.
    other = WorklistStore(str(store_of(client).engine.url))
    try:
        assert other.entries().total == 3
    finally:
        other.close()


def test_the_same_film_uploaded_again_is_the_same_film(client):
    data = jpeg_bytes(seed=3)
    first = upload(client, data).json()["files"][0]
    again = upload(client, data, data).json()["files"]
    assert [(f["entry_id"], f["film_id"]) for f in again] == [
        (first["entry_id"], first["film_id"])] * 2
    listed = client.get("/worklist/entries").json()
    assert listed["total"] == 1 and len(listed["entries"][0]["films"]) == 1


def test_dicom_films_join_their_study_and_keep_its_facts(client):
    study = new_study_uid()
    upload(client, dicom_film(study, seed=1))
    body = upload(client, dicom_film(study, seed=2)).json()
    (entry,) = body["entries"]
    assert entry["study_instance_uid"] == study and len(entry["films"]) == 2
    assert (entry["accession_number"], entry["patient_age"], entry["patient_sex"]) == \
        ("A77", "004Y", "F")
    assert {f["modality"] for f in entry["films"]} == {"DX"}
    assert entry["viewer_url"] == VIEWER.replace("{study_uid}", study)


def test_add_films_asks_the_model_named(client):
    body = upload(client, jpeg_bytes(seed=4), model="pneumonia_compact").json()
    assert body["model"]["name"] == "pneumonia_compact"
    assert body["entries"][0]["films"][0]["model_name"] == "pneumonia_compact"
    assert upload(client, jpeg_bytes(), model="nope").status_code == 404


def test_another_sites_page_cannot_store_films_but_an_allowed_origin_can(client_factory,
                                                                       tmp_path):
    """A cross-site form or no-cors fetch is sent without a preflight: refused by where it
    comes from, with or without a token."""
    origin = "https://pacs.example"
    with client_factory(state_dir=tmp_path, decode_workers=0, cors_origins=[origin]) as client:
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
            response = client.post("/worklist/films", headers=headers, files=[
                ("files", ("a.jpeg", jpeg_bytes(seed=12), "image/jpeg"))])
            assert response.status_code == 403, headers
            assert response.json()["error"] == "cross_site_request"
        assert store_of(client).entries().total == 0
        allowed = client.post("/worklist/films", headers={
            "Origin": origin, "Sec-Fetch-Site": "cross-site"}, files=[
            ("files", ("a.jpeg", jpeg_bytes(seed=12), "image/jpeg"))])
        assert allowed.status_code == 200
        same = client.post("/worklist/films", headers={"Sec-Fetch-Site": "same-origin"},
                           files=[("files", ("a.jpeg", jpeg_bytes(seed=13), "image/jpeg"))])
        assert same.status_code == 200


def test_thumbnails_are_served_only_when_kept(client_factory, tmp_path, client):
    with client_factory(state_dir=tmp_path / "thumbs", decode_workers=0,
                        worklist_thumbnails=True) as keeping:
        path = upload(keeping, jpeg_bytes(seed=5)).json()["entries"][0]["films"][0]["thumbnail"]
        response = keeping.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.content.startswith(b"\x89PNG")
    film_id = upload(client, jpeg_bytes(seed=5)).json()["files"][0]["film_id"]
    response = client.get(f"/worklist/films/{film_id}/thumbnail")
    assert response.status_code == 404 and response.json()["error"] == "no_thumbnail"


# --- the list: order, paging, filters ------------------------------------------------------

def test_entries_come_flagged_first_by_triage_score_then_routine_then_needs_review(client):
    store_of(client).add_films([
        film("1.1", probability=0.6), film("1.2", probability=0.3), refused("1.3"),
        film("1.4", probability=0.95), film("1.5", probability=0.1, assessable=False),
        film("1.6", probability=0.45)])
    entries = client.get("/worklist/entries").json()["entries"]
    assert [e["study_instance_uid"] for e in entries] == ["1.4", "1.1", "1.6", "1.2", "1.3",
                                                          "1.5"]
    assert [e["group"] for e in entries] == ["flagged"] * 2 + ["routine"] * 2 + \
        ["needs_review"] * 2
    assert entries[0]["priority_text"] == "95.0%"


def test_entries_of_different_models_come_in_triage_score_order(client):
    records, expected = mixed_models()
    store_of(client).add_films(records)
    entries = client.get("/worklist/entries").json()["entries"]
    assert [e["study_instance_uid"] for e in entries] == expected
    assert [e["triage_score_text"] for e in entries] == ["98", "86", "79", "57", "46", "42"]
    assert [e["priority_text"] for e in entries[:3]] == ["98.0%", "99.0%", "98.5%"]


def test_entries_page_by_cursor_and_by_offset(client):
    store_of(client).add_films([film(f"2.{n}", probability=n / 10) for n in range(1, 8)])
    seen, cursor = [], None
    while True:
        page = client.get("/worklist/entries", params={"limit": 3, **(
            {"cursor": cursor} if cursor else {})}).json()
        assert page["total"] == 7
        seen += [e["study_instance_uid"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    whole = [e["study_instance_uid"] for e in client.get("/worklist/entries").json()["entries"]]
    assert seen == whole and len(set(seen)) == 7
    second = client.get("/worklist/entries", params={"limit": 3, "offset": 3}).json()
    assert [e["study_instance_uid"] for e in second["entries"]] == whole[3:6]


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
    ({"limit": 0}, 422, "invalid_request"),
    ({"limit": 501}, 422, "invalid_request"),
    ({"status": "lost"}, 422, "invalid_request"),
    ({"received_from": "yesterday"}, 422, "invalid_request"),
    ({"received_to": "2025-02-30"}, 422, "invalid_request"),
])
def test_bad_list_parameters_are_refused(client, params, status, code):
    response = client.get("/worklist/entries", params=params)
    assert response.status_code == status and response.json()["error"] == code


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# A few of tests/store/test_cursors.py's forged cursors, one per family: most were a 500.
FORGED_CURSORS = {
    "not base64": "!!!***", "non-ASCII": "ü€😀",
    "JSON of the wrong types": b64('[true, "nan", 7, "7"]'),
    "id past BIGINT": b64(f'[1, -0.25, "2025-03-01T08:00:00+00:00", {10**30}]'),
    "year 1, east of UTC": b64('[1, -0.25, "0001-01-01T00:00:00+14:00", 7]'),
    "NaN rank": b64('[1, NaN, "2025-03-01T08:00:00+00:00", 7]'),
}


@pytest.mark.parametrize("cursor", FORGED_CURSORS.values(), ids=FORGED_CURSORS.keys())
def test_a_forged_cursor_is_refused_as_invalid_and_audited_as_nothing(client, cursor):
    store_of(client).add_films([film("2.9")])
    response = client.get("/worklist/entries", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_cursor"
    assert response.json()["detail"] == InvalidCursorError.message
    assert client.get("/worklist/audit").json()["records"] == []  # nothing was read


def test_entries_filter_by_status_and_arrival(client):
    store = store_of(client)
    entries = store.add_films([film("3.1", minutes=0), film("3.2", minutes=24 * 60),
                               film("3.3", minutes=2 * 24 * 60 + 30)])
    store.set_status(entries[1].id, "reported", "someone")

    def uids(**params) -> list[str]:
        return sorted(e["study_instance_uid"]
                      for e in client.get("/worklist/entries", params=params).json()["entries"])

    day = T0.date()
    assert uids(status="reported") == ["3.2"]
    assert uids(status="new") == ["3.1", "3.3"]
    assert uids(status="") == ["3.1", "3.2", "3.3"]  # the page's "any"
    # Dates are whole UTC days, both included.
    assert uids(received_from=str(day + timedelta(days=1))) == ["3.2", "3.3"]
    assert uids(received_to=str(day + timedelta(days=1))) == ["3.1", "3.2"]
    assert uids(received_from=str(day), received_to=str(day)) == ["3.1"]
    # A datetime is a moment: with an offset, or UTC without one.
    later = T0 + timedelta(days=2)
    assert uids(received_from=later.isoformat()) == ["3.3"]
    assert uids(received_from=(later + timedelta(hours=1)).replace(tzinfo=None)
                .isoformat() + "+01:00") == ["3.3"]
    assert uids(received_to=later.replace(tzinfo=None).isoformat()) == ["3.1", "3.2"]


# --- statuses, opening, the audit trail and who acted -------------------------------------

@pytest.mark.parametrize(("settings", "headers", "actor"), [
    ({}, {}, "anonymous"),
    ({"api_token": TOKEN}, {"Authorization": f"Bearer {TOKEN}"}, "token holder"),
    ({"api_token": TOKEN, "trusted_user_header": "X-Forwarded-User"},
     {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-User": "\tdr.grey\t"}, "dr.grey"),
    ({"trusted_user_header": "X-Forwarded-User"}, {}, "anonymous"),  # header missing
])
def test_a_status_change_is_audited_with_who_made_it(client_factory, tmp_path, settings,
                                                     headers, actor):
    with client_factory(state_dir=tmp_path, decode_workers=0, **settings) as client:
        (entry,) = store_of(client).add_films([film("4.1")])
        response = client.patch(f"/worklist/entries/{entry.id}", json={"status": "reported"},
                                headers=headers)
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["status_by"]) == ("reported", actor)
        assert client.get("/worklist/entries", headers=headers).json()["entries"][0][
            "status"] == "reported"
        records = client.get("/worklist/audit", headers=headers).json()["records"]
        assert [(r["action"], r["actor"], r["entry_id"], r["detail"]) for r in records] == [
            ("exported", actor, None, {"format": "json", "limit": 50, "entries": 1}),
            ("status_changed", actor, entry.id, {"from": "new", "to": "reported"})]


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/worklist/entries/999999", {"status": "opened"}, 404, "unknown_entry"),
    ("/worklist/entries/{id}", {"status": "diagnosed"}, 422, "invalid_request"),
    ("/worklist/entries/{id}", {"status": "opened", "by": "me"}, 422, "invalid_request"),
    ("/worklist/entries/{id}", {}, 422, "invalid_request"),
    ("/worklist/entries/0", {"status": "opened"}, 422, "invalid_request"),
])
def test_a_bad_status_change_is_refused_and_changes_nothing(client, path, body, status, code):
    (entry,) = store_of(client).add_films([film("5.1")])
    response = client.patch(path.format(id=entry.id), json=body)
    assert response.status_code == status and response.json()["error"] == code
    assert store_of(client).entry(entry.id).status == "new"
    assert client.get("/worklist/audit").json()["records"] == []


def test_getting_an_entry_is_recorded_as_opened(client):
    (entry,) = store_of(client).add_films([film("6.1", probability=0.7)])
    body = client.get(f"/worklist/entries/{entry.id}").json()
    assert body["id"] == entry.id and body["films"][0]["probability"] == 0.7
    (record,) = client.get("/worklist/audit", params={"entry_id": entry.id}).json()["records"]
    assert (record["action"], record["actor"], record["study_instance_uid"]) == \
        ("opened", "anonymous", "6.1")
    assert client.get("/worklist/entries/424242").status_code == 404


def test_the_audit_trail_pages_newest_first(client):
    (entry,) = store_of(client).add_films([film("7.1")])
    for status in ("opened", "reported", "dismissed", "new"):
        client.patch(f"/worklist/entries/{entry.id}", json={"status": status})
    first = client.get("/worklist/audit", params={"limit": 3}).json()
    assert [r["detail"]["to"] for r in first["records"]] == ["new", "dismissed", "reported"]
    rest = client.get("/worklist/audit", params={"before_id": first["next_before_id"]}).json()
    assert [r["detail"]["to"] for r in rest["records"]] == ["opened"]
    assert rest["next_before_id"] is None


def test_every_json_page_read_is_audited_with_its_filters_paging_and_reader(client_factory,
                                                                            tmp_path):
    """Paging through the JSON list leaves the trace an export does: one `exported` record
    per page, with its filters, its cursor (and the entry it follows), and who read it."""
    with client_factory(state_dir=tmp_path, decode_workers=0,
                        trusted_user_header="X-Forwarded-User") as client:
        store_of(client).add_films([film(f"7.{n}", probability=n / 10) for n in range(1, 6)])
        reader = {"X-Forwarded-User": "dr.grey"}
        query = {"status": "new", "received_from": "2025-03-01", "limit": 2}
        first = client.get("/worklist/entries", params=query, headers=reader).json()
        second = client.get("/worklist/entries", headers=reader,
                            params={**query, "cursor": first["next_cursor"]}).json()
        client.get("/worklist/entries", params={"offset": 4})
        records = client.get("/worklist/audit").json()["records"]
        filters = {"format": "json", "status": "new", "received_from": "2025-03-01"}
        assert [(r["action"], r["actor"], r["entry_id"], r["detail"]) for r in records] == [
            ("exported", "anonymous", None,
             {"format": "json", "limit": 50, "offset": 4, "entries": 1}),
            ("exported", "dr.grey", None,
             {**filters, "limit": 2, "cursor": first["next_cursor"],
              "after_entry": first["entries"][-1]["id"], "entries": len(second["entries"])}),
            ("exported", "dr.grey", None, {**filters, "limit": 2, "entries": 2})]
        page = client.get("/worklist/audit-trail").text
        assert f"after_entry: {first['entries'][-1]['id']}; entries: 2" in page


def test_the_worklist_page_s_reads_are_audited_once_per_reader_and_page_not_per_refresh(
        client_factory, tmp_path):
    """The page shows what the JSON list holds: its reading leaves the same trace (an
    `exported` record, format html), once per reader, filters and paging in the refresh
    window, so that the page's refresh every few seconds does not bury the trail; another
    page, other filters or another reader is recorded at once."""
    with client_factory(state_dir=tmp_path, decode_workers=0,
                        trusted_user_header="X-Forwarded-User") as client:
        store_of(client).add_films([film(f"8.{n}", probability=n / 10) for n in range(1, 4)])
        grey, ward = {"X-Forwarded-User": "dr.grey"}, {"X-Forwarded-User": "dr.ward"}
        html = {"Accept": "text/html"}
        assert client.get("/worklist", headers={**grey, **html}).status_code == 200
        for _ in range(3):  # the page's script, refreshing the same rows
            assert client.get("/worklist/rows", headers=grey).status_code == 200
        client.get("/worklist/rows", params={"status": "new"}, headers=grey)
        client.get("/worklist/rows", headers=ward)
        # A study arrives: the same reader's next refresh shows it, and is recorded.
        store_of(client).add_films([film("8.9", probability=0.95)])
        client.get("/worklist/rows", headers=ward)
        records = [r for r in client.get("/worklist/audit").json()["records"]
                   if r["action"] == "exported"]
        assert [(r["actor"], r["detail"]) for r in records] == [
            ("dr.ward", {"format": "html", "limit": 100, "entries": 4}),
            ("dr.ward", {"format": "html", "limit": 100, "entries": 3}),
            ("dr.grey", {"format": "html", "status": "new", "limit": 100, "entries": 3}),
            ("dr.grey", {"format": "html", "limit": 100, "entries": 3})]


# --- CSV ----------------------------------------------------------------------------------

def test_the_csv_holds_every_filtered_entry_in_order_cells_made_safe_and_is_audited(
        client, monkeypatch):
    monkeypatch.setattr(stored_worklist, "EXPORT_PAGE", 2)  # several pages of the list
    store_of(client).add_films(
        [film(f"8.{n}", probability=n / 10) for n in range(1, 6)]
        + [film("8.9", probability=0.99, accession_number="=SUM(A1:A9)",
                warnings=("a;-1+1",))])
    response = client.get("/worklist/entries", params={"format": "csv", "status": "new"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == stored_worklist.CSV_COLUMNS
    listed = [e["study_instance_uid"] for e in client.get(
        "/worklist/entries", params={"status": "new"}).json()["entries"]]
    column = stored_worklist.CSV_COLUMNS.index
    assert [r[column("study_instance_uid")] for r in rows[1:]] == listed
    assert [r[column("rank")] for r in rows[1:]] == [str(n) for n in range(1, 7)]
    top = rows[1]
    assert top[column("accession_number")] == "'=SUM(A1:A9)"
    assert top[column("notes")] == "'a;-1+1"
    assert (top[column("decision")], top[column("flagged")]) == ("flagged for priority read", "yes")
    assert int(top[column("triage_score")]) >= 50
    page_read, export = client.get("/worklist/audit").json()["records"]
    assert (export["action"], export["entry_id"], export["detail"]) == (
        "exported", None, {"format": "csv", "status": "new"})
    assert page_read["detail"] == {"format": "json", "status": "new", "limit": 50,
                                   "entries": 6}


# --- tokens, errors ---------------------------------------------------------------------------

WORKLIST_ROUTES = [
    ("post", "/worklist/films"), ("get", "/worklist/entries"),
    ("get", "/worklist/entries?format=csv"), ("get", "/worklist/entries/1"),
    ("patch", "/worklist/entries/1"), ("get", "/worklist/audit"),
    ("get", "/worklist/films/1/thumbnail"), ("get", "/worklist"), ("get", "/worklist/rows"),
    ("get", "/worklist/audit-trail"), ("post", "/worklist/entries/1/status"),
    ("post", "/worklist"),
]


@pytest.fixture
def token_client(client_factory, tmp_path):
    with client_factory(state_dir=tmp_path, decode_workers=0, api_token=TOKEN) as client:
        yield client


@pytest.mark.parametrize(("method", "path"), WORKLIST_ROUTES)
def test_every_worklist_route_needs_the_token_when_one_is_set(token_client, method, path):
    response = token_client.request(method, path, headers={"Accept": "application/json"})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert store_of(token_client).audit() == []


def test_the_token_or_the_page_login_opens_the_worklist(token_client):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert upload(token_client, jpeg_bytes(seed=9), **{}).status_code == 401
    response = token_client.post("/worklist/films", headers=bearer, files=[
        ("files", ("a.jpeg", jpeg_bytes(seed=9), "image/jpeg"))])
    assert response.status_code == 200
    assert token_client.get("/worklist/entries", headers=bearer).json()["total"] == 1
    token_client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert token_client.get("/worklist").status_code == 200  # the session cookie
    token_client.cookies.clear()


def test_a_method_not_allowed_names_every_method_of_the_path(client):
    response = client.put("/worklist/entries/1")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, PATCH"
    assert client.put("/predict").headers["allow"] == "POST"


def test_a_database_that_does_not_answer_is_503(client, monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(store_of(client), "entries", down)
    response = client.get("/worklist/entries")
    assert response.status_code == 503 and response.json()["error"] == "store_unavailable"


# --- the pages -------------------------------------------------------------------------------

def test_the_page_lists_groups_in_order_with_the_operating_point(client):
    card = client.app.state.catalog.default.card
    store_of(client).add_films([film("9.1", probability=0.1), refused("9.2"),
                                film("9.3", probability=0.9)])
    page = client.get("/worklist").text
    # The groups in order, each entry in its group, and the triage words.
    assert page.index("Flagged for priority read") < page.index("9.3") < \
        page.index("Not flagged") < page.index("9.1") < page.index("Needs a human look") < \
        page.index("9.2")
    assert f"model {card.name}" in page and f"version {card.version}" in page
    assert f"{card.threshold * 100:.1f}% or more" in page
    assert "not a diagnosis" in page.lower() and "diagnosed" not in page.lower()
    assert VIEWER.replace("{study_uid}", "9.3").replace("&", "&amp;") in page
    assert 'src="/static/worklist.js"' in page
    assert "style=" not in page and "<script>" not in page and "onclick" not in page
    rows = client.get("/worklist/rows").text  # what the script polls: the same rows
    assert rows.strip() in page
    assert "<html" not in rows


def test_the_page_filters_and_pages_without_javascript(client):
    store_of(client).add_films([film(f"10.{n}", probability=n / 10) for n in range(1, 4)])
    page = client.get("/worklist", params={"limit": 2}).text
    assert page.count('class="entry ') == 2 and "Next page" in page
    filtered = client.get("/worklist", params={"status": "reported", "received_from": "",
                                               "received_to": ""}).text
    assert 'class="entry ' not in filtered and "No studies match the filters" in filtered


def test_a_status_button_without_javascript_posts_and_returns_to_the_list(client):
    (entry,) = store_of(client).add_films([film("11.1")])
    response = client.post(f"/worklist/entries/{entry.id}/status?status=new",
                           data={"status": "reported"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/worklist?status=new"
    assert store_of(client).entry(entry.id).status == "reported"
    page = client.get("/worklist").text
    assert 'value="reported" class="status-button current"' in page
    refused_post = client.post(f"/worklist/entries/{entry.id}/status",
                               data={"status": "dismissed"},
                               headers={"Sec-Fetch-Site": "cross-site"})
    assert refused_post.status_code == 403
    forged = client.post(f"/worklist/entries/{entry.id}/status", data={"status": "dismissed"},
                         headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert store_of(client).entry(entry.id).status == "reported"


def test_add_to_worklist_without_javascript_stores_and_shows_the_list(client):
    response = client.post("/worklist", files=[("files", ("a.jpeg", jpeg_bytes(seed=11),
                                                          "image/jpeg"))],
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/worklist"
    assert store_of(client).entries().total == 1
    index = client.get("/").text
    assert 'id="add-to-worklist"' in index and 'href="/worklist"' in index


def test_the_audit_trail_page_shows_who_did_what(client):
    (entry,) = store_of(client).add_films([film("12.1")])
    client.patch(f"/worklist/entries/{entry.id}", json={"status": "dismissed"},)
    page = client.get("/worklist/audit-trail", params={"entry_id": entry.id}).text
    assert "status changed" in page and "anonymous" in page and "to: dismissed" in page
    assert 'href="/worklist/audit-trail?entry_id=' in client.get("/worklist").text


# --- privacy ---------------------------------------------------------------------------------

def test_no_patient_name_id_or_birth_date_in_any_answer_page_csv_or_log(client, caplog):
    study = new_study_uid()
    with caplog.at_level(logging.DEBUG):
        stored = upload(client, dicom_film(study, seed=1), dicom_film(study, seed=2))
        entry_id = stored.json()["entries"][0]["id"]
        client.patch(f"/worklist/entries/{entry_id}", json={"status": "opened"})
        client.post("/worklist", files=[("files", ("x.dcm", dicom_film(study, seed=3),
                                                   "application/dicom"))])
        answers = [stored,
                   client.get("/worklist/entries"),
                   client.get(f"/worklist/entries/{entry_id}"),
                   client.get("/worklist/entries", params={"format": "csv"}),
                   client.get("/worklist/audit"),
                   client.get("/worklist"), client.get("/worklist/rows"),
                   client.get("/worklist/audit-trail")]
    assert all(a.status_code == 200 for a in answers)
    assert "A77" in answers[3].text and study in answers[5].text  # what is kept is there
    for text in [a.text for a in answers] + [caplog.text]:
        for secret in IDENTITY:
            assert secret not in text


# --- the real server --------------------------------------------------------------------------

def _post_until_killed(url: str, acknowledged: list[int], stop: threading.Event) -> None:
    """POST a new film (and now and then a DICOM) until the server dies; every entry id a
    200 answer names goes into `acknowledged`."""
    n = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            n += 1
            data = dicom_film(new_study_uid(), seed=n) if n % 5 == 0 else jpeg_bytes(seed=n)
            try:
                response = http.post("/worklist/films", files=[("files", ("f", data))])
            except httpx.HTTPError:
                return  # killed mid-request: not acknowledged
            if response.status_code == 200:
                acknowledged += [f["entry_id"] for f in response.json()["files"]
                                 if f["stored"]]


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_entry(tmp_path):
    """SIGKILL the real server at a random moment while films are being stored; restarted
    on the same state folder, it has every entry it said it stored, each whole."""
    state = tmp_path / "state"
    acknowledged: list[int] = []
    settings = {"decode_workers": "0", "offered_models": "[]"}
    with server_process(tmp_path / "first.log", state, **settings) as (url, process):
        stop = threading.Event()
        writer = threading.Thread(target=_post_until_killed, args=(url, acknowledged, stop))
        writer.start()
        try:
            # A random moment after the first acknowledgement: mid-request, most likely.
            poll(lambda: acknowledged, 60, "a first stored film")
            stop.wait(random.uniform(0.2, 2.0))
            os.kill(process.pid, signal.SIGKILL)
            assert process.wait(timeout=20) == -signal.SIGKILL
        finally:
            stop.set()
            writer.join(timeout=60)
    assert len(acknowledged) >= 1
    with server_process(tmp_path / "second.log", state, **settings) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as http:
        for entry_id in set(acknowledged):
            response = http.get(f"/worklist/entries/{entry_id}")
            assert response.status_code == 200, (entry_id, response.text)
            assert response.json()["films"], "an entry without its film"
        listed = http.get("/worklist/entries", params={"limit": 500}).json()
    assert listed["total"] >= len(set(acknowledged))
    assert all(entry["films"] for entry in listed["entries"])  # none half-written
    for log in ("first.log", "second.log"):
        text = (tmp_path / log).read_text(errors="replace")
        assert not any(secret in text for secret in IDENTITY)


@pytest.mark.slow
def test_two_servers_on_one_postgresql_see_each_others_entries_at_once(tmp_path):
    settings = {"decode_workers": "0", "offered_models": "[]"}
    with throwaway_cluster() as cluster:
        url = cluster.create_database("worklist")
        upgrade(url)  # what `pneumonia-triage db upgrade` does before replicas start
        settings["database_url"] = url
        with server_process(tmp_path / "a.log", tmp_path / "a", **settings) as (one, _), \
                server_process(tmp_path / "b.log", tmp_path / "b", **settings) as (two, _), \
                httpx.Client(timeout=30) as http:
            for n, (writer, reader) in enumerate([(one, two), (two, one)]):
                body = http.post(writer + "/worklist/films",
                                 files=[("files", ("f", jpeg_bytes(seed=100 + n)))]).json()
                entry_id = body["files"][0]["entry_id"]
                seen = http.get(f"{reader}/worklist/entries/{entry_id}")
                assert seen.status_code == 200 and seen.json()["id"] == entry_id
                status = http.patch(f"{reader}/worklist/entries/{entry_id}",
                                    json={"status": "reported"})
                assert status.status_code == 200
                assert http.get(f"{writer}/worklist/entries/{entry_id}").json()[
                    "status"] == "reported"
            assert http.get(one + "/worklist/entries").json()["total"] == 2
    assert not (tmp_path / "a" / "worklist.db").exists()  # not the embedded database


def test_a_conflict_is_listed_apart_with_the_study_uid_it_carried(client):
    """Films of another patient under a study's UID (issue 27): an entry of status conflict,
    in the JSON and on the page, its viewer link to the study it named."""
    uid = new_study_uid()
    store_of(client).add_received([film(uid, f"{uid}.1", 0.2, patient_key="1" * 64)])
    store_of(client).add_received([film(uid, f"{uid}.2", 0.9, patient_key="2" * 64)])
    [entry] = client.get("/worklist/entries", params={"status": "conflict"}).json()["entries"]
    assert entry["conflict_of"] == uid and entry["study_instance_uid"] != uid
    assert entry["viewer_url"].endswith(uid)
    assert [f["sop_instance_uid"] for f in entry["films"]] == [f"{uid}.2"]
    page = client.get("/worklist", headers={"Accept": "text/html"})
    assert "Another patient&#39;s films under the Study Instance UID" in page.text \
        or "Another patient's films under the Study Instance UID" in page.text
    assert 'pneumonia_worklist_entries{status="conflict"} 1.0' in client.get("/metrics").text


def _patients_film(study: str, patient_id: str, seed: int, name: str = "Doe^Jane"):
    ds = pydicom.dcmread(io.BytesIO(dicom_film(study, seed=seed)))
    ds.PatientID, ds.PatientName = patient_id, name
    return ds


@pytest.mark.parametrize("doors", [("upload", "upload"), ("dicom", "upload"),
                                   ("upload", "dicom")])
def test_a_film_of_another_patient_is_listed_apart_whichever_door_each_came_through(
        client, doors):
    """Two patients under one Study Instance UID are never merged (issue 27's rule): an
    upload to /worklist/films carries the same patient key as a C-STORE (the install's
    secret), so a study first seen through one door and another patient's film through
    the other is a conflict, listed apart; the same patient's second film joins."""
    from tests.builders.dicom import file_bytes
    from tests.dicom.nodes import received

    ingest = client.app.state.dicom_ingest
    study = new_study_uid()
    films = (_patients_film(study, "P-ONE", 1), _patients_film(study, "P-TWO", 2),
             _patients_film(study, "P-ONE", 3))
    for door, ds in zip((*doors, doors[0]), films, strict=True):
        if door == "upload":
            assert upload(client, file_bytes(ds)).status_code == 200
        else:
            ingest(received(ds), "dicom:PACS")
    listed = client.get("/worklist/entries").json()["entries"]
    own = [e for e in listed if e["study_instance_uid"] == study]
    apart = [e for e in listed if e["conflict_of"] == study]
    assert [len(e["films"]) for e in own] == [2]  # P-ONE's two films
    assert [(e["status"], [f["sop_instance_uid"] for f in e["films"]]) for e in apart] == [
        ("conflict", [films[1].SOPInstanceUID])]


def test_patients_the_node_cannot_tell_by_their_decoded_ids_are_still_two(client):
    """Patient IDs whose bytes do not decode (FF and FE under ISO_IR 192 both read as
    U+FFFD), and patients without IDs, named differently: each second film is another
    patient's, listed apart, never merged into the first's study."""
    from app.dicom.ingest import Received
    from tests.builders.dicom import file_bytes

    ingest = client.app.state.dicom_ingest
    for first, second in (((b"\xff123AB", None), (b"\xfe123AB", None)),
                          ((b"", "ONE^A"), (b"", "TWO^B"))):
        study = new_study_uid()
        for seed, (raw_id, name) in enumerate((first, second)):
            ds = _patients_film(study, "X123AB", seed, name or "Doe^Jane")
            ds.SpecificCharacterSet = "ISO_IR 192"
            data = file_bytes(ds).replace(b"X123AB", raw_id.ljust(6, b" ")[:6]
                                          if raw_id else b"      ")
            ingest(Received.read(data), "dicom:PACS")
        apart = [e for e in client.get("/worklist/entries").json()["entries"]
                 if e["conflict_of"] == study]
        assert [e["status"] for e in apart] == ["conflict"], (first, second)
