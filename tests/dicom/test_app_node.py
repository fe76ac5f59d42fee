"""The DICOM node as the app runs it (app/web/main.py's lifespan, app/dicom/store_adapter.py): films
from a real Orthanc land on the worklist store, their SR and secondary capture go back, and
a result whose destination is down is delivered once it is back, across an app restart."""

from __future__ import annotations

import io

import highdicom as hd
import pytest

from app.dicom.results import PROBABILITY
from app.services.pipeline import score_film
from tests.builders.dicom import file_bytes
from tests.dicom.nodes import NODE_AE, store
from tests.dicom.orthanc import running_orthanc
from tests.dicom.test_node_with_orthanc import COMPREHENSIVE_SR, SECONDARY_CAPTURE, _films
from tests.servers import free_port, poll

DELIVERY_SECONDS = 120  # a safety net on a loaded 2-core machine, not the thing measured
pytestmark = pytest.mark.slow


def _node_settings(tmp_path, node_port: int, pacs_port: int) -> dict:
    return {"dicom_port": node_port, "dicom_ae_title": NODE_AE,
            "results_destination": f"ORTHANC@127.0.0.1:{pacs_port}",
            "state_dir": tmp_path / "state"}


def _sr_probabilities(pacs, study_id: str) -> dict[str, float]:
    """Source SOP Instance UID -> the probability its SR in Orthanc holds."""
    found = {}
    for instance in pacs.study_instances(study_id):
        if pacs.tags(instance["ID"])["SOPClassUID"] != COMPREHENSIVE_SR:
            continue
        sr = hd.sr.srread(io.BytesIO(pacs.file(instance["ID"])))
        [group] = sr.content.get_image_measurement_groups()
        [source] = group.source_images
        [probability] = group.get_measurements(name=PROBABILITY)
        found[source.referenced_sop_instance_uid] = probability.value
    return found


def test_orthanc_films_reach_the_worklist_and_their_results_come_back(
        tmp_path, data_dir, client_factory):
    films = _films(data_dir)
    node_port = free_port()
    with running_orthanc(tmp_path / "orthanc", {"triage": (NODE_AE, "127.0.0.1", node_port)}
                         ) as pacs, client_factory(
            **_node_settings(tmp_path, node_port, pacs.dicom_port),
            dicom_allowed_aes=["ORTHANC"]) as client:
        study_id = {pacs.upload(file_bytes(f))["ParentStudy"] for f in films}.pop()
        pacs.send("triage", [study_id])
        poll(lambda: len(pacs.study_instances(study_id)) >= 3 * len(films),
             DELIVERY_SECONDS, "an SR and an SC per film in Orthanc")
        classes = [pacs.tags(i["ID"])["SOPClassUID"] for i in pacs.study_instances(study_id)]
        found = _sr_probabilities(pacs, study_id)
        worklist = client.app.state.store
        (entry,) = worklist.entries().entries
        scorer = client.app.state.dicom_ingest._scorer()
        expected = {f.SOPInstanceUID: score_film(scorer, file_bytes(f)).probability
                    for f in films}
        assert poll(lambda: worklist.undelivered() == {}, DELIVERY_SECONDS,
                    "the delivery jobs to leave the database")
    assert classes.count(SECONDARY_CAPTURE) == len(films)
    assert set(found) == set(expected)
    for sop, probability in found.items():
        assert probability == pytest.approx(expected[sop], abs=1e-4)
    assert entry.study_instance_uid == films[0].StudyInstanceUID
    assert {film.sop_instance_uid for film in entry.films} == set(expected)
    assert all(film.source == "dicom:ORTHANC" for film in entry.films)


def test_a_result_whose_destination_is_down_is_delivered_after_it_and_the_app_come_back(
        tmp_path, data_dir, client_factory):
    film = _films(data_dir)[0]
    node_port, pacs_port = free_port(), free_port()
    settings = _node_settings(tmp_path, node_port, pacs_port)
    with client_factory(**settings) as client:
        [status] = store(node_port, [film])
        assert status.Status == 0x0000  # committed, though its results cannot go yet
        worklist = client.app.state.store
        undelivered = poll(lambda: [u for u in worklist.undelivered().values() if u.last_error],
                           DELIVERY_SECONDS, "a failed delivery attempt")
    assert undelivered[0].count == 1
    # The app is down; the destination comes back; the app starts again on the same state.
    with running_orthanc(tmp_path / "orthanc", {"triage": (NODE_AE, "127.0.0.1", node_port)},
                         dicom_port=pacs_port) as pacs, \
            client_factory(**settings) as client:
        study_id = poll(lambda: next(iter(pacs.rest("GET", "/studies")), None),
                        DELIVERY_SECONDS, "the result in Orthanc")
        poll(lambda: film.SOPInstanceUID in _sr_probabilities(pacs, study_id),
             DELIVERY_SECONDS, "the SR of the film in Orthanc")
        poll(lambda: client.app.state.store.undelivered() == {}, DELIVERY_SECONDS,
             "the delivered job to leave the database")
