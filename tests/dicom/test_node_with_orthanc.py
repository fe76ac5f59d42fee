"""End to end against a real PACS: CR films uploaded to Debian's Orthanc, sent by Orthanc to
the node, scored by the committed model, and the node's SR and secondary capture stored back
into Orthanc in the same study."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from PIL import Image

from app.dicom.delivery import DeliveryWorker, Destination, store_scu
from app.dicom.ingest import IngestResult, Received, ScoringIngest, catalog_scorer
from app.dicom.results import PROBABILITY, SC_SERIES_NUMBER, ResultBuilder
from app.services.decode_pool import InlineDecoder
from app.services.pipeline import score_film
from tests.builders.dicom import file_bytes, study_film
from tests.dicom.nodes import NODE_AE, MemoryJobSource, running_node
from tests.dicom.orthanc import running_orthanc
from tests.servers import poll

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DELIVERY_SECONDS = 120  # a safety net on a loaded 2-core machine, not the thing measured


def _films(data_dir: Path) -> list:
    """Two normal and two pneumonia test films as CR of one study, two of them JPEG
    baseline (the PACS forwards them compressed)."""
    study = None
    films = []
    for label in ("NORMAL", "PNEUMONIA"):
        for index, path in enumerate(sorted((data_dir / "test" / label).glob("*.jpeg"))[:2]):
            pixels = np.asarray(Image.open(path).convert("L"))
            film = study_film(pixels, study_uid=study,
                              syntax="jpeg-baseline" if index else "explicit")
            study = film.StudyInstanceUID
            films.append(film)
    return films


class _Wiring:
    """The node as the app will wire it, its store stood in for by memory: each committed
    result's SR and SC queued for delivery, and the delivery worker woken."""

    def __init__(self, catalog) -> None:
        self.source = MemoryJobSource()
        self.worker: DeliveryWorker | None = None
        self.committed: list[IngestResult] = []
        self._lock = threading.Lock()
        self.scorer = catalog_scorer(catalog, InlineDecoder(), 50_000_000)
        self.ingest = ScoringIngest(self.scorer, self.commit, ResultBuilder())

    def commit(self, result: IngestResult) -> None:
        with self._lock:
            self.committed.append(result)
            if result.results:
                self.source.add(result.results)
        if self.worker is not None:
            self.worker.wake()

    def deliver_to(self, destination: Destination) -> DeliveryWorker:
        self.worker = DeliveryWorker(self.source, store_scu(destination, NODE_AE),
                                     poll_seconds=0.5, build=ResultBuilder().build_job)
        return self.worker.start()


@pytest.mark.slow
def test_films_sent_by_orthanc_come_back_as_sr_and_sc_in_their_study(
        tmp_path, data_dir, committed_model_catalog):
    films = _films(data_dir)
    wired = _Wiring(committed_model_catalog)
    with running_node(wired.ingest, allowed_aes=("ORTHANC",)) as node:
        modalities = {"triage": (NODE_AE, "127.0.0.1", node.port)}
        with running_orthanc(tmp_path / "orthanc", modalities) as pacs:
            worker = wired.deliver_to(Destination(pacs.ae_title, "127.0.0.1",
                                                  pacs.dicom_port))
            try:
                study_id = {pacs.upload(file_bytes(f))["ParentStudy"] for f in films}.pop()
                pacs.send("triage", [study_id])
                poll(lambda: len(pacs.study_instances(study_id)) >= 3 * len(films),
                     DELIVERY_SECONDS, "an SR and an SC per film in Orthanc")
                instances = pacs.study_instances(study_id)
                reports = {i["ID"]: pacs.file(i["ID"]) for i in instances
                           if pacs.tags(i["ID"])["SOPClassUID"] == COMPREHENSIVE_SR}
                captures = [pacs.tags(i["ID"]) for i in instances
                            if pacs.tags(i["ID"])["SOPClassUID"] == SECONDARY_CAPTURE]
            finally:
                worker.stop()
    assert len(reports) == len(films) and len(captures) == len(films)
    # The films are on the (stand-in) worklist, each scored.
    assert {r.facts.sop_instance_uid for r in wired.committed} == \
        {f.SOPInstanceUID for f in films}
    assert all(r.prediction is not None for r in wired.committed)
    # Each SR reads back with the probability /predict's pipeline gives the same film.
    scorer = wired.scorer()
    expected = {f.SOPInstanceUID: score_film(scorer, file_bytes(f)).probability for f in films}
    for data in reports.values():
        sr = hd.sr.srread(io.BytesIO(data))
        assert sr.StudyInstanceUID == films[0].StudyInstanceUID
        [group] = sr.content.get_image_measurement_groups()
        [source] = group.source_images
        [probability] = group.get_measurements(name=PROBABILITY)
        assert probability.value == pytest.approx(expected.pop(
            source.referenced_sop_instance_uid), abs=1e-4)
    assert expected == {}
    for capture in captures:
        assert capture["StudyInstanceUID"] == films[0].StudyInstanceUID
        assert int(capture["SeriesNumber"]) == SC_SERIES_NUMBER


