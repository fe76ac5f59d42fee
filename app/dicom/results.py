"""What goes back to the PACS for one scored film: a Comprehensive SR and a secondary capture,
built from a recipe (app/dicom/recipe.py): the film's sanitised header (app/dicom/header.py),
the judgement and the pixels to show.

The SR follows TID 1500 (Measurement Report) as the IHE AI Results profile uses it: one
measurement group whose finding type is pneumonia (SNOMED CT 233604007), coded as present,
absent or undetermined by the triage decision (DCM 121053, 121054, 121059), holding the
triage score, the probability and the operating point as numeric measurements (UCUM
`{score}`, `{probability}`), each with its algorithm (so that a viewer that reads every
measurement's content finds some), the triage outcome in the worklist's words and, for a
film the model cannot judge, why (a private scheme, identified in the Coding Scheme
Identification Sequence), the algorithm's name and version (Algorithm Identification), and a
reference to the source image. The secondary capture is the film with the result (and the
heatmap, when the model draws one) burned in, for viewers that do not render SR. Both name
the node as their equipment (Manufacturer, Manufacturer's Model Name, Software Versions).

Both are in the source's study (its Study Instance UID, and its patient and study modules
as sanitised: these identifiers go back to the PACS they came from and nowhere else), each
in a series of its own kind, with UIDs and dates derived from the recipe: a result built
twice is one instance at the PACS. The wording is triage, never a diagnosis.
"""

from __future__ import annotations

import copy
import io
import logging
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

import highdicom as hd
import numpy as np
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from app.contract.assessability import REASONS
from app.contract.site import CARD_TEXT
from app.contract.triage_score import FLAGGED_FROM_TEXT
from app.dicom.header import sanitise
from app.dicom.recipe import Judgement, Recipe, is_recipe
from app.services.display import percent
from app.services.pipeline import Display, Prediction, heat_layer
from app.services.triage import Decision, decision

log = logging.getLogger("app.dicom")

MANUFACTURER = "pneumonia-triage"  # also how the node knows its own results coming back
SR_SERIES_NUMBER = 9901  # high numbers keep results after the acquired series in viewers
SC_SERIES_NUMBER = 9902
SR_SERIES_DESCRIPTION = "AI triage report (not a diagnosis)"
SC_SERIES_DESCRIPTION = "AI triage image (not a diagnosis)"

PNEUMONIA = hd.sr.CodedConcept("233604007", "SCT", "Pneumonia")
PROBABILITY = hd.sr.CodedConcept("122157", "DCM", "Probability")
OPERATING_POINT = hd.sr.CodedConcept("122411", "DCM", "Threshold Value")
PROBABILITY_UNIT = hd.sr.CodedConcept("{probability}", "UCUM", "probability")
CHEST_IMAGING = hd.sr.CodedConcept("413815006", "SCT", "Chest imaging (procedure)")
# The decision, as the finding's presence (DCM's codes for a property's presence).
PRESENCE = hd.sr.CodedConcept("121052", "DCM", "Presence of property")
PRESENT = hd.sr.CodedConcept("121053", "DCM", "Present")
ABSENT = hd.sr.CodedConcept("121054", "DCM", "Absent")
UNDETERMINED = hd.sr.CodedConcept("121059", "DCM", "Presence Undetermined")
# The triage outcome in the worklist's words, and why a film was not assessed, have no
# standard codes: a private scheme, as PS3.16 Section 8 allows ("99" prefix), identified in
# each SR's Coding Scheme Identification Sequence.
TRIAGE_SCHEME = "99PNEUTRIAGE"
CODING_SCHEME = CodingSchemeIdentificationItem(
    designator=TRIAGE_SCHEME, name="Pneumonia triage outcomes",
    responsible_organization=MANUFACTURER, version="1")
FLAGGED = Decision.FLAGGED.text
NOT_FLAGGED = Decision.NOT_FLAGGED.text
NEEDS_REVIEW = Decision.NEEDS_HUMAN_LOOK.text
TRIAGE_OUTCOME = hd.sr.CodedConcept("OUTCOME", TRIAGE_SCHEME, "Triage outcome")
NOT_ASSESSED_BECAUSE = hd.sr.CodedConcept("NOT_ASSESSED", TRIAGE_SCHEME,
                                          "Reason not assessed")
