"""What goes back to the PACS for one scored film: a Comprehensive SR and a secondary capture.

The SR follows TID 1500 (Measurement Report) as the IHE AI Results profile uses it: one
measurement group whose finding type is pneumonia (SNOMED CT 233604007), holding the
probability and the operating point as numeric measurements (UCUM `{probability}`), the
triage outcome as a qualitative evaluation, the algorithm's name and version (Algorithm
Identification), and a reference to the source image. The secondary capture is the film
with the result (and the heatmap, when the model draws one) burned in, for viewers that do
not render SR.

Both are in the source's study (its Study Instance UID, and its patient and study modules
copied: these identifiers go back to the PACS they came from and nowhere else), each in a
series of its own kind, with UIDs derived from the source film, model and operating point:
a result sent twice is one instance at the PACS. The wording is triage, never a diagnosis.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from app.contract.triage_score import FLAGGED_FROM_TEXT
from app.services.display import percent
from app.services.pipeline import Display, Prediction, heat_layer
from app.services.triage import Decision, decision

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
# The triage outcome has no standard code: a private scheme, as PS3.16 Section 8 allows
# ("99" prefix), with the wording the worklist uses.
TRIAGE_SCHEME = "99PNEUTRIAGE"
FLAGGED = Decision.FLAGGED.text
NOT_FLAGGED = Decision.NOT_FLAGGED.text
NEEDS_REVIEW = Decision.NEEDS_HUMAN_LOOK.text
# The triage score (app/services/triage.py): the probability rescaled so that the operating
# point is 0.5 for every model; the number a viewer should show beside the outcome.
TRIAGE_SCORE = hd.sr.CodedConcept("TRIAGE_SCORE", TRIAGE_SCHEME, "Triage score")
SCORE_UNIT = hd.sr.CodedConcept("{score}", "UCUM", "score")
TRIAGE_CODES = {
    FLAGGED: hd.sr.CodedConcept("FLAGGED", TRIAGE_SCHEME, FLAGGED),
    NOT_FLAGGED: hd.sr.CodedConcept("NOT_FLAGGED", TRIAGE_SCHEME, NOT_FLAGGED),
    NEEDS_REVIEW: hd.sr.CodedConcept("NEEDS_REVIEW", TRIAGE_SCHEME, NEEDS_REVIEW),
}
DISCLAIMER = "Prioritisation aid, not a diagnosis: every film is still read by a clinician."

# Type 2 elements of the Patient and General Study modules: highdicom copies them from the
# evidence and needs them present (empty when the source has none).
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
          "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
# Further patient and study identifiers a PACS matches on, copied when present.
_ALSO_COPIED = ("IssuerOfPatientID", "StudyDescription", "PatientAge")


def _judged(prediction: Prediction) -> bool:
    return getattr(prediction, "assessable", True) is not False


def triage_text(prediction: Prediction) -> str:
    """The triage outcome in the worklist's words (app/services/triage.py)."""
    return decision(_judged(prediction), prediction.flagged).text


@dataclass(frozen=True)
class ResultBuilder:
    """The results for one scored film (app/dicom/ingest.py's ResultsBuilder): the SR, and
    the secondary capture when `secondary_capture` is on."""

    secondary_capture: bool = True

    @property
    def needs_display(self) -> bool:
        return self.secondary_capture

    def warm_up(self) -> None:
        """Build one throw-away SR, so the first film does not pay highdicom's one-time
        load of the standard's tables (0.7 s on the 2-core machine). Call it at start-up,
        beside the model's warm-up."""
        from app.services.film import ImageFacts

        source = Dataset()
        source.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        source.SOPInstanceUID = source.StudyInstanceUID = generate_uid()
        source.SeriesInstanceUID = generate_uid()
        source.Modality, source.Rows, source.Columns = "CR", 1, 1
        facts = ImageFacts(1, 1, "DICOM", "MONOCHROME2", None)
        structured_report(source, Prediction(0.5, "warm-up", False, 0.5, "warm-up", 0, facts,
                                             0.0))

    def __call__(self, source: Dataset, prediction: Prediction) -> tuple[Dataset, ...]:
        """The SR, and the secondary capture when on and the prediction kept its display
        pixels (`Prediction.display`)."""
        report = structured_report(source, prediction)
        if not self.secondary_capture or prediction.display is None:
            return (report,)
        return report, secondary_capture(source, prediction, prediction.display)


