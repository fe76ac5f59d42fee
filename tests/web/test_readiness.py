"""Background loading behind /readyz, and models the app must refuse to serve."""

import logging
import threading

import pytest
from fastapi.testclient import TestClient

from app.services import catalog as loader
from app.web.main import create_app
from tests.builders.images import jpeg_bytes
from tests.contract.test_card import copy_committed_model
from tests.servers import REPO, settings_for_tests, wait_until_settled


@pytest.mark.slow
def test_readyz_is_503_while_loading_then_200(monkeypatch):
    release = threading.Event()
    real = loader.ServedModel

    def slow_model(path):
        assert release.wait(60)
        return real(path)

    monkeypatch.setattr(loader, "ServedModel", slow_model)
    with TestClient(create_app(settings_for_tests())) as client:
        assert client.get("/healthz").status_code == 200  # up while the model loads
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"]
        assert ready.json()["error"] == "model_loading"
        predict = client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
        assert predict.status_code == 503 and predict.headers["retry-after"]
        assert predict.json()["error"] == "model_loading"
        release.set()
        assert wait_until_settled(client) == 200
        assert client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())}).status_code \
            == 200


def _refused(tmp_path, caplog, edit) -> tuple:
    models = copy_committed_model(tmp_path, edit)
    with caplog.at_level(logging.ERROR, logger="app.model"), \
            TestClient(create_app(settings_for_tests(model_dir=models))) as client:
        status = wait_until_settled(client)
        ready = client.get("/readyz")
        predict = client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
        health = client.get("/healthz").status_code
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return status, ready, predict, health, errors


@pytest.mark.parametrize(("edit", "field"), [
    (lambda c: c["input"].update(preprocessing_version="999"), "input.preprocessing_version"),
    (lambda c: c.pop("class_names"), "class_names"),
], ids=["wrong-preprocessing-version", "missing-field"])
def test_refused_card_keeps_readyz_503_with_one_log_line(tmp_path, caplog, edit, field):
    status, ready, predict, health, errors = _refused(tmp_path, caplog, edit)
    assert status == 503 and ready.json()["error"] == "model_unavailable"
    assert "retry-after" not in ready.headers  # it will not get better by waiting
    assert predict.status_code == 503 and health == 200
    assert len(errors) == 1 and field in errors[0] and "Traceback" not in errors[0]


def test_missing_or_damaged_model_folder_is_one_log_line(tmp_path, caplog):
    def damage(card):  # a valid card next to a SavedModel whose graph is garbage
        pass

    models = copy_committed_model(tmp_path, damage)
    (models / "pneumonia" / "1" / "saved_model.pb").write_bytes(b"not a protobuf" * 10)
    with caplog.at_level(logging.ERROR, logger="app.model"), \
            TestClient(create_app(settings_for_tests(model_dir=models))) as client:
        assert wait_until_settled(client) == 503
    with TestClient(create_app(settings_for_tests(model_dir=tmp_path / "none"))) as client:
        assert wait_until_settled(client) == 503
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2
    assert "saved_model" in errors[0].lower() or "pb" in errors[0].lower()
    assert "no model 'pneumonia'" in errors[1]


def test_a_broken_input_guard_file_keeps_the_app_not_ready(tmp_path, caplog):
    from app.contract.card import CARD_FILE
    from app.services.saved_model import find_model

    served = find_model(REPO / "models", "pneumonia")
    models = tmp_path / "models"
    import shutil

    shutil.copytree(served, models / "pneumonia" / served.name)
    (models / "pneumonia" / served.name / "input_guard.json").write_text(
        '{"mean": [0.5], "precision": [[1.0]], "threshold": 1.0}')
    assert (models / "pneumonia" / served.name / CARD_FILE).is_file()
    with caplog.at_level(logging.ERROR, logger="app.model"), \
            TestClient(create_app(settings_for_tests(model_dir=models))) as client:
        assert wait_until_settled(client) == 503
    assert any("input_guard.json" in r.getMessage() for r in caplog.records)