# The triage score (app/services/triage.py): the probability rescaled so that the operating
# point is 0.5 for every model; the number a viewer should show beside the outcome.
TRIAGE_SCORE = hd.sr.CodedConcept("TRIAGE_SCORE", TRIAGE_SCHEME, "Triage score")
SCORE_UNIT = hd.sr.CodedConcept("{score}", "UCUM", "score")
TRIAGE_CODES = {
    FLAGGED: hd.sr.CodedConcept("FLAGGED", TRIAGE_SCHEME, FLAGGED),
    NOT_FLAGGED: hd.sr.CodedConcept("NOT_FLAGGED", TRIAGE_SCHEME, NOT_FLAGGED),
    NEEDS_REVIEW: hd.sr.CodedConcept("NEEDS_REVIEW", TRIAGE_SCHEME, NEEDS_REVIEW),
}
PRESENCE_CODES = {FLAGGED: PRESENT, NOT_FLAGGED: ABSENT, NEEDS_REVIEW: UNDETERMINED}
DISCLAIMER = "Prioritisation aid, not a diagnosis: every film is still read by a clinician."


def _judged(prediction: Prediction | Judgement) -> bool:
    return getattr(prediction, "assessable", True) is not False


def triage_text(prediction: Prediction | Judgement) -> str:
    """The triage outcome in the worklist's words (app/services/triage.py)."""
    return decision(_judged(prediction), prediction.flagged).text


# Code Values are SH, at most 16 characters (PS3.5 6.2): the reasons whose names are longer
# get a short code of their own rather than a cut one ("NOT_FOR_PRESENTA").
SHORT_CODES = {"outside_intended_age": "OUTSIDE_AGE", "not_chest_radiograph": "NOT_CHEST_CLASS",
               "not_for_presentation": "FOR_PROCESSING"}


def reason_code(reason: str) -> hd.sr.CodedConcept:
    """An assessability reason (app/contract/assessability.py) as a private code: its code
    in capitals (SH, at most 16: SHORT_CODES for longer names), its first sentence as the
    meaning (LO, at most 64)."""
    meaning = REASONS.get(reason, reason.replace("_", " ")).split(";")[0].split(" (")[0]
    code = SHORT_CODES.get(reason, reason.upper()[:16])
    return hd.sr.CodedConcept(code, TRIAGE_SCHEME, meaning.rstrip(".")[:64])


