"""The SR and the secondary capture the node sends back, built from the recipe the ingest
queues, read back by highdicom, pydicom, a stand-in of OHIF's SR viewport, dcmtk's dsrdump
and dicom3tools' dciodvfy."""

from __future__ import annotations

import dataclasses
import io
import logging
from datetime import UTC, datetime

import highdicom as hd
import numpy as np
import pydicom
import pytest

from app.contract.triage_score import score_text, triage_score
from app.dicom.recipe import Judgement, Recipe
from app.dicom.results import (
    FLAGGED,
    NEEDS_REVIEW,
    NOT_FLAGGED,
    PROBABILITY,
    SC_SERIES_NUMBER,
    SR_SERIES_NUMBER,
    TRIAGE_SCHEME,
    TRIAGE_SCORE,
    ResultBuilder,
    _font,
    _glyphs,
    _lines,
    structured_report,
    triage_text,
)
from tests.builders.dicom import PATIENT_ID, PATIENT_NAME, file_bytes, study_film
from tests.builders.images import xray_like
from tests.dicom.nodes import built, received, scoring_ingest, stand_in_explainer
from tests.dicom.validate import problems

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
PRESENT, ABSENT, UNDETERMINED = "121053", "121054", "121059"


def _results(probability: float = 0.8, film=None, **film_options):
    """The film, the ingest's result (its `results`: the recipe) and what the delivery
    worker builds from it (SR, secondary capture)."""
    film = film if film is not None else study_film(xray_like(160, 128), **film_options)
    ingest, _ = scoring_ingest(probability, results=ResultBuilder())
    result = ingest(received(film), "dicom:PACS")
    return film, result, built(result)


def _unjudged(film, reasons=("inverted",)):
    """The film's results as if the model could not judge it (the raw output 0.93)."""
    _, result, _ = _results(0.93, film=film)
    recipe = Recipe.decode(result.results[0])
    judgement = dataclasses.replace(recipe.judgement, flagged=False, reasons=reasons)
    return ResultBuilder().build(dataclasses.replace(recipe, judgement=judgement))


def _group(sr):
    back = hd.sr.srread(io.BytesIO(file_bytes(sr)))
    [group] = back.content.get_image_measurement_groups()
    return back, group


def _evaluations(group) -> dict[str, list]:
    found: dict[str, list] = {}
    for evaluation in group.get_qualitative_evaluations():
        found.setdefault(evaluation.name.meaning, []).append(evaluation.value)
    return found


def test_sr_reads_back_with_probability_source_and_study():
    film, result, (sr, _) = _results(0.8125)
    back, group = _group(sr)
    assert back.SOPClassUID == COMPREHENSIVE_SR
    [probability] = group.get_measurements(name=PROBABILITY)
    assert probability.value == pytest.approx(0.8125, abs=1e-6)
    assert probability.unit.value == "{probability}"
    [score] = group.get_measurements(name=TRIAGE_SCORE)  # what agrees with the outcome
    assert score.value == pytest.approx(
        triage_score(0.8125, result.prediction.threshold), abs=1e-6)
    assert (score.value >= 0.5) == result.prediction.flagged
    assert group.finding_type.value == "233604007"
    assert [v.meaning for v in _evaluations(group)["Triage outcome"]] == [FLAGGED]
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


@pytest.mark.parametrize(("probability", "judged", "presence", "outcome"), [
    (0.9, True, PRESENT, FLAGGED), (0.01, True, ABSENT, NOT_FLAGGED),
    (0.9, False, UNDETERMINED, NEEDS_REVIEW)])
def test_the_finding_is_coded_present_absent_or_undetermined_as_decided(
        probability, judged, presence, outcome):
    """Every SR named pneumonia as its finding, also for a film not flagged: now the
    finding's presence is what the triage decided."""
    film = study_film(xray_like(160, 128))
    sr = _results(probability, film=film)[2][0] if judged else _unjudged(film)[0]
    _, group = _group(sr)
    evaluations = _evaluations(group)
    assert [v.value for v in evaluations["Presence of property"]] == [presence]
    assert [v.meaning for v in evaluations["Triage outcome"]] == [outcome]


def test_a_film_the_model_cannot_judge_says_why_and_sends_no_probability():
    """Its raw output means nothing clinically: the SR says 'needs a human look', why,
    and holds the operating point only; the secondary capture prints no score."""
    film = study_film(xray_like(160, 128))
    sr, _ = _unjudged(film, reasons=("inverted", "not_frontal"))
    _, group = _group(sr)
    assert group.get_measurements(name=PROBABILITY) == []
    assert group.get_measurements(name=TRIAGE_SCORE) == []
    reasons = _evaluations(group)["Reason not assessed"]
    assert [(r.value, r.scheme_designator) for r in reasons] == [
        ("INVERTED", TRIAGE_SCHEME), ("NOT_FRONTAL", TRIAGE_SCHEME)]
    assert reasons[0].meaning.startswith("The film looks inverted")
    judgement = Judgement(0.93, 0.5, False, ("inverted",), "m", "1", datetime.now(UTC), "")
    lines = [text for text, _ in _lines(judgement)]
    assert lines[0].endswith(NEEDS_REVIEW)
    assert not any("%" in line or "triage score" in line for line in lines)


