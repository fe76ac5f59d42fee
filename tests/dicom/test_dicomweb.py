"""The STOW-RS route (app/routes/dicomweb.py) on the app, with the node's ingest on the
stand-in model: the web layer's part only (token, media type, limits, streaming)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from pydicom import Dataset

from app.dicom.stow import multipart_body
from app.main import create_app
from app.services.catalog import ModelCatalog
from tests.dicom.nodes import scoring_ingest
from tests.dicom_helpers import file_bytes, study_film
from tests.helpers import xray_like
from tests.servers import settings_for_tests

TOKEN = "a-token-of-sixteen-chars"


@contextmanager
def _client(with_ingest: bool = True, **settings) -> Iterator[tuple[TestClient, list]]:
    catalog = ModelCatalog()
    catalog.failure = "not loaded: these tests score with the stand-in"  # nothing to load
    app = create_app(settings_for_tests(decode_workers=0, **settings), catalog=catalog)
    ingest, recorder = scoring_ingest()
    with TestClient(app) as client:
        # The stand-in ingest, or none: the moment before the lifespan has made the node's.
        app.state.dicom_ingest = ingest if with_ingest else None
        yield client, recorder.committed


def _post(client, films, path="/dicomweb/studies", **headers):
    body, content_type = multipart_body([file_bytes(f) for f in films])
    return client.post(path, content=body, headers={"Content-Type": content_type, **headers})


def test_stow_of_one_instance_answers_dicom_json():
    film = study_film(xray_like(96, 80))
    with _client() as (client, committed):
        response = _post(client, [film])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    answer = Dataset.from_json(response.json())
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
    assert [r.facts.sop_instance_uid for r in committed] == [film.SOPInstanceUID]


def test_stow_of_several_instances_to_a_study():
    study = "1.2.826.0.1.3680043.8.498.77"
    films = [study_film(xray_like(96, 80, seed=i), study_uid=study) for i in range(3)]
    stranger = study_film(xray_like(96, 80))
    with _client() as (client, committed):
        response = _post(client, [*films, stranger], path=f"/dicomweb/studies/{study}")
    assert response.status_code == 202
    answer = Dataset.from_json(response.json())
    assert len(answer.ReferencedSOPSequence) == 3
    assert answer.FailedSOPSequence[0].ReferencedSOPInstanceUID == stranger.SOPInstanceUID
    assert len(committed) == 3


def test_stow_needs_the_token_when_one_is_set():
    with _client(api_token=TOKEN) as (client, committed):
        refused = _post(client, [study_film(xray_like(64, 64))])
        taken = _post(client, [study_film(xray_like(64, 64))],
                      Authorization=f"Bearer {TOKEN}")
    assert refused.status_code == 401 and taken.status_code == 200
    assert len(committed) == 1


def test_stow_of_another_media_type_is_415():
    with _client() as (client, _):
        response = client.post("/dicomweb/studies", content=b"{}",
                               headers={"Content-Type": "application/dicom+json"})
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_stow_over_the_batch_limit_is_413():
    films = [study_film(xray_like(96, 80, seed=i)) for i in range(3)]
    with _client(max_batch_files=2) as (client, _):
        assert _post(client, films).status_code == 413


def test_stow_before_the_node_has_an_ingest_is_503():
    with _client(with_ingest=False) as (client, _):
        response = _post(client, [study_film(xray_like(64, 64))])
    assert response.status_code == 503 and response.headers["retry-after"]
