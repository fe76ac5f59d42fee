"""DicomNode as the lifespan will run it: from the settings, a film in by storescu, its SR
and SC out to the results destination, on the stand-in model and the in-memory job
source."""

from __future__ import annotations

import subprocess

import pytest

from app.dicom.node import DicomNode
from app.dicom.recipe import is_recipe
from app.errors import ModelNotReadyError
from app.services.catalog import ModelCatalog
from app.services.decode_pool import InlineDecoder
from tests.builders.dicom import study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import (
    NODE_AE,
    PACS_AE,
    MemoryJobSource,
    Recorder,
    StandInModel,
    StandInPacs,
    built,
    received,
)
from tests.servers import free_port, poll, settings_for_tests


def _catalog(model=None):
    """A catalog serving `model` (None: still loading), as ModelCatalog.load leaves it."""
    catalog = ModelCatalog()
    catalog.default = model
    if model is not None:
        catalog.models = {model.card.name: model}
    return catalog


def test_node_from_settings_scores_a_film_and_delivers_its_results(tmp_path):
    jobs, recorder = MemoryJobSource(), Recorder()

    def commit(result):  # the store's transaction: the entry and its delivery job
        recorder(result)
        if result.results:
            jobs.add(result.results)

    film = study_film(xray_like(128, 112))
    film.save_as(tmp_path / "cr.dcm", enforce_file_format=True)
    with StandInPacs() as pacs:
        settings = settings_for_tests(dicom_port=free_port(), dicom_ae_title=NODE_AE,
                                      results_destination=f"{PACS_AE}@127.0.0.1:{pacs.port}")
        node = DicomNode.from_settings(settings, _catalog(StandInModel()), InlineDecoder(),
                                       commit, jobs).start()
        try:
            run = subprocess.run(["storescu", "-aec", NODE_AE, "127.0.0.1",
                                  str(node.scp.port), str(tmp_path / "cr.dcm")],
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            poll(lambda: len(pacs.received) == 2, 30, "the SR and the SC at the PACS")
        finally:
            node.stop()
    assert recorder.committed[0].facts.sop_instance_uid == film.SOPInstanceUID
    # What the queue kept is the recipe; what the PACS got is what it builds.
    assert {str(ds.SOPInstanceUID) for ds in built(recorder.committed[0])} == \
        set(pacs.received)
    assert jobs.waiting() == []
    assert is_recipe(recorder.committed[0].results[0])


def test_node_without_a_destination_makes_no_results_and_no_scp_on_port_zero():
    node = DicomNode.from_settings(settings_for_tests(dicom_port=0),
                                   _catalog(StandInModel()), InlineDecoder(), Recorder(),
                                   MemoryJobSource())
    assert node.scp is None and node.worker is None
    result = node.ingest(received(study_film(xray_like(64, 64))), "dicomweb")
    assert result.prediction is not None and result.results == ()


def test_node_ingest_before_the_model_is_ready_raises_not_ready():
    node = DicomNode.from_settings(settings_for_tests(dicom_port=0), _catalog(None),
                                   InlineDecoder(), Recorder())
    with pytest.raises(ModelNotReadyError) as raised:
        node.ingest(received(study_film(xray_like(64, 64))), "dicomweb")
    assert raised.value.code == "model_loading"