def structured_report(source: Dataset, prediction: Prediction) -> hd.sr.ComprehensiveSR:
    """The TID 1500 report of `prediction` on the film `source` (its header is enough)."""
    evidence = evidence_header(source)
    algorithm = hd.sr.AlgorithmIdentification(
        name=prediction.model_name, version=str(prediction.model_version),
        parameters=[f"operating point {prediction.threshold:.6g}"], manufacturer=MANUFACTURER)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid(source, prediction, "tracking"), identifier="pneumonia triage"),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        # A film the model cannot judge carries no probability: its raw output means
        # nothing clinically and must not reach the viewer as a measurement.
        measurements=[
            *([hd.sr.Measurement(name=TRIAGE_SCORE,
                                 value=prediction.triage_score,
                                 unit=SCORE_UNIT, algorithm_id=algorithm),
               hd.sr.Measurement(name=PROBABILITY, value=prediction.probability,
                                 unit=PROBABILITY_UNIT, algorithm_id=algorithm)]
              if _judged(prediction) else []),
            hd.sr.Measurement(name=OPERATING_POINT, value=prediction.threshold,
                              unit=PROBABILITY_UNIT)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=PNEUMONIA, value=TRIAGE_CODES[triage_text(prediction)])],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(evidence)])
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[MANUFACTURER, prediction.model_name]),
            name=prediction.model_name, manufacturer_name=MANUFACTURER,
            model_name=f"{prediction.model_name} v{prediction.model_version}"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=CHEST_IMAGING, imaging_measurements=[group],
        # TID 1603's descriptors of a radiograph need these two; without them the source
        # is referenced by the group and the evidence sequence only.
        referenced_images=[evidence] if _library_ready(evidence) else None)
    sr = hd.sr.ComprehensiveSR(
        evidence=[evidence], content=report,
        series_instance_uid=_series_uid(source, "SR"), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid(source, prediction, "SR"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=SR_SERIES_DESCRIPTION, transfer_syntax_uid=ExplicitVRLittleEndian)
    _copy_identifiers(evidence, sr)
    return sr


def secondary_capture(source: Dataset, prediction: Prediction,
                      display: Display) -> hd.sc.SCImage:
    """The film as the pipeline kept it for display with the triage result written above
    it, and its heat map laid over it when it has one: (h, w, 3) RGB."""
    evidence = evidence_header(source)
    pixels = burn_in(display, prediction)
    orientation = evidence.get("PatientOrientation")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=evidence, pixel_array=pixels, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT",
        # highdicom needs one for a patient image; replaced below by the source's own value,
        # or left empty (Type 2) rather than guessed.
        patient_orientation=("L", "F"),
        series_instance_uid=_series_uid(source, "SC"), series_number=SC_SERIES_NUMBER,
        sop_instance_uid=_uid(source, prediction, "SC"), instance_number=1,
        manufacturer=MANUFACTURER, series_description=SC_SERIES_DESCRIPTION,
        transfer_syntax_uid=ExplicitVRLittleEndian)
    sc.PatientOrientation = orientation if orientation else None
    # What the film shows, so that a viewer (and dciodvfy's Laterality rule: a chest is
    # not a paired structure) knows the body part.
    for keyword in ("BodyPartExamined", "Laterality"):
        if evidence.get(keyword):
            sc[keyword] = copy.deepcopy(evidence[keyword])
    sc.BurnedInAnnotation = "YES"
    sc.ConversionType = "WSD"  # made by a workstation, not digitised
    sc.DerivationDescription = f"{triage_text(prediction)}; {DISCLAIMER}"[:1024]
    sc.SourceImageSequence = [_reference(evidence)]
    _copy_identifiers(evidence, sc)
    return sc


