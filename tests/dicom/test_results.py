"""The SR and the secondary capture the node sends back, read back by highdicom, pydicom,
dcmtk's dsrdump and (when installed) dicom3tools' dciodvfy."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

from app.contract.triage_score import score_text, triage_score
from app.dicom.results import (
    FLAGGED,
    NEEDS_REVIEW,
    NOT_FLAGGED,
    PROBABILITY,
    SC_SERIES_NUMBER,
    SR_SERIES_NUMBER,
    TRIAGE_SCORE,
    ResultBuilder,
    _lines,
    structured_report,
    triage_text,
)
from tests.builders.dicom import PATIENT_ID, PATIENT_NAME, file_bytes, study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import received, scoring_ingest

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _results(probability: float = 0.8, **film_options):
    film = study_film(xray_like(160, 128), **film_options)
    ingest, _ = scoring_ingest(probability, results=ResultBuilder())
    result = ingest(received(film), "dicom:PACS")
    return film, result


def test_sr_reads_back_with_probability_source_and_study():
    film, result = _results(0.8125)
    sr, _ = result.results
    back = hd.sr.srread(io.BytesIO(file_bytes(sr)))
    assert back.SOPClassUID == COMPREHENSIVE_SR
    [group] = back.content.get_image_measurement_groups()
    [probability] = group.get_measurements(name=PROBABILITY)
    assert probability.value == pytest.approx(0.8125, abs=1e-6)
    assert probability.unit.value == "{probability}"
    [score] = group.get_measurements(name=TRIAGE_SCORE)  # what agrees with the outcome
    assert score.value == pytest.approx(
        triage_score(0.8125, result.prediction.threshold), abs=1e-6)
    assert (score.value >= 0.5) == result.prediction.flagged
    assert group.finding_type.value == "233604007"
    [evaluation] = group.get_qualitative_evaluations()
    assert evaluation.name.value == "233604007" and evaluation.value.meaning == FLAGGED
    [source] = group.source_images
    assert source.referenced_sop_instance_uid == film.SOPInstanceUID
    assert source.referenced_sop_class_uid == film.SOPClassUID
    assert back.StudyInstanceUID == film.StudyInstanceUID
    assert back.SeriesInstanceUID != film.SeriesInstanceUID
    assert back.SeriesNumber == SR_SERIES_NUMBER
    # The identifiers go back to the PACS they came from, as they came.
    assert (back.PatientName, back.PatientID) == (PATIENT_NAME, PATIENT_ID)
    assert back.AccessionNumber == film.AccessionNumber
    [evidence] = back.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == film.StudyInstanceUID


def test_sr_names_the_algorithm_and_operating_point():
    _, result = _results()
    sr = result.results[0]
    prediction = result.prediction
    text = str(sr.ContentSequence)
    assert prediction.model_name in text and str(prediction.model_version) in text
    assert f"{prediction.threshold:.6g}" in text


@pytest.mark.parametrize(("probability", "assessable", "wording"), [
    (0.9, True, FLAGGED), (0.01, True, NOT_FLAGGED), (0.9, False, NEEDS_REVIEW)])
def test_triage_text_uses_triage_wording(probability, assessable, wording):
    _, result = _results(probability)
    prediction = result.prediction

    @dataclasses.dataclass(frozen=True)
    class Assessed:  # the pipeline's coming `assessable` field
        flagged: bool
        assessable: bool

    assert triage_text(Assessed(prediction.flagged, assessable)) == wording
    assert "pneumonia" not in wording.lower()  # a triage outcome, never a diagnosis


def test_results_sent_twice_are_one_instance():
    film, result = _results()
    again = structured_report(film, result.prediction)
    assert again.SOPInstanceUID == result.results[0].SOPInstanceUID
    assert again.SeriesInstanceUID == result.results[0].SeriesInstanceUID


def test_secondary_capture_is_a_valid_rgb_image_in_the_study():
    film, result = _results()
    _, sc = result.results
    back = pydicom.dcmread(io.BytesIO(file_bytes(sc)))
    assert back.SOPClassUID == SECONDARY_CAPTURE
    assert back.StudyInstanceUID == film.StudyInstanceUID
    assert back.SeriesNumber == SC_SERIES_NUMBER
    assert back.BurnedInAnnotation == "YES"
    assert back.SourceImageSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
    pixels = back.pixel_array
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.shape[1] >= 768
    assert (back.PatientName, back.PatientID) == (PATIENT_NAME, PATIENT_ID)


def _film_area(sc) -> np.ndarray:
    """The secondary capture's pixels below its text band: (h, w, 3) uint8."""
    pixels = pydicom.dcmread(io.BytesIO(file_bytes(sc))).pixel_array
    return pixels[-200:]


