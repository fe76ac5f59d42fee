"""Several models offered side by side: the default serves unless a request names another
(?model=NAME), on the API and on the upload page."""

import json
import re
import shutil

import numpy as np
import pytest

from app.services.saved_model import find_model
from tests.builders.images import jpeg_bytes
from tests.servers import REPO

SECOND_THRESHOLD = 0.9


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The served model 5 as 'pneumonia', and the same network under a second name with its
    own threshold: which one answered shows in the name and threshold of every response."""
    root = tmp_path_factory.mktemp("models")
    served = find_model(REPO / "models", "pneumonia")
    shutil.copytree(served, root / "pneumonia" / served.name)
    second = root / "second" / "1"
    shutil.copytree(served, second)
    card = json.loads((second / "model_card.json").read_text())
    card.update(name="second", version=1, threshold=SECOND_THRESHOLD,
                description="Model 8, beyond the original study: a second model")
    (second / "model_card.json").write_text(json.dumps(card))
    shutil.copy(REPO / "models" / "report.json", root / "report.json")
    return root


@pytest.fixture(scope="module")
def client(client_factory, model_dir):
    with client_factory(model_dir=model_dir, threshold=0.25) as test_client:
        yield test_client


def test_models_lists_the_default_first_and_the_others(client):
    models = client.get("/models").json()["models"]
    assert [(m["name"], m["default"]) for m in models] == [("pneumonia", True), ("second", False)]
    assert models[1]["threshold"] == SECOND_THRESHOLD and models[1]["input"] == "64x64, 3 channels"


def test_models_is_a_page_for_a_browser_and_the_same_json_for_api_clients(client):
    as_json = client.get("/models").json()
    for accept in ("application/json", "*/*"):
        answer = client.get("/models", headers={"Accept": accept})
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == as_json
    page = client.get("/models", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "<h1>Models this server offers</h1>" in text and 'href="/models"' in text  # the nav
    default, second = as_json["models"]
    card = json.loads((find_model(REPO / "models", "pneumonia") / "model_card.json").read_text())
    # Each row: its card's operating point rounded, what this server applies where it differs
    # (the settings' 0.25 overrides the default's), its card and its upload page.
    assert f'<td class="threshold">{card["threshold"]:.3f}' in text
    assert str(card["threshold"]) not in text
    assert "this server applies 0.250" in text
    assert f'<td class="threshold">{SECOND_THRESHOLD:.3f}</td>' in text
    assert 'href="/report#card"' in text and 'href="/"' in text
    assert 'href="/report?model=second#card"' in text and 'href="/?model=second"' in text
    assert second["description"] in text and default["input"] in text


def test_models_keeps_its_json_schema_in_the_openapi_document(client):
    operation = client.get("/openapi.json").json()["paths"]["/models"]["get"]
    content = operation["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ModelsResponse"}
    assert "text/html" in content


def test_a_request_asks_the_model_it_names_and_the_default_otherwise(client):
    files = {"file": ("x.jpeg", jpeg_bytes(120, 100))}
    default = client.post("/predict", files=files).json()
    second = client.post("/predict?model=second", files=files).json()
    assert default["model"]["name"] == "pneumonia" and second["model"]["name"] == "second"
    assert second["probability"] == pytest.approx(default["probability"], abs=1e-6)
    # The settings' threshold override is the default model's; the other keeps its card's.
    assert default["threshold"] == 0.25 and second["threshold"] == SECOND_THRESHOLD
    batch = client.post("/predict/batch?model=second",
                        files=[("files", ("a.jpeg", jpeg_bytes(80, 80)))]).json()
    assert batch["model"]["name"] == "second" and batch["threshold"] == SECOND_THRESHOLD


def test_an_unknown_model_is_a_404_that_lists_the_offered_ones(client):
    files = {"file": ("x.jpeg", jpeg_bytes())}
    response = client.post("/predict?model=nope", files=files)
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_model"
    assert "'pneumonia', 'second'" in response.json()["detail"]
    assert client.get("/?model=../pneumonia").status_code == 404
    assert client.get("/readyz").json()["model"]["name"] == "pneumonia"


def test_the_upload_page_offers_a_choice_and_posts_to_the_chosen_model(client):
    page = client.get("/").text
    assert 'id="models"' in page
    assert 'href="/?model=second"' in page and 'class="chosen" aria-current="page"' in page
    assert 'action="/"' in page and 'data-model=""' in page
    chosen = client.get("/?model=second").text
    assert 'action="/?model=second"' in chosen and 'data-model="second"' in chosen
    assert "Model second v1" in chosen  # the footer names the model asked
    # Without JavaScript: the form posts to its action, the answer comes from that model.
    answer = client.post("/?model=second", files=[("files", ("x.jpeg", jpeg_bytes()))],
                         headers={"Accept": "text/html"})
    assert answer.status_code == 200 and "Model second v1" in answer.text
    assert f"{SECOND_THRESHOLD * 100:.1f}%" in answer.text


def test_offered_models_can_be_limited_to_the_default(client_factory, model_dir):
    with client_factory(model_dir=model_dir, offered_models=[]) as only:
        assert [m["name"] for m in only.get("/models").json()["models"]] == ["pneumonia"]
        assert 'id="models"' not in only.get("/").text
        assert only.post("/predict?model=second",
                         files={"file": ("x.jpeg", jpeg_bytes())}).status_code == 404


def test_the_default_can_be_another_model_by_setting(client_factory, model_dir):
    with client_factory(model_dir=model_dir, model_name="second") as other:
        body = other.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())}).json()
        assert body["model"]["name"] == "second"
        assert [m["name"] for m in other.get("/models").json()["models"]] == ["second",
                                                                               "pneumonia"]


def test_the_report_page_compares_the_served_model_with_the_stronger_ones(client_factory):
    """On the committed models: the comparison table carries the report's own figures."""
    report = json.loads((REPO / "models" / "report.json").read_text())
    section = report["stronger_models"]
    with client_factory() as committed:
        page = committed.get("/report").text
        assert 'id="model-comparison"' in page
        text = " ".join(re.sub(r"<[^>]+>", " ", page).split())  # the sd sits in its own span
        for entry in section["experiments"]:
            summary = entry["summary"]
            for key in ("roc_auc", "accuracy", "recall", "specificity"):
                stat = summary[key]
                assert f"{stat['mean']:.3f} ± {stat['sd']:.3f}" in text
            assert len(entry["runs"]) >= 3
            for path in entry["figures"].values():
                assert f"/report/{path}" in page
                assert committed.get(f"/report/{path}").status_code == 200
        assert "Kermany et al. 2018" in page
        names = [m["name"] for m in committed.get("/models").json()["models"]]
        assert names[0] == "pneumonia" and "pneumonia_compact" in names


def test_an_empty_batch_is_an_empty_answer(client):
    model = client.app.state.catalog.default
    assert model.predict(np.zeros((0, 64, 64, 3), np.float32)).shape == (0,)