def test_sr_names_the_algorithm_and_operating_point():
    _, result, (sr, _) = _results()
    prediction = result.prediction
    text = str(sr.ContentSequence)
    assert prediction.model_name in text and str(prediction.model_version) in text
    assert f"{prediction.threshold:.6g}" in text


@pytest.mark.parametrize(("probability", "assessable", "wording"), [
    (0.9, True, FLAGGED), (0.01, True, NOT_FLAGGED), (0.9, False, NEEDS_REVIEW)])
def test_triage_text_uses_triage_wording(probability, assessable, wording):
    _, result, _ = _results(probability)
    prediction = result.prediction

    @dataclasses.dataclass(frozen=True)
    class Assessed:  # the pipeline's coming `assessable` field
        flagged: bool
        assessable: bool

    assert triage_text(Assessed(prediction.flagged, assessable)) == wording
    assert "pneumonia" not in wording.lower()  # a triage outcome, never a diagnosis


def test_results_built_again_from_their_recipe_are_the_same_objects():
    """The queue keeps the recipe and the worker builds at each attempt: every build, also
    after a restart, is the same instance, byte for byte (UIDs, dates and all)."""
    _, result, first = _results()
    again = ResultBuilder(explainer=stand_in_explainer).build_job(result.results)
    assert [file_bytes(ds) for ds in again] == [file_bytes(ds) for ds in first]
    recipe = Recipe.decode(result.results[0])
    assert Recipe.decode(recipe.encode()).encode() == recipe.encode()
    assert structured_report(recipe.header, recipe.judgement).SOPInstanceUID == \
        first[0].SOPInstanceUID


def _content_items(items):
    for item in items:
        yield item
        yield from _content_items(item.get("ContentSequence", []))


def test_every_measurement_is_readable_by_ohifs_sr_viewport():
    """OHIF's SR viewport (cornerstone-dicom-sr, processNonGeometricallyDefinedMeasurement)
    reads each measurement group's tracking UID and identifier, and each NUM item's
    ContentSequence and MeasuredValueSequence; the operating point had no content."""
    film = study_film(xray_like(160, 128))
    for sr in (_results(0.9, film=film)[2][0], _unjudged(film)[0]):
        back = pydicom.dcmread(io.BytesIO(file_bytes(sr)))
        groups = [item for item in _content_items(back.ContentSequence)
                  if item.ValueType == "CONTAINER"
                  and item.ConceptNameCodeSequence[0].CodeValue == "125007"]
        assert len(groups) == 1
        content = groups[0].ContentSequence
        assert [i.UID for i in content if i.ValueType == "UIDREF"]
        assert [i.TextValue for i in content if i.ValueType == "TEXT"
                and i.ConceptNameCodeSequence[0].CodeValue == "112039"] == ["pneumonia triage"]
        numbers = [item for item in content if item.ValueType == "NUM"]
        assert numbers
        for item in numbers:
            assert len(item.get("ContentSequence", [])) > 0, \
                item.ConceptNameCodeSequence[0].CodeMeaning
            [measured] = item.MeasuredValueSequence
            assert measured.MeasurementUnitsCodeSequence[0].CodeValue
            assert measured.NumericValue is not None


def test_the_node_is_named_as_the_device_at_the_top_level():
    _, result, (sr, sc) = _results()
    model = f"{result.prediction.model_name} v{result.prediction.model_version}"
    for ds in (sr, sc):
        assert ds.Manufacturer == "pneumonia-triage"
        assert ds.ManufacturerModelName == model
        assert ds.SoftwareVersions[0].startswith("pneumonia-triage ")
        assert ds.SoftwareVersions[1] == model
    assert sc.SecondaryCaptureDeviceManufacturerModelName == model


def test_the_private_coding_scheme_is_identified():
    _, _, (sr, _) = _results()
    [item] = sr.CodingSchemeIdentificationSequence
    assert item.CodingSchemeDesignator == TRIAGE_SCHEME
    assert item.CodingSchemeName and item.CodingSchemeResponsibleOrganization
    used = {i.CodingSchemeDesignator for i in _content_items(sr.ContentSequence)
            for key in ("ConceptNameCodeSequence", "ConceptCodeSequence") for i in i.get(key, [])
            if hasattr(i, "CodingSchemeDesignator")}
    assert TRIAGE_SCHEME in used