# Draws a film's heat map at delivery: (the judgement, the (h, w, C) uint8 model input) ->
# the (h, w) map in 0-1, or None when the model that made the judgement cannot draw one
# now (not served any more, or a card without an explanation).
Explainer = Callable[[Judgement, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class ResultBuilder:
    """The results of scored films: `recipe` at once (the ingest, app/dicom/ingest.py's
    ResultsBuilder), `build` when they are delivered (app/dicom/delivery.py); a secondary
    capture beside the SR when `secondary_capture` is on, with the heat map `explainer`
    draws from the recipe's model input (None: no map)."""

    secondary_capture: bool = True
    explainer: Explainer | None = field(default=None, compare=False)

    @property
    def needs_display(self) -> bool:
        return self.secondary_capture

    def warm_up(self) -> None:
        """Build one throw-away SR, so the first film does not pay highdicom's one-time
        load of the standard's tables (0.7 s on the 2-core machine). Call it at start-up,
        beside the model's warm-up."""
        header = Dataset()
        header.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        header.SOPInstanceUID = header.StudyInstanceUID = generate_uid()
        header.SeriesInstanceUID = generate_uid()
        header.Modality, header.Rows, header.Columns = "CR", 1, 1
        judgement = Judgement(0.5, 0.5, False, (), "warm-up", "0", datetime.now(UTC), "")
        self.build(Recipe.of(sanitise(header).dataset, judgement, None))

    def recipe(self, source: Dataset, prediction: Prediction,
               made_at: datetime | None = None) -> Recipe:
        """What the delivery queue keeps to build the results of `prediction` on the film
        `source` (its header is enough), made at `made_at` (now). Raises ResultsNotMade
        (app/dicom/failures.py) when the film's identity cannot be carried as received."""
        header = sanitise(source)
        if header.repairs:
            log.info("%s: results made from a repaired header: %s",
                     header.dataset.SOPInstanceUID, "; ".join(map(str, header.repairs)))
        display = prediction.display if self.secondary_capture else None
        return Recipe.of(header.dataset, Judgement.of(prediction, made_at or datetime.now(UTC)),
                         display)

    def build(self, recipe: Recipe) -> tuple[Dataset, ...]:
        """The SR, and the secondary capture when the recipe holds its pixels (with the heat
        map drawn now from its model input, for a film the model judged); the same objects
        every time for the same recipe and model."""
        report = structured_report(recipe.header, recipe.judgement)
        if recipe.display is None:
            return (report,)
        recipe = recipe.with_heat(self.heat(recipe))
        assert recipe.display is not None
        return report, secondary_capture(recipe.header, recipe.judgement, recipe.display)

    def heat(self, recipe: Recipe) -> np.ndarray | None:
        """The heat map to draw on the recipe's secondary capture, drawn now from its model
        input by the explainer; None when it has one already, or gets none."""
        display = recipe.display
        if display is None or display.heat is not None or display.model_input is None \
                or self.explainer is None or not recipe.judgement.assessable:
            return None
        return self.explainer(recipe.judgement, display.model_input)

    def build_job(self, parts: Sequence[bytes]) -> tuple[Dataset, ...]:
        """A delivery job's results (app/dicom/delivery.py Build): built from its recipe;
        a job queued before recipes holds its Part 10 instances, sent as they are."""
        if len(parts) == 1 and is_recipe(parts[0]):
            return self.build(Recipe.decode(parts[0]))
        return tuple(pydicom.dcmread(io.BytesIO(part)) for part in parts)


def structured_report(header: Dataset, judgement: Judgement) -> hd.sr.ComprehensiveSR:
    """The TID 1500 report of `judgement` on the film whose sanitised header is `header`."""
    evidence = copy.deepcopy(header)
    outcome = triage_text(judgement)
    algorithm = hd.sr.AlgorithmIdentification(
        name=judgement.model_name, version=judgement.model_version,
        parameters=[f"operating point {judgement.threshold:.6g}: {judgement.operating_point}"],
        manufacturer=MANUFACTURER)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid(header, judgement, "tracking"), identifier="pneumonia triage"),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        # A film the model cannot judge carries no probability: its raw output means
        # nothing clinically and must not reach the viewer as a measurement.
        measurements=[
            *([hd.sr.Measurement(name=TRIAGE_SCORE, value=judgement.triage_score,
                                 unit=SCORE_UNIT, algorithm_id=algorithm),
               hd.sr.Measurement(name=PROBABILITY, value=judgement.probability,
                                 unit=PROBABILITY_UNIT, algorithm_id=algorithm)]
              if _judged(judgement) else []),
            # Its algorithm too: a viewer that reads every measurement's content (OHIF's
            # SR viewport) found none under this one.
            hd.sr.Measurement(name=OPERATING_POINT, value=judgement.threshold,
                              unit=PROBABILITY_UNIT, algorithm_id=algorithm)],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=PRESENCE, value=PRESENCE_CODES[outcome]),
            hd.sr.QualitativeEvaluation(name=TRIAGE_OUTCOME, value=TRIAGE_CODES[outcome]),
            *(hd.sr.QualitativeEvaluation(name=NOT_ASSESSED_BECAUSE, value=reason_code(r))
              for r in judgement.reasons)],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(evidence)])
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[MANUFACTURER, judgement.model_name]),
            name=judgement.model_name, manufacturer_name=MANUFACTURER,
            model_name=_model_name(judgement)))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=CHEST_IMAGING, imaging_measurements=[group],
        # TID 1603's descriptors of a radiograph need these; without them the source is
        # referenced by the group and the evidence sequence only.
        referenced_images=[evidence] if _library_ready(evidence) else None)
    when = _local(judgement)
    sr = hd.sr.ComprehensiveSR(
        evidence=[evidence], content=report,
        series_instance_uid=_series_uid(header, "SR"), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid(header, judgement, "SR"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=SR_SERIES_DESCRIPTION, transfer_syntax_uid=ExplicitVRLittleEndian,
        coding_schemes=[CODING_SCHEME], content_date=when.date(), content_time=when.time(),
        specific_character_set=None, **_equipment(judgement))
    _finish(sr, header, judgement)
    return sr


def secondary_capture(header: Dataset, judgement: Judgement,
                      display: Display) -> hd.sc.SCImage:
    """The film as the pipeline kept it for display with the triage result written above
    it, and its heat map laid over it when it has one: (h, w, 3) RGB."""
    evidence = copy.deepcopy(header)
    pixels = burn_in(display, judgement)
    orientation = evidence.get("PatientOrientation")
    when = _local(judgement)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=evidence, pixel_array=pixels, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT",
        # highdicom needs one for a patient image; replaced below by the source's own value,
        # or left empty (Type 2) rather than guessed.
        patient_orientation=("L", "F"),
        series_instance_uid=_series_uid(header, "SC"), series_number=SC_SERIES_NUMBER,
        sop_instance_uid=_uid(header, judgement, "SC"), instance_number=1,
        manufacturer=MANUFACTURER, series_description=SC_SERIES_DESCRIPTION,
        transfer_syntax_uid=ExplicitVRLittleEndian, content_date=when.date(),
        content_time=when.time(), specific_character_set=None, **_equipment(judgement))
    sc.PatientOrientation = orientation if orientation else None
    # What the film shows, so that a viewer knows the body part; another term (a source's
    # typo, a part dciodvfy does not know) is left out. Laterality (Type 2C) only where the
    # body part is not the chest, which is unpaired: the source's, or empty (unknown).
    if evidence.get("BodyPartExamined") == "CHEST":
        sc.BodyPartExamined = "CHEST"
    else:
        sc.Laterality = evidence.get("Laterality") or None
    sc.BurnedInAnnotation = "YES"
    sc.ConversionType = "WSD"  # made by a workstation, not digitised
    sc.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    sc.SecondaryCaptureDeviceManufacturerModelName = _model_name(judgement)
    sc.SecondaryCaptureDeviceSoftwareVersions = _software_versions(judgement)
    sc.DateOfSecondaryCapture = when.strftime("%Y%m%d")
    sc.TimeOfSecondaryCapture = when.strftime("%H%M%S")
    sc.DerivationDescription = f"{triage_text(judgement)}; {DISCLAIMER}"[:1024]
    sc.SourceImageSequence = [_reference(evidence)]
    _finish(sc, header, judgement)
    return sc


