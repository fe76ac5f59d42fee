"""The results built in a process of their own (app/dicom/build_process.py): the same
instances, byte for byte, as built in the serving process; a build process that dies is
replaced and its job tried again, never abandoned; what cannot be built is still abandoned
with its reason."""

from __future__ import annotations

import os
import signal

import pytest

from app.dicom.build_process import ProcessBuilder, _build
from app.dicom.delivery import Backoff, DeliveryWorker, Destination, store_scu
from app.dicom.failures import BuildFailed, BuildUnavailable, ResultsFailure, ResultsNotMade
from app.dicom.recipe import Recipe
from app.dicom.results import ResultBuilder
from tests.builders.dicom import file_bytes, study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import (
    PACS_AE,
    MemoryJobSource,
    StandInPacs,
    received,
    scoring_ingest,
    stand_in_explainer,
)


def _recipe(seed: int = 0, probability: float = 0.8) -> tuple[bytes, ...]:
    ingest, _ = scoring_ingest(probability, results=ResultBuilder())
    return ingest(received(study_film(xray_like(160, 128, seed=seed))), "dicom:PACS").results


@pytest.fixture
def builder():
    made = ProcessBuilder(ResultBuilder(explainer=stand_in_explainer))
    yield made
    made.close()


def _pids(builder: ProcessBuilder) -> list[int]:
    pool = builder._pool
    return [] if pool is None else list(pool._processes)  # noqa: SLF001 - the test's probe


def test_results_built_in_the_process_are_byte_for_byte_the_served_process_s(builder):
    """SR and secondary capture (heat map drawn here, by the stand-in model) the same
    bytes as ResultBuilder's own build; and in a process other than this one."""
    here = ResultBuilder(explainer=stand_in_explainer)
    for seed, probability in ((0, 0.8), (1, 0.1)):
        parts = _recipe(seed, probability)
        there = builder.build_job(parts)
        assert [file_bytes(ds) for ds in there] == \
            [file_bytes(ds) for ds in here.build_job(parts)]
        assert len(there) == 2
    assert _pids(builder) and os.getpid() not in _pids(builder)


def test_a_build_process_that_dies_is_replaced_and_its_job_tried_again(builder):
    builder.warm_up()
    [pid] = _pids(builder)
    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
    with pytest.raises(BuildUnavailable):
        for _ in range(50):  # until the pool has seen its process go
            builder.build_job(_recipe())
    assert len(builder.build_job(_recipe())) == 2
    assert _pids(builder) and pid not in _pids(builder)


def test_through_the_delivery_worker_a_dead_build_process_is_a_retry_not_an_abandon(builder):
    source = MemoryJobSource()
    source.add(_recipe())
    builder.warm_up()
    [pid] = _pids(builder)
    os.kill(pid, signal.SIGKILL)
    with StandInPacs() as pacs:
        worker = DeliveryWorker(source, store_scu(Destination(PACS_AE, "127.0.0.1",
                                                              pacs.port)),
                                Backoff(first=0, jitter=0), build=builder.build_job)
        delivered = 0
        for _ in range(50):
            delivered = worker.run_once()
            if delivered:
                break
    assert delivered == 1 and source.abandoned_reasons == [] and source.waiting() == []
    assert len(pacs.received) == 2


def test_what_cannot_be_built_comes_back_as_its_reason_or_its_type(monkeypatch):
    """In the build process an exception is sent back as plain values (a ResultsNotMade
    as its reason, tag and why; another by its type name only: its text may quote the
    header), and raised again here as ResultsNotMade or BuildFailed."""
    import app.dicom.build_process as build_process

    class Failing:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def build(self, recipe):
            raise self.exc

    recipe = Recipe.decode(_recipe()[0])
    not_made = ResultsNotMade(ResultsFailure.BUILD, "(0010,0010) PatientName", "too long")
    monkeypatch.setattr(build_process, "_BUILDER", Failing(not_made))
    assert _build(recipe) == ("build", "(0010,0010) PatientName", "too long")
    monkeypatch.setattr(build_process, "_BUILDER", Failing(ValueError("DOE^JANE")))
    assert _build(recipe) == ("ValueError",)

    builder = ProcessBuilder(ResultBuilder())
    monkeypatch.setattr(builder, "_run", lambda *args, **kwargs: (
        "build", "(0010,0010) PatientName", "too long"))
    with pytest.raises(ResultsNotMade) as made:
        builder.build_job(_recipe())
    assert made.value.reason is ResultsFailure.BUILD and made.value.tag.endswith("PatientName")
    monkeypatch.setattr(builder, "_run", lambda *args, **kwargs: ("ValueError",))
    with pytest.raises(BuildFailed) as failed:
        builder.build_job(_recipe())
    assert failed.value.kind == "ValueError" and "DOE" not in str(failed.value)


def test_a_stopped_builder_answers_try_again_and_starts_nothing(builder):
    builder.close()
    with pytest.raises(BuildUnavailable):
        builder.build_job(_recipe())
    assert _pids(builder) == []


def test_a_build_past_its_time_is_stopped_and_its_job_tried_again(builder):
    builder.warm_up()
    [pid] = _pids(builder)
    builder._timeout = 0.0001  # noqa: SLF001 - no build is that fast
    with pytest.raises(BuildUnavailable, match="ran past"):
        builder.build_job(_recipe())
    builder._timeout = 60  # noqa: SLF001
    assert len(builder.build_job(_recipe())) == 2
    assert pid not in _pids(builder)


def test_a_recipe_that_loses_the_process_every_time_is_abandoned_not_tried_for_ever(builder):
    """A build lost (here: past its time, its process stopped) is tried again; the
    BUILD_TRIES-th loss on the same recipe abandons it, listed and counted; another
    recipe still builds."""
    from app.dicom.build_process import BUILD_TRIES

    parts = _recipe()
    builder.warm_up()
    builder._timeout = 0.0001  # noqa: SLF001 - no build is that fast
    for _ in range(BUILD_TRIES - 1):
        with pytest.raises(BuildUnavailable):
            builder.build_job(parts)
    with pytest.raises(BuildFailed, match=f"{BUILD_TRIES} times"):
        builder.build_job(parts)
    builder._timeout = 60  # noqa: SLF001
    assert len(builder.build_job(_recipe(seed=1))) == 2


def test_a_node_whose_port_is_taken_leaves_no_build_process(tmp_path):
    """start() raises for the taken port, and the results' build process is not started
    (nothing would stop it)."""
    import socket

    from app.dicom.node import DicomNode
    from app.services.decode_pool import InlineDecoder
    from tests.dicom.nodes import NODE_AE, Recorder, StandInModel
    from tests.dicom.test_node import _catalog
    from tests.servers import settings_for_tests

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = settings_for_tests(dicom_port=taken.getsockname()[1],
                                      dicom_ae_title=NODE_AE,
                                      results_destination=f"{PACS_AE}@127.0.0.1:9")
        node = DicomNode.from_settings(settings, _catalog(StandInModel()), InlineDecoder(),
                                       Recorder(), MemoryJobSource())
        with pytest.raises(OSError):
            node.start()
    builder = node._builder  # noqa: SLF001 - the test's probe
    assert builder is not None and _pids(builder) == []
    with pytest.raises(BuildUnavailable):
        builder.build_job(_recipe())