def test_secondary_capture_is_a_valid_rgb_image_in_the_study():
    film, _, (_, sc) = _results()
    back = pydicom.dcmread(io.BytesIO(file_bytes(sc)))
    assert back.SOPClassUID == SECONDARY_CAPTURE
    assert back.StudyInstanceUID == film.StudyInstanceUID
    assert back.SeriesNumber == SC_SERIES_NUMBER
    assert back.BurnedInAnnotation == "YES"
    assert back.SourceImageSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
    pixels = back.pixel_array
    # At the film's display size, never scaled up (a 224 px film's was 2.2 MB at 768 px).
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.shape[1] == film.Columns
    assert (back.PatientName, back.PatientID) == (PATIENT_NAME, PATIENT_ID)


def _film_area(sc) -> np.ndarray:
    """The secondary capture's pixels below its text band: (h, w, 3) uint8."""
    pixels = pydicom.dcmread(io.BytesIO(file_bytes(sc))).pixel_array
    return pixels[-200:]


def test_secondary_capture_is_drawn_from_the_pipelines_pixels_and_heat_map():
    """The film and its model input come from the pipeline as arrays (no PNG made and read
    back in the pipeline), travel in the recipe, and are not kept with the outcome; the heat
    map is drawn from the model input when the results are built."""
    _, result, (_, sc) = _results()
    area = _film_area(sc)
    assert (area[..., 0].astype(int) - area[..., 2] > 30).any()  # red-yellow over grey
    assert result.prediction.heatmap is None and result.prediction.display is None


def test_the_node_answers_before_the_heat_map_which_delivery_draws():
    """The ingest scores the film without its occlusion map (two model calls of up to 26
    copies) and queues the model input it is drawn from; the map is drawn once the results
    are built, by the model that judged the film, and not at all for a film it could not
    judge, or by a model that no longer serves (its secondary capture then has none)."""
    from tests.dicom.nodes import StandInModel

    explained = []

    def explainer(judgement, model_input):
        explained.append(model_input.shape)
        return stand_in_explainer(judgement, model_input)

    original = StandInModel.explain
    calls = []
    StandInModel.explain = lambda self, images: calls.append(len(images)) or original(
        self, images)
    try:
        ingest, _ = scoring_ingest(0.8, results=ResultBuilder())
        result = ingest(received(study_film(xray_like(160, 128))), "dicom:PACS")
    finally:
        StandInModel.explain = original
    assert calls == []  # no map before the C-STORE is answered
    recipe = Recipe.decode(result.results[0])
    assert recipe.display.heat is None and recipe.display.model_input.shape == (64, 64, 3)
    _, sc = ResultBuilder(explainer=explainer).build(recipe)
    assert explained == [(64, 64, 3)]
    area = pydicom.dcmread(io.BytesIO(file_bytes(sc))).pixel_array[-100:]
    assert (area[..., 0].astype(int) - area[..., 2] > 30).any()
    _, plain = ResultBuilder(explainer=lambda judgement, model_input: None).build(recipe)
    area = pydicom.dcmread(io.BytesIO(file_bytes(plain))).pixel_array[-100:]
    assert not (area[..., 0].astype(int) - area[..., 2] > 30).any()  # grey: no map
    unjudged = dataclasses.replace(recipe, judgement=dataclasses.replace(
        recipe.judgement, flagged=False, reasons=("inverted",)))
    ResultBuilder(explainer=explainer).build(unjudged)
    assert explained == [(64, 64, 3)]  # no map of an unvalidated score


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
    results = built(result)
    assert len(results) == 2 and decoder.films == 1
    area = _film_area(results[1])
    assert (area[..., 0] == area[..., 2]).all()  # the grey film, no heat map over it


def test_results_without_secondary_capture_are_the_sr_only():
    film = study_film(xray_like(96, 80))
    ingest, _ = scoring_ingest(results=ResultBuilder(secondary_capture=False))
    results = built(ingest(received(film), "dicom:PACS"))
    assert [r.SOPClassUID for r in results] == [COMPREHENSIVE_SR]


def _with_library(film):
    film.PatientOrientation = ["L", "F"]
    film.ImagerPixelSpacing = [0.2, 0.2]
    film.Rows, film.Columns = film.Rows, film.Columns
    return film


def test_sr_of_a_film_with_orientation_and_spacing_has_an_image_library():
    film = _with_library(study_film(xray_like(96, 80)))
    _, _, (sr, _) = _results(film=film)
    assert "Image Library" in str(sr.ContentSequence)