@pytest.mark.slow
def test_orthanc_finishes_its_job_for_a_lateral_film_and_fails_it_for_a_damaged_one(tmp_path):
    """The status table as a PACS reads it: a warning (listed, not scored) completes the
    PACS's forwarding job; an error fails it, visibly, at the PACS."""
    import urllib.error

    from tests.builders.images import xray_like
    from tests.dicom.nodes import scoring_ingest

    lateral = study_film(xray_like(96, 80), view="LL")
    damaged = study_film(xray_like(96, 80))
    damaged.PixelData = damaged.PixelData[:100]
    ingest, recorder = scoring_ingest()
    with running_node(ingest) as node, running_orthanc(
            tmp_path / "orthanc", {"triage": (NODE_AE, "127.0.0.1", node.port)}) as pacs:
        job = pacs.send("triage", [pacs.upload(file_bytes(lateral))["ID"]])
        with pytest.raises(urllib.error.HTTPError) as failed:
            pacs.send("triage", [pacs.upload(file_bytes(damaged))["ID"]])
    assert job["FailedInstancesCount"] == 0 and job["InstancesCount"] == 1
    assert b"0xC000" in failed.value.read()
    assert [r.error.code for r in recorder.committed] == ["dicom_lateral_view", "corrupt_image"]


@pytest.mark.slow
def test_orthanc_routes_a_whole_study_and_its_job_completes(tmp_path):
    """Orthanc sends a whole study: a CR, an SR, a grayscale presentation state, and the
    node's own SR and secondary capture of the CR (stored in Orthanc as the node would
    have delivered them). Every instance is taken, so Orthanc's job completes; only the CR
    is listed and scored; the rest is counted by kind, never listed or sent back."""
    from app.metrics import Metrics
    from tests.builders.dicom import COMPREHENSIVE_SR, GSPS, study_object
    from tests.builders.images import xray_like
    from tests.dicom.nodes import built, scoring_ingest

    film = study_film(xray_like(96, 80))
    own = built(scoring_ingest(results=ResultBuilder())[0](
        Received.read(file_bytes(film)), "dicom:PACS"))
    study = [film, study_object(film, COMPREHENSIVE_SR, "SR"), study_object(film, GSPS, "PR"),
             *own]
    metrics = Metrics()
    ingest, recorder = scoring_ingest(metrics=metrics, results=ResultBuilder())
    with running_node(ingest, allowed_aes=("ORTHANC",)) as node, running_orthanc(
            tmp_path / "orthanc", {"triage": (NODE_AE, "127.0.0.1", node.port)}) as pacs:
        study_id = {pacs.upload(file_bytes(ds))["ParentStudy"] for ds in study}.pop()
        job = pacs.send("triage", [study_id])
    assert job["FailedInstancesCount"] == 0 and job["InstancesCount"] == len(study)
    assert [r.facts.sop_instance_uid for r in recorder.committed] == [film.SOPInstanceUID]
    assert recorder.committed[0].prediction is not None
    counted = {kind: metrics.registry.get_sample_value("pneumonia_dicom_ignored_total",
                                                       {"kind": kind})
               for kind in ("structured_report", "presentation_state", "own_result")}
    assert counted == {"structured_report": 1.0, "presentation_state": 1.0, "own_result": 2.0}


@pytest.mark.slow
def test_films_whose_headers_modalities_wrote_get_their_results_into_orthanc(tmp_path):
    """Issue 27: a birth date 2019-03-04, sex FEMALE, a study time 10:15:00, and a Japanese
    name under \\ISO 2022 IR 87 made the SR fail to build: the films were scored, Orthanc's
    job succeeded, and no result ever came back. Now both studies get their SR and secondary
    capture in Orthanc, under their identity as sent, the Japanese name intact."""
    from pydicom.data import get_charset_files

    from tests.builders.dicom import with_raw_elements
    from tests.builders.images import xray_like
    from tests.dicom.nodes import stand_in_scorer

    careless = study_film(xray_like(96, 80))
    careless = with_raw_elements(careless, {0x00100030: ("DA", b"2019-03-04"),
                                            0x00100040: ("CS", b"FEMALE"),
                                            0x00080030: ("TM", b"10:15:00")})
    [japanese_file] = get_charset_files("chrH31.dcm")
    name = bytes(__import__("pydicom").dcmread(japanese_file).get_item(0x00100010).value)
    japanese = with_raw_elements(study_film(xray_like(96, 80)), {
        0x00080005: ("CS", b"\\ISO 2022 IR 87"), 0x00100010: ("PN", name)})
    source, scorer = MemoryJobSource(), stand_in_scorer(0.9)

    def commit(result: IngestResult) -> None:
        if result.results:
            source.add(result.results)

    ingest = ScoringIngest(lambda: scorer, commit, ResultBuilder())
    with running_node(ingest, allowed_aes=("ORTHANC",)) as node, running_orthanc(
            tmp_path / "orthanc", {"triage": (NODE_AE, "127.0.0.1", node.port)}) as pacs:
        studies = [pacs.upload(data)["ParentStudy"] for data in (careless, japanese)]
        for study in studies:
            assert pacs.send("triage", [study])["FailedInstancesCount"] == 0
        worker = DeliveryWorker(source, store_scu(Destination(pacs.ae_title, "127.0.0.1",
                                                              pacs.dicom_port), NODE_AE),
                                build=ResultBuilder().build_job)
        assert worker.run_once() == 2
        tags = {study: [pacs.tags(i["ID"]) for i in pacs.study_instances(study)]
                for study in studies}
    for study in studies:
        classes = sorted(t["SOPClassUID"] for t in tags[study])
        assert classes == sorted([COMPREHENSIVE_SR, SECONDARY_CAPTURE,
                                  "1.2.840.10008.5.1.4.1.1.1"]), classes
    results = [t for t in tags[studies[0]] if t["SOPClassUID"] != "1.2.840.10008.5.1.4.1.1.1"]
    assert all(t.get("PatientBirthDate", "") == "" for t in results)
    assert all(t["PatientID"] == "PID-7731-SECRET" for t in results)
    names = {t["PatientName"] for t in tags[studies[1]]}
    assert names == {"Yamada^Tarou=山田^太郎=やまだ^たろう"}  # the film's and its results'
