"""Earlier versions of an offered model stay selectable: ?model=NAME/VERSION loads that
version on first use and answers with it; GET /models lists them."""

import numpy as np

from app.services.saved_model import available_models
from tests.builders.images import jpeg_bytes


def _predict(client, model: str | None = None):
    params = {"model": model} if model else {}
    return client.post("/predict", params=params,
                       files={"file": ("film.jpeg", jpeg_bytes(160, 140), "image/jpeg")})


def test_models_lists_each_model_s_earlier_versions(client):
    found = available_models(client.app.state.settings.model_dir)
    listed = client.get("/models").json()["models"]
    assert listed
    for model in listed:
        assert model["earlier_versions"] == sorted(v for v in found[model["name"]]
                                                   if v < model["version"])


def test_an_earlier_version_answers_as_itself(client):
    default = client.get("/models").json()["models"][0]
    assert default["earlier_versions"], "the committed default model has earlier versions"
    newest = _predict(client)
    assert newest.status_code == 200
    assert newest.json()["model"] == {"name": default["name"], "version": default["version"]}
    for version in default["earlier_versions"]:
        answer = _predict(client, f"{default['name']}/{version}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == {"name": default["name"], "version": version}
    card = client.get("/report", params={"model": f"{default['name']}/"
                                         f"{default['earlier_versions'][-1]}"})
    assert card.status_code == 200
    assert f"{default['name']} v{default['earlier_versions'][-1]}" in card.text


def test_a_version_that_is_not_there_is_a_404(client):
    name = client.get("/models").json()["models"][0]["name"]
    for asked in (f"{name}/999", f"{name}/x", "nothing/1", f"{name}/0"):
        answer = _predict(client, asked)
        assert answer.status_code == 404, (asked, answer.text)
        assert answer.json()["error"]


def test_an_earlier_version_keeps_its_own_threshold(client):
    default = client.get("/models").json()["models"][0]
    assert default["earlier_versions"]
    version = default["earlier_versions"][-1]
    body = _predict(client, f"{default['name']}/{version}").json()
    model = client.app.state.catalog.choose(f"{default['name']}/{version}")
    assert model is not None and model.card.version == version
    assert np.isclose(body["threshold"], model.card.threshold)


def test_a_version_is_asked_in_one_spelling_only(client):
    """"02", "٢" (Arabic-Indic) or "２" (full width) name version 2 to int(), and each
    loaded another copy of it (a request per spelling: memory without bound). Only the
    plain ASCII number is a version; the others are 404s, and nothing more is loaded."""
    default = client.get("/models").json()["models"][0]
    version = default["earlier_versions"][-1]
    assert _predict(client, f"{default['name']}/{version}").status_code == 200
    loaded = dict(client.app.state.catalog._earlier)
    for spelling in (f"0{version}", f"00{version}", chr(0x0660 + version),
                     chr(0xFF10 + version), f" {version}", f"{version} ", f"+{version}"):
        answer = _predict(client, f"{default['name']}/{spelling}")
        assert answer.status_code == 404, (spelling, answer.text)
    assert client.app.state.catalog._earlier == loaded