@pytest.mark.parametrize("kind", ["flagged", "not_flagged", "not_assessed", "image_library"])
def test_results_pass_dsrdump_and_dciodvfy_without_warnings_of_ours(kind):
    """dciodvfy and dsrdump find nothing to fix in either result: tests/dicom/validate.py
    says which two kinds of line are not ours (the private scheme's designator, which
    dciodvfy flags though it is identified, and a source's empty Type 2 elements)."""
    film = study_film(xray_like(160, 128))
    if kind == "image_library":
        film = _with_library(film)
    results = _unjudged(film) if kind == "not_assessed" else \
        _results(0.01 if kind == "not_flagged" else 0.9, film=film)[2]
    assert len(results) == 2
    for ds in results:
        assert problems(ds) == []


def test_warm_up_builds_without_a_film():
    ResultBuilder().warm_up()


def test_the_secondary_capture_says_the_triage_score_that_agrees_with_the_flag():
    _, flagged, _ = _results(0.9)
    _, routine, _ = _results(0.01)
    for result, wording in ((flagged, FLAGGED), (routine, NOT_FLAGGED)):
        p = result.prediction
        lines = [text for text, _ in _lines(p)]
        score = score_text(triage_score(p.probability, p.threshold))
        assert lines[0].endswith(wording)
        assert f"triage score {score}/100" in lines[1]
        assert (int(score) >= 50) == p.flagged


def test_highdicom_never_logs_a_patients_name_in_the_serving_process(caplog):
    """highdicom warns with the name itself when it has no caret (check_person_name): the
    serving process silences it (app/logs.py silence_decoder_chatter)."""
    from app.logs import silence_decoder_chatter

    silence_decoder_chatter()
    film = study_film(xray_like(96, 80))
    film.PatientName = "DOE JANE SECRET"
    with caplog.at_level(logging.DEBUG):
        _, _, results = _results(film=film)
    assert len(results) == 2 and str(results[0].PatientName) == "DOE JANE SECRET"
    assert "DOE JANE" not in caplog.text


def test_a_secondary_capture_says_when_its_heatmap_points_outside_the_body():
    """The warning travels with the recipe's arrays (the share is measured on them), so a
    build after the delivery queue's round trip prints it too."""
    from app.contract.body import heatmap_warning
    from app.services.pipeline import Display
    from tests.builders.images import chest_on_air

    film = chest_on_air()[0]
    on_air = np.zeros((64, 64), np.float32)
    on_air[:, :5] = 1  # the strip of air at the left
    on_body = np.zeros((64, 64), np.float32)
    on_body[20:40, 26:38] = 1
    judgement = Judgement(0.93, 0.5, True, (), "m", "1", datetime.now(UTC), "")
    for heat, warned in ((on_air, True), (on_body, False)):
        display = Recipe.decode(Recipe.of(pydicom.Dataset(), judgement,
                                          Display(film, heat)).encode()).display
        assert (display.heat_warning is not None) is warned
        lines = [text for text, _ in _lines(judgement, heatmap=True,
                                            heat_warning=display.heat_warning)]
        if warned:
            first, rest = heatmap_warning(display.outside_body).split(": ")
            assert lines[-2:] == [f"{first}:", rest]
        else:
            assert lines[-1] == "Heatmap: the regions that moved the score most."


@pytest.mark.parametrize("size", [11, 14, 23])
@pytest.mark.parametrize("colour", ["white", "#ffb000", "#7fd0ff"])
def test_a_kept_line_of_glyphs_pastes_as_drawing_it_would(size, colour):
    """burn_in pastes each line's colour through its kept glyph mask (_glyphs): the band
    must be, pixel for pixel, what ImageDraw.text draws there, descenders and accents too."""
    from PIL import Image, ImageDraw

    lines = ["AI triage for pneumonia: flagged (gypsy jqÅ)", "jq model: its glyphs start left",
             "triage score 7/100 (flagged at 50 and above)"]
    drawn = Image.new("RGB", (420, 120), "black")
    pasted = drawn.copy()
    for row, text in enumerate(lines):
        at = (size // 2, size // 2 + row * int(size * 1.3))
        ImageDraw.Draw(drawn).text(at, text, fill=colour, font=_font(size))
        mask, left, top = _glyphs(text, size)
        pasted.paste(colour, (at[0] + left, at[1] + top), mask)
    assert np.asarray(drawn).any()
    assert np.array_equal(np.asarray(pasted), np.asarray(drawn))


def test_a_line_break_in_a_model_name_is_drawn_as_a_space():
    """Each burned-in line is one line: a card's name with a line break would otherwise draw
    its second half over the next line (and the kept glyphs measure one line only)."""
    from app.dicom.results import burn_in
    from app.services.pipeline import Display

    film = xray_like(224, 224)
    made = datetime.now(UTC)
    drawn = [burn_in(Display(film, None), Judgement(0.93, 0.5, True, (), name, "1", made, ""))
             for name in ("pneu\nmonia", "pneu monia", "pneumonia")]
    assert np.array_equal(drawn[0], drawn[1])
    assert not np.array_equal(drawn[1], drawn[2])
