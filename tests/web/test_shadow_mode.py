"""Shadow mode over HTTP (issue 31): every film scored and stored, reads captured, but no
answer for clinicians carries a score, decision or heatmap (the list in arrival order, a
banner on every page), while /operations/performance reports what the model would have done;
turning it on and off is in the audit trail. The DICOM side (nothing reaches a real PACS):
tests/dicom/test_shadow_node.py."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tests.builders.images import jpeg_bytes
from tests.web.test_reading import real_dicom
from tests.web.test_worklist_routes import store_of, upload

# What a result looks like in an answer: a score, a decision, a probability, the words.
RESULT_WORDS = ("flagged for priority read", "not flagged", "needs a human look",
                "calibrated probability", "Not assessable by the model")


@pytest.fixture
def shadow(client_factory, tmp_path):
    with client_factory(state_dir=tmp_path, decode_workers=0, shadow_mode=True,
                        worklist_thumbnails=True) as client:
        yield client


def _no_result_in_json(value, where: str) -> None:
    """No score, probability, decision, group or flag anywhere in a JSON answer."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("triage_score", "triage_score_text", "probability", "probability_text",
                       "priority", "priority_text", "decision", "decision_text", "group",
                       "flagged", "assessable", "heatmap", "unvalidated_probability"):
                assert item is None, f"{where}: {key} = {item!r}"
            elif key in ("reasons", "warnings"):
                assert item == [], f"{where}: {key} = {item!r}"
            else:
                _no_result_in_json(item, where)
    elif isinstance(value, list):
        for item in value:
            _no_result_in_json(item, where)


def test_no_clinician_answer_carries_a_result_while_performance_does(shadow, samples_dir):
    films = [real_dicom(samples_dir / "person1945_bacteria_4872.jpeg"),
             real_dicom(samples_dir / "NORMAL2-IM-1258-0001.jpeg"), jpeg_bytes(seed=61)]
    stored = upload(shadow, *films)
    assert stored.status_code == 200
    ids = [f["entry_id"] for f in stored.json()["files"]]
    # Scored and stored all the same: the store holds the results.
    entries = [store_of(shadow).entry(entry_id) for entry_id in ids]
    assert all(e.films[0].model_name for e in entries)
    assert entries[0].group == "flagged"  # what the model would have done
    read = shadow.put(f"/worklist/entries/{ids[0]}/read", json={"finding": "pneumonia"})
    shadow.put(f"/worklist/entries/{ids[1]}/read", json={"finding": "no_pneumonia"})
    film_id = stored.json()["entries"][0]["films"][0]["id"]
    answers = {
        "upload": stored, "read": read,
        "list": shadow.get("/worklist/entries"),
        "entry": shadow.get(f"/worklist/entries/{ids[0]}"),
        "status": shadow.patch(f"/worklist/entries/{ids[0]}", json={"status": "opened"}),
    }
    for where, answer in answers.items():
        assert answer.status_code == 200, where
        _no_result_in_json(answer.json(), where)
    assert answers["entry"].json()["result_shown"] is False
    # The list in arrival order, not by priority.
    listed = [e["id"] for e in answers["list"].json()["entries"]]
    assert listed == sorted(ids, key=lambda i: (store_of(shadow).entry(i).received_at, i))
    rows = list(csv.DictReader(io.StringIO(
        shadow.get("/worklist/entries", params={"format": "csv"}).text)))
    assert {(r["group"], r["decision"], r["triage_score"], r["priority"], r["flagged"],
             r["notes"]) for r in rows} == {("", "", "", "", "", "")}
    assert {r["read"] for r in rows} == {"pneumonia", "no_pneumonia", ""}
    pages = {path: shadow.get(path, headers={"Accept": "text/html"})
             for path in ("/worklist", "/worklist/rows", f"/worklist/studies/{ids[0]}",
                          "/worklist/audit-trail", "/", "/report")}
    for path, page in pages.items():
        assert page.status_code == 200, path
        text = page.text
        for words in RESULT_WORDS:
            assert words not in text or path in ("/report", "/"), (path, words)
        if path != "/worklist/rows":
            assert 'id="shadow-banner"' in text, path
    for path in ("/worklist", "/worklist/rows", f"/worklist/studies/{ids[0]}"):
        text = pages[path].text
        assert not re.search(r'class="priority (flagged|not_flagged|needs_human_look)', text)
        assert "film-overlay" not in text and "/heatmap" not in text
        assert re.search(r'class="film-display"|class="thumb"', text)  # films, no result
    assert shadow.get(f"/worklist/films/{film_id}/heatmap").status_code == 403
    # Doors that would only answer with a result refuse.
    for path, field in (("/predict", "file"), ("/predict/batch", "files")):
        refused = shadow.post(path, files=[(field, ("a.jpeg", films[2], "image/jpeg"))])
        assert refused.status_code == 403 and refused.json()["error"] == "shadow_mode", path
    assert shadow.post("/", files=[("files", ("a.jpeg", films[2], "image/jpeg"))],
                       headers={"Accept": "text/html"}).status_code == 403
    # The operator's answer has the figures.
    [model] = shadow.get("/operations/performance").json()["models"]
    assert (model["table"]["true_positive"], model["judged"]) == (1, 2)
    assert model["figures"]["sensitivity"]["value"] == 1.0
    performance = shadow.get("/operations/performance", headers={"Accept": "text/html"}).text
    assert "what the model\n  would have done" in performance or "would have done" in performance


def test_turning_shadow_mode_on_and_off_is_audited(client_factory, tmp_path):
    def shadow_records(client) -> list[dict]:
        return [r["detail"] for r in client.get("/worklist/audit").json()["records"]
                if r["action"] == "shadow_mode"]

    with client_factory(state_dir=tmp_path, shadow_mode=True) as client:
        [on] = shadow_records(client)
    with client_factory(state_dir=tmp_path, shadow_mode=True) as client:
        assert shadow_records(client) == [on]  # still on: nothing new
    with client_factory(state_dir=tmp_path) as client:
        records = client.get("/worklist/audit").json()["records"]
        off, again = shadow_records(client)
        assert 'id="shadow-banner"' not in client.get("/worklist").text
    assert (on["shadow_mode"], off["shadow_mode"]) == (True, False)
    assert off["meaning"].startswith("shadow mode left") and again == on
    assert next(r for r in records if r["action"] == "shadow_mode")["actor"] == "settings"
    assert json.dumps(on).count("PNEUMONIA_SHADOW_MODE") == 1
