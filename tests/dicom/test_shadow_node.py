"""Shadow mode on the DICOM node (issue 31), against a real PACS: films a real Orthanc sends
are scored, listed and measurable, and Orthanc receives nothing back (no SR, no secondary
capture), each film listed with the reason and counted as withheld."""

from __future__ import annotations

import pytest

from tests.builders.dicom import file_bytes
from tests.dicom.nodes import NODE_AE
from tests.dicom.orthanc import running_orthanc
from tests.dicom.test_node_with_orthanc import _films
from tests.servers import free_port

pytestmark = pytest.mark.slow


def test_in_shadow_mode_a_real_pacs_receives_nothing_from_the_node(
        tmp_path, data_dir, client_factory):
    films = _films(data_dir)
    node_port = free_port()
    with running_orthanc(tmp_path / "orthanc", {"triage": (NODE_AE, "127.0.0.1", node_port)}
                         ) as pacs, client_factory(
            dicom_port=node_port, dicom_ae_title=NODE_AE, dicom_allowed_aes=["ORTHANC"],
            results_destination=f"ORTHANC@127.0.0.1:{pacs.dicom_port}",
            state_dir=tmp_path / "state", shadow_mode=True) as client:
        study_id = {pacs.upload(file_bytes(f))["ParentStudy"] for f in films}.pop()
        job = pacs.send("triage", [study_id])  # synchronous: every film answered, committed
        assert job.get("FailedInstancesCount", 0) == 0, job
        store = client.app.state.store
        (entry,) = store.entries().entries
        # Scored and stored as ever: the model's answers are in the store.
        assert {f.sop_instance_uid for f in entry.films} == {f.SOPInstanceUID for f in films}
        assert all(f.model_name for f in entry.films)
        # Nothing queued for the PACS, no worker to send it, each film says why.
        assert store.pending_results() == 0 and store.undelivered() == {}
        assert client.app.state.dicom_ingest is not None
        assert {f.results_error for f in entry.films} == {"shadow_mode"}
        metrics = client.get("/metrics").text
        assert f"pneumonia_results_withheld_total {float(len(films))}" in metrics
        assert 'pneumonia_results_failed_total{reason="shadow_mode"}' not in metrics
        # The clinician's answer carries no result; the operator's measures it.
        answer = client.get(f"/worklist/entries/{entry.id}").json()
        assert answer["decision"] is None and answer["triage_score"] is None
        client.put(f"/worklist/entries/{entry.id}/read", json={"finding": "pneumonia"})
        [model] = client.get("/operations/performance").json()["models"]
        assert model["reads"] == 1
        # And Orthanc holds the films it sent, nothing more.
        instances = pacs.study_instances(study_id)
        stored = pacs.rest("GET", "/statistics")
    assert len(instances) == len(films)
    assert stored["CountInstances"] == len(films)