def burn_in(display: Display, prediction: Prediction) -> np.ndarray:
    """The film ((H, W) uint8) in RGB with the heat map over it and a band of text above:
    (h, w, 3) uint8, at least _MIN_WIDTH px wide so that the text is legible."""
    image = Image.fromarray(display.film).convert("RGB")
    if display.heat is not None:
        overlay = heat_layer(display.heat, image.size).convert("RGBA")
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    if image.width < _MIN_WIDTH:
        scale = _MIN_WIDTH / image.width
        image = image.resize((_MIN_WIDTH, round(image.height * scale)),
                             Image.Resampling.BILINEAR)
    lines = _lines(prediction, heatmap=display.heat is not None)
    size = max(12, image.width // 36)
    font = ImageFont.load_default(size=size)
    band = (len(lines) + 1) * int(size * 1.3)
    canvas = Image.new("RGB", (image.width, image.height + band), "black")
    canvas.paste(image, (0, band))
    draw = ImageDraw.Draw(canvas)
    for row, (text, colour) in enumerate(lines):
        draw.text((size // 2, size // 2 + row * int(size * 1.3)), text, fill=colour, font=font)
    return np.asarray(canvas)


_MIN_WIDTH = 768


def _lines(prediction: Prediction, heatmap: bool = False) -> list[tuple[str, str]]:
    outcome = triage_text(prediction)
    colour = {FLAGGED: "#ffb000", NOT_FLAGGED: "white", NEEDS_REVIEW: "#7fd0ff"}[outcome]
    lines = [(f"AI triage for pneumonia: {outcome}", colour),
             *(_score_lines(prediction) if _judged(prediction) else []),
             (f"model {prediction.model_name} v{prediction.model_version}", "white"),
             (DISCLAIMER, "white")]
    if heatmap:
        lines.append(("Heatmap: the regions that moved the score most.", "white"))
    return lines


def _score_lines(prediction: Prediction) -> list[tuple[str, str]]:
    return [(f"triage score {prediction.triage_score_text}/100 (flagged at "
             f"{FLAGGED_FROM_TEXT} and above)", "white"),
            (f"calibrated probability {percent(prediction.probability)}, operating point "
             f"{percent(prediction.threshold)}", "white")]


def evidence_header(source: Dataset) -> Dataset:
    """`source`'s header without its pixels, its Type 2 patient and study elements present."""
    header = copy.copy(source)
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in header:
            delattr(header, keyword)
    for keyword in _TYPE2:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def _copy_identifiers(evidence: Dataset, target: Dataset) -> None:
    for keyword in _ALSO_COPIED:
        if keyword in evidence:
            target[keyword] = copy.deepcopy(evidence[keyword])


def _reference(evidence: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = evidence.SOPClassUID
    item.ReferencedSOPInstanceUID = evidence.SOPInstanceUID
    return item


def _library_ready(evidence: Dataset) -> bool:
    return "PatientOrientation" in evidence and "ImagerPixelSpacing" in evidence \
        and len(evidence.PatientOrientation) == 2


def _series_uid(source: Dataset, kind: str) -> str:
    """One series per study and kind of result: every film's SR of a study in one."""
    return generate_uid(entropy_srcs=[str(source.StudyInstanceUID), MANUFACTURER, kind])


def _uid(source: Dataset, prediction: Prediction, kind: str) -> str:
    return generate_uid(entropy_srcs=[
        str(source.SOPInstanceUID), prediction.model_name, str(prediction.model_version),
        repr(prediction.threshold), kind])

