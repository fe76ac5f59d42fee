"""A site profile adopted (issue 30): every door (the API, the upload page, /models, the
CSV, the SR) judges at the site operating point and names it; reverting restores the
card's; a profile for another model version is ignored with a warning on /readyz; the kept
validations are listed and served on /validation behind the token rule."""

from __future__ import annotations

import csv
import io
import re
from contextlib import contextmanager

import highdicom as hd
import pydicom
import pytest

from app.dicom.ingest import ScoringIngest
from app.dicom.results import OPERATING_POINT, PRESENCE, ResultBuilder
from app.services import site
from app.services.decode_pool import InlineDecoder
from app.store import AuditAction
from tests.builders.dicom import file_bytes, study_film
from tests.builders.films import gray_of
from tests.builders.site import site_validation, validation_folder
from tests.dicom.nodes import Recorder, built, received

SITE_TEXT = "site operating point, validated on 624 films on 2026-12-06"
CARD_TEXT = "the model card's operating point"
TOKEN = "a-token-long-enough-for-the-rule"

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def film(data_dir):
    """A real test-split film as a DICOM (the same bytes at every door)."""
    path = sorted((data_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[0]
    return file_bytes(study_film(gray_of(path)))


@contextmanager
def _app(client_factory, state, **settings):
    with client_factory(state_dir=state, **settings) as client:
        assert client.get("/readyz").status_code == 200
        yield client


def _predict(client, film: bytes) -> dict:
    response = client.post("/predict", files={"file": ("film.dcm", film, "application/dicom")})
    assert response.status_code == 200, response.text
    return response.json()


def _flipping(tmp_path, card_answer: dict, version: int | None = None):
    """A validation of the served model whose site operating point flips the film's
    decision: above its probability when the card flags it, below it otherwise."""
    p = card_answer["probability"]
    threshold = (p + 1) / 2 if card_answer["flagged"] else p / 2
    model = card_answer["model"]
    return validation_folder(tmp_path / "validation", site_validation(
        model["name"], version or model["version"], card_answer["threshold"], threshold))


@pytest.fixture(scope="module")
def card_answer(client_factory, film, tmp_path_factory):
    with _app(client_factory, tmp_path_factory.mktemp("no-profile")) as client:
        answer = _predict(client, film)
    assert answer["assessable"] and answer["operating_point"] == {
        "threshold": answer["threshold"], "source": "card", "text": CARD_TEXT,
        "validated_films": None, "validated_on": None}
    return answer


def _sr(client, film: bytes):
    """The SR the DICOM node sends back for `film`, scored by this app's catalog."""
    catalog = client.app.state.catalog
    ingest = ScoringIngest(lambda: catalog.scorer(catalog.default, InlineDecoder(),
                                                  50_000_000), Recorder(),
                           results=ResultBuilder())
    sr = built(ingest(received(pydicom.dcmread(io.BytesIO(film))), "dicom:PACS"))[0]
    back = hd.sr.srread(io.BytesIO(file_bytes(sr)))
    [group] = back.content.get_image_measurement_groups()
    return sr, group


def _texts(sr) -> list[str]:
    """Every text value in the SR's content tree (its TEXT items: the algorithm's
    parameters among them)."""
    return [str(element.value) for element in sr.iterall() if element.keyword == "TextValue"]


def _csv_row(client, film: bytes) -> dict:
    response = client.post("/predict/batch?format=csv",
                           files=[("files", ("film.dcm", film, "application/dicom"))])
    assert response.status_code == 200
    [row] = csv.DictReader(io.StringIO(response.text))
    return row


def test_every_door_judges_at_the_site_operating_point_and_names_it(
        client_factory, film, card_answer, tmp_path):
    state = tmp_path / "state"
    profile = site.adopt(state, _flipping(tmp_path, card_answer), "dr ward")
    with _app(client_factory, state) as client:
        answer = _predict(client, film)
        # The API: the threshold is used (the decision flips), and named.
        assert answer["threshold"] == profile.threshold != card_answer["threshold"]
        assert answer["flagged"] != card_answer["flagged"]
        assert answer["operating_point"] == {
            "threshold": profile.threshold, "source": "site", "text": SITE_TEXT,
            "validated_films": 624, "validated_on": "2026-12-06"}
        # The upload page without JavaScript: the same decision, the same words.
        page = client.post("/", files=[("files", ("film.dcm", film, "application/dicom"))],
                           headers={"Accept": "text/html"}).text
        assert SITE_TEXT in page and answer["decision_text"] in page
        assert f'<span id="operating-point-aid">{SITE_TEXT}</span>' in page  # beside the result
        assert f'class="decision {answer["decision"]}"' in page
        # The worklist page says which operating point flags its studies.
        assert SITE_TEXT in client.get("/worklist").text
        # The models page and its JSON.
        models = client.get("/models", headers={"Accept": "text/html"}).text
        assert SITE_TEXT in models
        default = client.get("/models").json()["models"][0]
        assert default["threshold"] == card_answer["threshold"]  # the card's, unedited
        assert default["operating_point"]["source"] == "site"
        # The CSV (API, page and folder command write the same one).
        row = _csv_row(client, film)
        assert (row["operating_point"], row["flagged"]) == (
            "site", "yes" if answer["flagged"] else "no")
        # The stored worklist's CSV names the threshold each film was scored at.
        stored = client.post("/worklist/films",
                             files=[("files", ("film.dcm", film, "application/dicom"))])
        assert stored.status_code == 200, stored.text
        [entry] = csv.DictReader(io.StringIO(
            client.get("/worklist/entries?format=csv").text))
        model = answer["model"]
        assert entry["operating_points"] == (
            f"{model['name']} v{model['version']} at {profile.threshold:.4g} ({SITE_TEXT})")
        # The SR the node sends: the operating point measured and named, the finding coded
        # by the site's decision.
        sr, group = _sr(client, film)
        [point] = group.get_measurements(name=OPERATING_POINT)
        assert point.value == pytest.approx(profile.threshold)
        assert any(SITE_TEXT in text for text in _texts(sr))
        presence = [e.value.value for e in group.get_qualitative_evaluations()
                    if e.name == PRESENCE]
        assert presence == ["121053" if answer["flagged"] else "121054"]
        assert client.get("/readyz").json()["warnings"] == []


def test_reverting_restores_the_cards_operating_point(client_factory, film, card_answer,
                                                      tmp_path):
    state = tmp_path / "state"
    site.adopt(state, _flipping(tmp_path, card_answer), "dr ward")
    site.revert(state)
    with _app(client_factory, state) as client:
        answer = _predict(client, film)
        assert (answer["threshold"], answer["flagged"], answer["operating_point"]["source"]) \
            == (card_answer["threshold"], card_answer["flagged"], "card")
        assert _csv_row(client, film)["operating_point"] == "card"
        texts = _texts(_sr(client, film)[0])
        assert any(CARD_TEXT in text for text in texts)
        assert not any("site operating point" in text for text in texts)
        # The validation stays listed after the revert.
        assert "report.html" in client.get("/validation").text


def test_a_profile_for_another_version_is_ignored_with_a_warning(client_factory, film,
                                                                 card_answer, tmp_path):
    state = tmp_path / "state"
    served = card_answer["model"]["version"]
    other = served - 1
    site.adopt(state, _flipping(tmp_path, card_answer, version=other), "dr ward")
    with _app(client_factory, state) as client:
        answer = _predict(client, film)
        assert (answer["threshold"], answer["flagged"], answer["operating_point"]["source"]) \
            == (card_answer["threshold"], card_answer["flagged"], "card")
        ready = client.get("/readyz")
        assert ready.status_code == 200
        [warning] = ready.json()["warnings"]
        name = card_answer["model"]["name"]
        assert f"{name} v{other}" in warning and f"{name} v{served}" in warning
        assert "site revert" in warning


def test_the_setting_wins_over_the_profile_and_readyz_says_so(client_factory, film,
                                                              card_answer, tmp_path):
    state = tmp_path / "state"
    site.adopt(state, _flipping(tmp_path, card_answer), "dr ward")
    with _app(client_factory, state, threshold=0.42) as client:
        answer = _predict(client, film)
        assert (answer["threshold"], answer["operating_point"]["source"]) == (0.42, "setting")
        [warning] = client.get("/readyz").json()["warnings"]
        assert "PNEUMONIA_THRESHOLD" in warning


def _site_records(client) -> list:
    """The audit trail's site_profile records, newest first."""
    return [record for record in client.app.state.store.audit()
            if record.action == AuditAction.SITE_PROFILE]


def test_a_profile_put_in_place_or_removed_by_hand_is_recorded_at_start_once(
        client_factory, card_answer, tmp_path):
    """`site adopt` and `site revert` record themselves; a profile that reaches the state
    folder another way (copied, restored from a backup: here written by site.adopt, which
    records nothing) is recorded by the server that applies it, at its start, once; and so
    is one removed by hand. No operating point applies without a record of it."""
    state = tmp_path / "state"
    profile = site.adopt(state, _flipping(tmp_path, card_answer), "dr ward")
    with _app(client_factory, state) as client:
        [found] = _site_records(client)
    assert found.actor == "settings" and found.detail["change"] == "found"
    assert (found.detail["threshold"], found.detail["validation_sha256"],
            found.detail["adopted_by"]) == (profile.threshold, profile.validation_sha256,
                                            "dr ward")
    # The trail held no change at all: it may also have aged out of the audit retention.
    assert "by hand" in found.detail["meaning"] and "retention" in found.detail["meaning"]
    with _app(client_factory, state) as client:  # the trail says so now: nothing more
        assert len(_site_records(client)) == 1

    site.revert(state)  # by hand: no record
    with _app(client_factory, state) as client:
        removed, _ = _site_records(client)
    assert removed.detail["change"] == "found" and "validation_sha256" not in removed.detail
    assert "card's operating point applies" in removed.detail["meaning"]
    with _app(client_factory, state) as client:
        assert len(_site_records(client)) == 2


def test_a_profile_adopted_through_the_command_is_not_recorded_again_at_start(
        client_factory, card_answer, tmp_path):
    state = tmp_path / "state"
    with _app(client_factory, state) as client:  # a trail, and no profile: nothing recorded
        assert _site_records(client) == []
        # What `pneumonia-triage site adopt` does, against this server's trail.
        profile = site.adopt(state, _flipping(tmp_path, card_answer), "dr ward")
        site.record(client.app.state.store, "adopted", profile, "dr ward")
    with _app(client_factory, state) as client:
        assert [r.detail["change"] for r in _site_records(client)] == ["adopted"]
        assert client.get("/readyz").json()["warnings"] == []
    # Its threshold edited by hand afterwards: another profile, recorded as found.
    edited = profile.model_copy(update={"threshold": round(profile.threshold / 2, 6)})
    site.profile_path(state).write_text(edited.model_dump_json())
    with _app(client_factory, state) as client:
        records = _site_records(client)
    assert [r.detail["change"] for r in records] == ["found", "adopted"]
    assert records[0].detail["threshold"] == edited.threshold
    assert "last change says otherwise" in records[0].detail["meaning"]


def test_a_site_show_does_not_vouch_for_a_profile_put_in_place_by_hand(
        client_factory, card_answer, tmp_path):
    """`site show` records what it saw, but changes nothing: a profile copied in by hand
    and then shown is still recorded as found at the next start."""
    state = tmp_path / "state"
    with _app(client_factory, state) as client:
        profile = site.adopt(state, _flipping(tmp_path, card_answer), "dr ward")  # by hand
        site.record(client.app.state.store, "shown", profile, "dr ward")
    with _app(client_factory, state) as client:
        assert [r.detail["change"] for r in _site_records(client)] == ["found", "shown"]


def test_a_damaged_profile_stops_the_start_with_its_message(client_factory, tmp_path):
    from app.errors import StartupError

    state = tmp_path / "state"
    state.mkdir()
    (state / "site_profile.json").write_text("{damaged")
    with pytest.raises(StartupError, match="site revert"), client_factory(state_dir=state):
        pass


def test_validation_lists_and_serves_the_kept_reports(client_factory, card_answer, tmp_path):
    state = tmp_path / "state"
    profile = site.adopt(state, _flipping(tmp_path, card_answer), "dr ward")
    with _app(client_factory, state) as client:
        page = client.get("/validation")
        assert page.status_code == 200
        link = f"/validation/{profile.validation_id}/report.html"
        assert link in page.text and "(adopted)" in page.text and "dr ward" in page.text
        report = client.get(link)
        assert report.status_code == 200 and "Local validation" in report.text
        assert report.text == (state / "validations" / profile.validation_id
                               / "report.html").read_text()  # served as it is
        policy = report.headers["content-security-policy"]
        assert "sandbox" in policy and "script-src" not in policy
        for path in ("/validation/0123456789ab/report.html",  # well formed, not kept
                     "/validation/..%2F..%2Fsite_profile.json/report.html",
                     "/validation/%2e%2e/report.html",
                     f"/validation/{profile.validation_id.upper()}/report.html",
                     f"/validation/{profile.validation_id}/validation.json"):
            refused = client.get(path)
            assert refused.status_code in (404, 422), path
            assert "site operating point" not in refused.text.lower()


def test_validation_pages_need_the_token_when_one_is_set(client_factory, card_answer,
                                                         tmp_path):
    state = tmp_path / "state"
    profile = site.adopt(state, _flipping(tmp_path, card_answer), "dr ward")
    link = f"/validation/{profile.validation_id}/report.html"
    with _app(client_factory, state, api_token=TOKEN) as client:
        assert client.get("/validation").status_code == 401
        assert client.get(link).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/validation", headers=bearer).status_code == 200
        assert client.get(link, headers=bearer).status_code == 200


def test_the_navigation_links_the_validation_page(client):
    assert re.search(r'<a href="/validation">', client.get("/models", headers={
        "Accept": "text/html"}).text)