def test_secondary_capture_is_drawn_from_the_pipelines_pixels_and_heat_map():
    """The film and its heat map come from the pipeline as arrays (no PNG made and read
    back), and are not kept with the committed outcome."""
    _, result = _results()
    _, sc = result.results
    area = _film_area(sc)
    assert (area[..., 0].astype(int) - area[..., 2] > 30).any()  # red-yellow over grey
    assert result.prediction.heatmap is None and result.prediction.display is None


def test_secondary_capture_without_a_heatmap_shows_the_film_decoded_once():
    from app.dicom.ingest import ScoringIngest
    from app.services.decode_pool import InlineDecoder
    from tests.dicom.nodes import Recorder, stand_in_scorer

    class Counting(InlineDecoder):
        films = 0

        def prepare(self, job, bulk=False):
            self.films += 1
            return super().prepare(job, bulk)

    decoder = Counting()
    scorer = stand_in_scorer(can_explain=False, decoder=decoder)
    ingest = ScoringIngest(lambda: scorer, Recorder(), ResultBuilder())
    result = ingest(received(study_film(xray_like(160, 128))), "dicom:PACS")
    assert result.prediction.heatmap is None
    assert len(result.results) == 2 and decoder.films == 1
    area = _film_area(result.results[1])
    assert (area[..., 0] == area[..., 2]).all()  # the grey film, no heat map over it


def test_results_without_secondary_capture_are_the_sr_only():
    film = study_film(xray_like(96, 80))
    ingest, _ = scoring_ingest(results=ResultBuilder(secondary_capture=False))
    results = ingest(received(film), "dicom:PACS").results
    assert [r.SOPClassUID for r in results] == [COMPREHENSIVE_SR]


def test_sr_of_a_film_with_orientation_and_spacing_has_an_image_library():
    film = study_film(xray_like(96, 80))
    film.PatientOrientation = ["L", "F"]
    film.ImagerPixelSpacing = [0.2, 0.2]
    ingest, _ = scoring_ingest(results=ResultBuilder())
    sr = ingest(received(film), "dicom:PACS").results[0]
    assert "Image Library" in str(sr.ContentSequence)


def test_results_pass_dcmtk_and_dciodvfy(tmp_path):
    _, result = _results()
    sr, sc = result.results
    (tmp_path / "sr.dcm").write_bytes(file_bytes(sr))
    (tmp_path / "sc.dcm").write_bytes(file_bytes(sc))
    dump = subprocess.run(["dsrdump", str(tmp_path / "sr.dcm")], capture_output=True,
                          text=True, timeout=30)
    assert dump.returncode == 0 and "Pneumonia" in dump.stdout, dump.stderr
    if shutil.which("dciodvfy") is None:  # dicom3tools: `make system-packages`
        pytest.skip("dciodvfy not installed")
    for name, allowed in (("sr.dcm", "99PNEUTRIAGE"), ("sc.dcm", None)):
        check = subprocess.run(["dciodvfy", str(tmp_path / name)], capture_output=True,
                               text=True, timeout=30)
        problems = [line for line in check.stderr.splitlines()
                    if line.startswith(("Error", "Warning"))
                    and not (allowed and allowed in line)]
        assert problems == [], check.stderr


def test_warm_up_builds_without_a_film():
    ResultBuilder().warm_up()


def test_a_film_the_model_cannot_judge_sends_no_probability_to_the_pacs():
    """Its raw output means nothing clinically: the SR says 'needs a human look' and holds
    the operating point only, and the secondary capture prints no score or probability."""
    film, result = _results(0.93)
    unjudged = dataclasses.replace(result.prediction, label=None, flagged=False,
                                   reasons=("inverted",))
    sr = structured_report(film, unjudged)
    back = hd.sr.srread(io.BytesIO(file_bytes(sr)))
    [group] = back.content.get_image_measurement_groups()
    assert group.get_measurements(name=PROBABILITY) == []
    assert group.get_measurements(name=TRIAGE_SCORE) == []
    [evaluation] = group.get_qualitative_evaluations()
    assert evaluation.value.meaning == NEEDS_REVIEW
    lines = [text for text, _ in _lines(unjudged)]
    assert lines[0].endswith(NEEDS_REVIEW)
    assert not any("%" in line or "triage score" in line for line in lines)


def test_the_secondary_capture_says_the_triage_score_that_agrees_with_the_flag():
    _, flagged = _results(0.9)
    _, routine = _results(0.01)
    for result, wording in ((flagged, FLAGGED), (routine, NOT_FLAGGED)):
        p = result.prediction
        lines = [text for text, _ in _lines(p)]
        score = score_text(triage_score(p.probability, p.threshold))
        assert lines[0].endswith(wording)
        assert f"triage score {score}/100" in lines[1]
        assert (int(score) >= 50) == p.flagged