def burn_in(display: Display, prediction: Prediction | Judgement) -> np.ndarray:
    """The film ((H, W) uint8) in RGB with the heat map over it and a band of text above:
    (h, W, 3) uint8, at the film's display size (at most 512 px a side: pipeline's
    HEATMAP_SIZE), its lines wrapped to that width. Never scaled up: a 224 px film's
    capture was 957 x 768 x 3 (2.2 MB) at a minimum width of 768 px, for text alone."""
    image = Image.fromarray(display.film).convert("RGB")
    if display.heat is not None:
        overlay = heat_layer(display.heat, image.size).convert("RGBA")
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    lines = _lines(prediction, heatmap=display.heat is not None,
                   heat_warning=display.heat_warning)
    size = max(_MIN_FONT_PX, image.width // 36)
    font = _font(size)
    step, margin = int(size * 1.3), size // 2
    # One line each: a line break (in a card's model name) would draw over the next line.
    wrapped = [(part, colour) for text, colour in lines
               for part in _wrap(" ".join(text.splitlines()), font,
                                 image.width - 2 * margin)]
    band = len(wrapped) * step + 2 * margin
    canvas = Image.new("RGB", (image.width, image.height + band), "black")
    canvas.paste(image, (0, band))
    for row, (text, colour) in enumerate(wrapped):
        mask, left, top = _glyphs(text, size)
        canvas.paste(colour, (margin + left, margin + row * step + top), mask)
    return np.asarray(canvas)


_MIN_FONT_PX = 11  # legible in a viewer at 1:1 and below


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font at `size` px, loaded once (loading it cost 3 ms a film)."""
    return ImageFont.load_default(size=size)


# Most lines are the same on every film (the disclaimer, the model, the heatmap's legend)
# and the rest take a few hundred values: each line's wrap and its rendered glyphs are
# kept, not measured and drawn again (4 of a 224 px film's 7 ms of burn-in).
@lru_cache(maxsize=512)
def _glyphs(text: str, size: int) -> tuple[Image.Image, int, int]:
    """`text` in the font of `size` px as an "L" coverage mask, with where its corner lies
    from the point it is drawn at ((x, y) of ImageDraw.text, whose glyphs may start left of
    or above it: a "j"): pasting a colour through it there is drawing the text."""
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    left, top = min(left, 0), min(top, 0)
    mask = Image.new("L", (max(right - left, 1), max(bottom - top, 1)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font)
    return mask, left, top


@lru_cache(maxsize=512)
def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
          width: int) -> tuple[str, ...]:
    """`text` in lines of at most `width` px in `font` (words kept whole; a word longer
    than the width on a line of its own)."""
    if font.getlength(text) <= width:
        return (text,)
    average = max(font.getlength(text) / len(text), 1.0)
    columns = max(int(width / average), 8)
    while True:
        lines = textwrap.wrap(text, columns, break_long_words=False) or [text]
        if columns <= 8 or all(font.getlength(line) <= width for line in lines):
            return tuple(lines)
        columns -= 2


def _lines(prediction: Prediction | Judgement, heatmap: bool = False,
           heat_warning: str | None = None) -> list[tuple[str, str]]:
    outcome = triage_text(prediction)
    colour = {FLAGGED: "#ffb000", NOT_FLAGGED: "white", NEEDS_REVIEW: "#7fd0ff"}[outcome]
    lines = [(f"AI triage for pneumonia: {outcome}", colour),
             *(_score_lines(prediction) if _judged(prediction) else []),
             (f"model {prediction.model_name} v{prediction.model_version}", "white"),
             (DISCLAIMER, "white")]
    if heatmap:
        lines.append(("Heatmap: the regions that moved the score most.", "white"))
    if heat_warning:  # a map mostly outside the body says so (app/contract/body.py)
        first, _, rest = heat_warning.partition(": ")  # two lines: the band's width
        lines += [(f"{first}:", "#ffb000"), (rest, "#ffb000")]
    return lines


def _score_lines(prediction: Prediction | Judgement) -> list[tuple[str, str]]:
    point = prediction.operating_point if isinstance(prediction, Judgement) \
        else prediction.point.text
    named = "" if point == CARD_TEXT else f" ({point})"  # the card's goes without saying
    return [(f"triage score {prediction.triage_score_text}/100 (flagged at "
             f"{FLAGGED_FROM_TEXT} and above)", "white"),
            (f"calibrated probability {percent(prediction.probability)}, operating point "
             f"{percent(prediction.threshold)}{named}", "white")]


def _model_name(judgement: Judgement) -> str:
    return f"{judgement.model_name} v{judgement.model_version}"[:64]


def _software_versions(judgement: Judgement) -> list[str]:
    return [f"{MANUFACTURER} {judgement.software}"[:64], _model_name(judgement)]


def _equipment(judgement: Judgement) -> dict:
    """The node as the device that made the object (General Equipment: Type 3 at the top
    level, where viewers and PACS look for it)."""
    return {"manufacturer_model_name": _model_name(judgement),
            "software_versions": _software_versions(judgement)}


def _local(judgement: Judgement) -> datetime:
    """When the judgement was made, in the node's time zone (DICOM dates are local), to
    the microsecond: the results' content and creation dates, the same at every build."""
    return judgement.made_at.astimezone()


def _finish(result: Dataset, header: Dataset, judgement: Judgement) -> None:
    """What every result gets after highdicom: the source's further identifiers, its
    character set, and creation dates fixed by the recipe (highdicom stamps the clock)."""
    for keyword in _ALSO_COPIED:
        if keyword in header:
            result[keyword] = copy.deepcopy(header[keyword])
    if "SpecificCharacterSet" in header:
        result.SpecificCharacterSet = copy.deepcopy(header.SpecificCharacterSet)
    when = _local(judgement)
    result.InstanceCreationDate = when.strftime("%Y%m%d")
    result.InstanceCreationTime = when.strftime("%H%M%S.%f")
    result.TimezoneOffsetFromUTC = when.strftime("%z")
    for item in result.get("ContributingEquipmentSequence", []):  # highdicom, as a library
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S.%f%z")


# Further patient and study identifiers a PACS matches on, copied when present.
_ALSO_COPIED = ("IssuerOfPatientID", "StudyDescription", "PatientAge")


def _reference(evidence: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = evidence.SOPClassUID
    item.ReferencedSOPInstanceUID = evidence.SOPInstanceUID
    return item


def _library_ready(evidence: Dataset) -> bool:
    return all(keyword in evidence for keyword in (
        "PatientOrientation", "ImagerPixelSpacing", "Modality", "Rows", "Columns"))


def _series_uid(header: Dataset, kind: str) -> str:
    """One series per study and kind of result: every film's SR of a study in one."""
    return generate_uid(entropy_srcs=[str(header.StudyInstanceUID), MANUFACTURER, kind])


def _uid(header: Dataset, judgement: Judgement, kind: str) -> str:
    return generate_uid(entropy_srcs=[
        str(header.SOPInstanceUID), judgement.model_name, str(judgement.model_version),
        repr(judgement.threshold), kind])
