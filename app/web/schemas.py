"""Request/response classes of the JSON API (not to be confused with models/, the ML models)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.contract.card import ModelCard
from app.contract.site import OperatingPoint
from app.contract.triage_score import score_text
from app.dicom.failures import ResultsFailure
from app.services.display import percent
from app.services.drift import DriftState
from app.services.film import ImageFacts
from app.services.intake import StoredFile, StoredUpload
from app.services.pipeline import FileResult, Prediction
from app.services.plain import plain_notes, reason_sentence
from app.services.triage import Decision, decision, probability_note
from app.services.worklist import (
    GROUP_DECISIONS,
    age_band,
    entry_triage_score,
    study_label,
    viewer_link,
)
from app.store import (
    AuditRecord,
    FilmResult,
    Finding,
    Page,
    Read,
    Status,
    StudyEntry,
    Undelivered,
)
from app.web.errors import describe


class DicomSummary(BaseModel):
    """The DICOM tags that drove the decision to score the file. No patient identity."""

    modality: str = Field(description="Modality (0008,0060): CR, DX or DR are scored")
    view_position: str | None = Field(description="View Position (0018,5101): AP/PA scored, "
                                                  "lateral refused, others not assessable")
    body_part: str | None = Field(description="Body Part Examined (0018,0015)")
    study_date: str | None = Field(description="Study Date (0008,0020), YYYYMMDD")
    photometric: str = Field(description="MONOCHROME1 is inverted before scoring")
    transfer_syntax: str
    bits_stored: int
    window: str = Field(description="VOI LUT, the window applied, or the data's own range")


class ImageInfo(BaseModel):
    width: int = Field(description="Width in pixels, upright (after EXIF orientation)")
    height: int = Field(description="Height in pixels, upright")
    format: str = Field(description="JPEG, PNG, MPO (a phone's multi-picture JPEG) or DICOM")
    mode: str = Field(description="Pillow mode of the file (L, I;16, RGB, CMYK, ...); "
                                  "for DICOM its photometric interpretation")
    dicom: DicomSummary | None = None
    borders_cropped: list[int] = Field(
        default=[0, 0, 0, 0], min_length=4, max_length=4,
        description="Pixels of the upright film cut from its top, left, bottom and right as "
                    "uniform borders (black, white or collimation) before scoring, for models "
                    "of preprocessing version 3 and later; all 0: the whole film was scored")

    @classmethod
    def of(cls, image: ImageFacts) -> ImageInfo:
        dicom = image.dicom
        return cls(width=image.width, height=image.height, format=image.format, mode=image.mode,
                   borders_cropped=list(image.borders_cropped),
                   dicom=None if dicom is None else DicomSummary(
                       modality=dicom.modality, view_position=dicom.view_position,
                       body_part=dicom.body_part, study_date=dicom.study_date,
                       photometric=dicom.photometric, transfer_syntax=dicom.transfer_syntax,
                       bits_stored=dicom.bits_stored, window=dicom.window))


class HeatmapInfo(BaseModel):
    """Occlusion sensitivity of the pneumonia score: the film and a transparent overlay."""

    film: str = Field(description="data: URI of the film as a PNG, longest side <= 512 px")
    overlay: str = Field(description="data: URI of an RGBA PNG to lay over the film")
    width: int
    height: int
    note: str = Field(description="What the map can and cannot show (the model card's)")
    outside_body: float = Field(ge=0, le=1, description="Share of the map's mass outside the "
                                "patient's body, found on the film itself")
    warning: str | None = Field(default=None, description="Said when the map points mostly "
                                "(over half) outside the body: it then does not show what "
                                "the model read in the lungs")


class PlainWarning(BaseModel):
    """A warning as a page shows it first (app/services/plain.py)."""

    text: str = Field(description="The warning in plain words, naming no DICOM tag")
    technical: str | None = Field(default=None, description="The warning as the server wrote "
                                  "it (tags, numbers, values), when the text rewrote it")


def _plain(reasons: list[str], warnings: list[str]) -> dict[str, Any]:
    """reasons_text and warnings_text of one film."""
    return {"reasons_text": [reason_sentence(code) for code in reasons],
            "warnings_text": [PlainWarning(text=n.text, technical=n.technical)
                              for n in plain_notes(warnings, reasons)]}


class ModelInfo(BaseModel):
    name: str
    version: int


class OperatingPointInfo(BaseModel):
    """The operating point a film was judged at and where it comes from (the one rule:
    app/contract/site.py)."""

    threshold: float = Field(ge=0, le=1)
    source: Literal["card", "site", "setting"] = Field(
        description="card: the model card's; site: the site's adopted local validation "
                    "(`pneumonia-triage site adopt`); setting: PNEUMONIA_THRESHOLD")
    text: str = Field(description="How every page says it, e.g. 'site operating point, "
                                  "validated on 624 films on 2026-12-06'")
    validated_films: int | None = Field(default=None, description="site: films validated")
    validated_on: date | None = Field(default=None, description="site: the validation's "
                                                                "date (UTC)")

    @classmethod
    def of(cls, point: OperatingPoint) -> OperatingPointInfo:
        return cls(threshold=point.threshold, source=point.source, text=point.text,
                   validated_films=point.validated_films, validated_on=point.validated_on)


_TRIAGE_SCORE = ("The probability rescaled so that the model's operating point is 0.5 for "
                 "every model (torchxrayvision's op_norm): flagged exactly when >= 0.5; null "
                 "when the film is not assessable")


class PredictionResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "flagged": True,
        "decision": "flagged",
        "decision_text": "flagged for priority read",
        "triage_score": 0.9731,
        "triage_score_text": "97",
        "probability": 0.9731,
        "probability_text": "97.3%",
        "probability_note": "Calibrated (temperature scaling) on the validation films, 74% "
                            "of them with pneumonia: a chance among films like those, not for "
                            "a patient in another population.",
        "label": "PNEUMONIA",
        "assessable": True,
        "reasons": [],
        "unvalidated_probability": None,
        "threshold": 0.5,
        "operating_point": {"threshold": 0.5, "source": "card",
                            "text": "the model card's operating point",
                            "validated_films": None, "validated_on": None},
        "model": {"name": "pneumonia", "version": 1},
        "image": {"width": 1336, "height": 840, "format": "JPEG", "mode": "L", "dicom": None},
        "warnings": [],
        "calibrated": True,
        "heatmap": None,
        "elapsed_ms": 21.4,
        "note": "Prioritisation aid, not a diagnosis.",
    }]})

    flagged: bool = Field(description="At or above the model's operating point: a priority "
                                      "read; never for a film that is not assessable")
    decision: Decision = Field(description="The triage outcome: flagged (a priority read), "
                                           "not_flagged, or needs_human_look (not assessable)")
    decision_text: str = Field(description="The decision as people read it: 'flagged for "
                                           "priority read', 'not flagged', 'needs a human "
                                           "look'")
    triage_score: float | None = Field(ge=0, le=1, description=_TRIAGE_SCORE)
    triage_score_text: str | None = Field(description="The triage score out of 100 as the page "
                                                      "shows it (cut, so 49 is never flagged)")
    probability: float | None = Field(ge=0, le=1, description="Model probability of "
                                      "pneumonia; null when the film is not assessable")
    probability_text: str | None = Field(description="The probability as people are shown "
                                                     "it: one decimal, never 100.0% or 0.0%")
    probability_note: str = Field(description="What the probability is calibrated to")
    label: str | None = Field(description="PNEUMONIA when probability >= threshold, else "
                                          "NORMAL; null when the film is not assessable")
    assessable: bool = Field(description="false: the model cannot judge this film (see "
                                         "reasons); it has no label and needs a human look")
    reasons: list[str] = Field(description="Why it is not assessable: inverted, rotated, "
                                           "not_chest, not_frontal, unlike_training, too_small, "
                                           "no_contrast; outside the model card's population: "
                                           "outside_intended_age, not_chest_radiograph, "
                                           "not_for_presentation")
    reasons_text: list[str] = Field(default=[], description="Each reason's sentence for a "
                                    "person, in the order of reasons")
    unvalidated_probability: float | None = Field(
        default=None, ge=0, le=1, description="Only for a film that is not assessable: the "
        "model's raw output on it, which means nothing clinically; for audit, never a result")
    threshold: float = Field(ge=0, le=1, description="Decision threshold applied")
    operating_point: OperatingPointInfo = Field(description="The threshold applied and "
                                                            "where it comes from")
    model: ModelInfo
    image: ImageInfo
    warnings: list[str] = Field(description="Reasons to look twice, for a person: the input "
                                            "guard, the detector, the DICOM tags and how the "
                                            "file was read")
    warnings_text: list[PlainWarning] = Field(default=[], description="The warnings as a "
                                              "clinician reads them first: plain words, the "
                                              "technical text beside them; a warning that "
                                              "repeats a reason's sentence left out")
    calibrated: bool = Field(description="The probability is calibrated (the model card "
                                         "says how)")
    heatmap: HeatmapInfo | None = Field(default=None, description="With ?explain=true")
    elapsed_ms: float = Field(description="Server-side time: decode, preprocess, inference")
    note: str = Field(description="The model card's disclaimer")

    @classmethod
    def from_prediction(cls, p: Prediction, card: ModelCard) -> PredictionResponse:
        judged = p.assessable
        outcome = decision(judged, p.flagged)
        score, score_shown = p.triage_score, p.triage_score_text
        return cls(
            flagged=p.flagged, decision=outcome, decision_text=outcome.text,
            triage_score=score, triage_score_text=score_shown,
            probability=p.probability if judged else None,
            probability_text=percent(p.probability) if judged else None,
            probability_note=probability_note(card),
            label=p.label,
            assessable=judged,
            reasons=list(p.reasons),
            unvalidated_probability=None if judged else p.probability,
            threshold=p.threshold, operating_point=OperatingPointInfo.of(p.point),
            model=ModelInfo(name=p.model_name, version=p.model_version),
            image=ImageInfo.of(p.image),
            warnings=list(p.warnings),
            **_plain(list(p.reasons), list(p.warnings)),
            calibrated=card.calibration is not None and card.calibration.inside_model,
            heatmap=None if p.heatmap is None else HeatmapInfo(
                film=p.heatmap.film, overlay=p.heatmap.overlay, width=p.heatmap.width,
                height=p.heatmap.height,
                note=card.explanation.note if card.explanation else "",
                outside_body=round(p.heatmap.outside_body, 4), warning=p.heatmap.warning),
            elapsed_ms=round(p.elapsed_ms, 2),
            note=card.disclaimer,
        )


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "error": "unsupported_format",
        "detail": "GIF images are not supported. Upload a JPEG, PNG or DICOM.",
    }]})

    error: str = Field(description="Short machine-readable code")
    detail: str = Field(description="What went wrong, for a person")


class FileError(ErrorResponse):
    status: int = Field(description="The HTTP status this file alone would have had")


class BatchEntry(BaseModel):
    index: int = Field(description="Position of the file in the upload, from 0")
    filename: str = Field(description="The name the client sent (never logged or stored)")
    decision: Decision | None = Field(default=None, description="flagged, not_flagged or "
                                      "needs_human_look; null: not scored (see error)")
    decision_text: str | None = None
    triage_score: float | None = Field(default=None, ge=0, le=1, description=_TRIAGE_SCORE)
    triage_score_text: str | None = None
    probability: float | None = Field(default=None, ge=0, le=1)
    probability_text: str | None = None
    label: str | None = None
    flagged: bool = Field(default=False, description="label is the positive class")
    assessable: bool | None = Field(default=None, description="false: needs a human look, "
                                                              "no label; null: not scored")
    reasons: list[str] = []
    reasons_text: list[str] = Field(default=[], description="Each reason's sentence")
    unvalidated_probability: float | None = Field(default=None, ge=0, le=1, description=(
        "Only when not assessable: the model's raw output, never a result"))
    image: ImageInfo | None = None
    warnings: list[str] = []
    warnings_text: list[PlainWarning] = Field(default=[], description="The warnings in "
                                              "plain words (see PredictionResponse)")
    thumbnail: str | None = Field(default=None, description="data: URI of a small PNG, "
                                                            "with ?thumbnails=true")
    error: FileError | None = Field(default=None, description="Why this file was not scored")
    operating_point: Literal["card", "site", "setting"] | None = Field(
        default=None, description="Where the threshold it was judged at comes from (the "
                                  "CSV's column); null: not scored")

    @classmethod
    def of(cls, result: FileResult) -> BatchEntry:
        p = result.prediction
        if p is None:
            status, code, message = describe(result.error)
            return cls(index=result.index, filename=result.filename,
                       error=FileError(error=code, detail=message, status=status))
        judged = p.assessable
        outcome = decision(judged, p.flagged)
        score, score_shown = p.triage_score, p.triage_score_text
        return cls(index=result.index, filename=result.filename,
                   decision=outcome, decision_text=outcome.text, triage_score=score,
                   triage_score_text=score_shown,
                   probability=p.probability if judged else None,
                   probability_text=percent(p.probability) if judged else None,
                   label=p.label, flagged=p.flagged, assessable=judged,
                   reasons=list(p.reasons),
                   unvalidated_probability=None if judged else p.probability,
                   image=ImageInfo.of(p.image), warnings=list(p.warnings),
                   **_plain(list(p.reasons), list(p.warnings)),
                   thumbnail=p.thumbnail, operating_point=p.point.source)


class BatchResponse(BaseModel):
    model: ModelInfo
    threshold: float
    count: int
    scored: int = Field(description="Films the model judged (assessable)")
    flagged: int
    needs_human_look: int = Field(description="Films read but not assessable: no label")
    results: list[BatchEntry] = Field(description="One entry per file, in upload order")
    not_scored: int = Field(description="Files refused or not read (see their errors)")
    summary: str = Field(description="The counts as the page says them, e.g. '5 files: 2 "
                                     "scored, 1 flagged; 3 not scored'")
    elapsed_ms: float
    note: str


class HealthResponse(BaseModel):
    status: str
    model: ModelInfo | None = Field(default=None, description="The model served, once ready")


class ReadyResponse(HealthResponse):
    warnings: list[str] = Field(default=[], description="Ready, but an operator should know: "
                                "a site profile this server does not apply (another model "
                                "version, or PNEUMONIA_THRESHOLD over it)")


class ModelDriftInfo(BaseModel):
    model: str
    version: int
    films: int = Field(description="Films in the model's window now")
    judged: bool = Field(description="The window holds enough films for a PSI to mean "
                                     "something; until then `psi` is empty")
    psi: dict[str, float] = Field(description="Population stability index against the "
                                              "validation films, by statistic: score, "
                                              "guard_distance, brightness, contrast")
    drifted: list[str] = Field(description="The statistics whose PSI is over the threshold")


class DriftResponse(BaseModel):
    drifted: bool = Field(description="Some model's recent films have drifted: the pages "
                                      "show a banner")
    threshold: float
    window: int = Field(description="Films per model compared with the validation films")
    min_films: int
    models: list[ModelDriftInfo]

    @classmethod
    def of(cls, state: DriftState) -> DriftResponse:
        return cls(drifted=state.drifted, threshold=state.threshold, window=state.window,
                   min_films=state.min_films, models=[
                       ModelDriftInfo(model=m.model, version=m.version, films=m.films,
                                      judged=m.films >= state.min_films, psi=m.psi,
                                      drifted=list(m.drifted)) for m in state.models])


class OfferedModel(BaseModel):
    name: str = Field(description="What to pass as ?model=NAME")
    version: int
    description: str
    default: bool = Field(description="Asked when a request names no model")
    threshold: float = Field(description="The card's operating point")
    operating_point: OperatingPointInfo | None = Field(
        default=None, description="The operating point this server applies to it (the "
                                  "card's, the site's adopted one, or PNEUMONIA_THRESHOLD)")
    input: str = Field(description="What the network sees, e.g. '64x64, 3 channels'")
    earlier_versions: list[int] = Field(default=[], description="Earlier versions in the "
                                        "model folder, asked with ?model=NAME/VERSION")

    @classmethod
    def of(cls, card, default: bool, versions: list[int] = (),
           point: OperatingPoint | None = None) -> OfferedModel:
        height, width = card.input_size
        return cls(name=card.name, version=card.version, description=card.description,
                   default=default, threshold=card.threshold,
                   operating_point=None if point is None else OperatingPointInfo.of(point),
                   input=f"{height}x{width}, {card.channels} channel"
                         + ("s" if card.channels > 1 else ""),
                   earlier_versions=[v for v in versions if v < card.version])


class ModelsResponse(BaseModel):
    models: list[OfferedModel]

    @classmethod
    def of(cls, catalog) -> ModelsResponse:
        """The models a loaded catalog offers, the default first (its insertion order)."""
        return cls(models=[OfferedModel.of(m.card, default=m is catalog.default,
                                           versions=catalog.versions.get(m.card.name, []),
                                           point=catalog.operating_point(m))
                           for m in catalog.models.values()])


def multipart_body(field: str, description: str, many: bool) -> dict:
    """The OpenAPI request body of a multipart upload in `field` (the routes read the body
    themselves, so FastAPI cannot describe it)."""
    item = {"type": "string", "format": "binary", "description": description}
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [field],
        "properties": {field: {"type": "array", "items": item} if many else item},
    }}}}


# --- The stored worklist (/worklist/...) -------------------------------------------------

_UID = "1.2.826.0.1.3680043.8.498.10217311520390215393"
_FILM_EXAMPLE = {
    "id": 7, "sop_instance_uid": _UID + ".1.1", "series_instance_uid": _UID + ".1",
    "modality": "DX", "view_position": "PA", "body_part": "CHEST", "source": "upload",
    "received_at": "2025-03-01T08:00:00Z", "scored_at": "2025-03-01T08:00:01Z",
    "model_name": "pneumonia", "model_version": "2", "probability": 0.9731,
    "probability_text": "97.3%", "triage_score": 0.9731, "triage_score_text": "97",
    "threshold": 0.5, "flagged": True, "assessable": True,
    "reasons": [], "warnings": [], "error": None, "thumbnail": None,
}
_ENTRY_EXAMPLE = {
    "id": 3, "study_instance_uid": _UID, "accession_number": "A1001", "patient_age": "004Y",
    "patient_sex": "F", "study_date": "2025-03-01", "study_time": "07:55:00",
    "source": "upload", "received_at": "2025-03-01T08:00:00Z",
    "last_received_at": "2025-03-01T08:00:00Z", "status": "new", "status_by": None,
    "status_at": None, "priority": 0.9731, "priority_text": "97.3%", "triage_score": 0.9731,
    "triage_score_text": "97", "decision": "flagged",
    "decision_text": "flagged for priority read", "flagged": True,
    "group": "flagged", "viewer_url": "https://pacs.example/viewer?StudyInstanceUIDs=" + _UID,
    "films": [_FILM_EXAMPLE],
}


class FilmProblem(BaseModel):
    """Why a stored film was not scored (a CT, a lateral view, a damaged file)."""

    error: str = Field(description="Short machine-readable code")
    detail: str = Field(description="What was wrong, for a person")


class WorklistFilm(BaseModel):
    """One film of a worklist entry and its result."""

    id: int = Field(description="The film's id (its thumbnail: /worklist/films/{id}/thumbnail)")
    sop_instance_uid: str
    series_instance_uid: str | None
    modality: str | None
    view_position: str | None = Field(description="AP, PA, LL, ...; none for an image file")
    body_part: str | None
    source: str = Field(description="'upload', or 'dicom:<calling AE title>'")
    received_at: datetime
    scored_at: datetime | None
    model_name: str | None
    model_version: str | None
    probability: float | None = Field(ge=0, le=1, description="None: not scored, or not "
                                                              "assessable by the model, or "
                                                              "shadow mode")
    probability_text: str | None
    triage_score: float | None = Field(ge=0, le=1, description=_TRIAGE_SCORE)
    triage_score_text: str | None
    threshold: float | None = Field(description="The decision threshold it was scored at")
    flagged: bool | None
    assessable: bool | None = Field(description="The model can judge this film; false puts "
                                                "the study in the 'needs a human look' "
                                                "group; null in shadow mode")
    reasons: list[str] = Field(description="Why not assessable (rotated, not_frontal, ...)")
    warnings: list[str]
    error: FilmProblem | None = None
    results_error: FilmProblem | None = Field(
        default=None, description="Why this film's results (SR and secondary capture) will "
                                  "not reach the PACS (identity, build, queue_full): report "
                                  "it from the PACS by hand. None: on their way or delivered, "
                                  "or no results destination is set")
    thumbnail: str | None = Field(default=None, description="Path of its thumbnail PNG, when "
                                                            "one is stored")
    display: str | None = Field(default=None, description="Path of the film at display size "
                                "as the model saw it (a PNG), kept while thumbnails are")
    heatmap: str | None = Field(default=None, description="Path of its heatmap overlay (a "
                                "PNG of the display's size), drawn when asked; only for a "
                                "film the model judged, never in shadow mode")
    window: str | None = Field(default=None, description="The window the DICOM display "
                                                         "pipeline applied")

    @classmethod
    def of(cls, film: FilmResult, shadow_mode: bool = False) -> WorklistFilm:
        """The film as the API shows it; in shadow mode without the model's result (its
        score, flag, assessability, reasons and warnings) or heatmap."""
        if shadow_mode:
            return cls.of(replace(film, probability=None, threshold=None, flagged=None,
                                  reasons=(), warnings=())).model_copy(
                update={"assessable": None, "heatmap": None})
        p = film.probability
        score = film.triage_score
        score_shown = None if score is None else score_text(score)
        judged = p is not None and film.assessable and film.error_code is None
        return cls(
            id=film.id, sop_instance_uid=film.sop_instance_uid,
            series_instance_uid=film.series_instance_uid, modality=film.modality,
            view_position=film.view_position, body_part=film.body_part, source=film.source,
            received_at=film.received_at, scored_at=film.scored_at,
            model_name=film.model_name, model_version=film.model_version, probability=p,
            probability_text=None if p is None else percent(p), triage_score=score,
            triage_score_text=score_shown, threshold=film.threshold,
            flagged=film.flagged, assessable=film.assessable, reasons=list(film.reasons),
            warnings=list(film.warnings),
            error=None if film.error_code is None else FilmProblem(
                error=film.error_code, detail=film.error_detail or ""),
            results_error=_results_problem(film.results_error),
            thumbnail=f"/worklist/films/{film.id}/thumbnail" if film.has_thumbnail else None,
            display=f"/worklist/films/{film.id}/display" if film.has_display else None,
            heatmap=f"/worklist/films/{film.id}/heatmap" if film.has_display and judged
            else None,
            window=film.window)


def _results_problem(code: str | None) -> FilmProblem | None:
    if code is None:
        return None
    known = {failure.value: failure for failure in ResultsFailure}
    failure = known.get(code, ResultsFailure.BUILD)
    return FilmProblem(error=code, detail=failure.message)


class WorklistEntry(BaseModel):
    """One study on the worklist. No patient name, ID or birth date: the worklist never
    keeps them."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ENTRY_EXAMPLE]})

    id: int
    study_instance_uid: str = Field(description="Generated from the file's bytes for an "
                                                "image that is not DICOM")
    accession_number: str | None
    patient_age: str | None = Field(description="DICOM age string, e.g. 004Y")
    patient_sex: str | None
    study_date: date | None
    study_time: time | None
    source: str
    received_at: datetime = Field(description="When its first film arrived")
    last_received_at: datetime = Field(description="When its last film arrived (retention "
                                                   "counts from here)")
    status: Status
    status_by: str | None = Field(description="Who set the status (see the audit trail)")
    status_at: datetime | None
    priority: float | None = Field(ge=0, le=1, description="The calibrated probability of "
                                   "the film that ranks the study (the one with the highest "
                                   "triage_score); a detail: the list is ordered by "
                                   "triage_score, which compares films of different models")
    priority_text: str | None
    triage_score: float | None = Field(ge=0, le=1, description="What orders the list within "
                                       "each group, highest first: the highest triage score "
                                       "among its assessable frontal films, each at the "
                                       "operating point it was scored at (0.5 = flagged)")
    triage_score_text: str | None
    decision: Decision | None = Field(description="flagged, not_flagged or "
                                                  "needs_human_look: the study's group in "
                                                  "triage words; null in shadow mode")
    decision_text: str | None
    flagged: bool | None = Field(description="A film is at or above its threshold: a "
                                             "priority read; null in shadow mode")
    group: Literal["flagged", "routine", "needs_review"] | None = Field(
        description="Flagged for a priority read; not flagged; or needs a human look (a film "
                    "not assessable or not scored); null in shadow mode")
    result_shown: bool = Field(default=True, description="false in shadow mode "
                               "(PNEUMONIA_SHADOW_MODE): the entry carries no score, "
                               "decision or heatmap")
    study_label: str = Field(default="", description="How the list names the study: its "
                             "accession number, else the end of its Study Instance UID")
    age_band: str | None = Field(default=None, description="The patient's age band from "
                                 "the DICOM age string, e.g. '1-5 y'")
    read: ReadInfo | None = Field(default=None, description="The radiologist's read, once "
                                  "given (PUT /worklist/entries/{id}/read)")
    viewer_url: str | None = Field(description="The study in the PACS viewer, when "
                                               "PNEUMONIA_VIEWER_URL is set")
    films: list[WorklistFilm] = Field(description="Oldest first")
    undelivered_results: int = Field(
        default=0, description="Films whose results (SR and secondary capture) have not "
                               "reached the PACS yet; retried until they do")
    delivery_error: str | None = Field(default=None,
                                       description="Why the last delivery attempt failed")
    conflict_of: str | None = Field(
        default=None, description="Status conflict: the Study Instance UID its films carried, "
        "of a study first seen with another patient (Patient ID and Issuer). They are listed "
        "here, never merged into that study, and no result of them is sent; "
        "study_instance_uid is one the worklist derived")

    @classmethod
    def of(cls, entry: StudyEntry, viewer_url: str | None,
           undelivered: Undelivered | None = None,
           shadow_mode: bool = False) -> WorklistEntry:
        """The entry as the API and the pages show it; in shadow mode without the model's
        result (score, probability, decision, group, flag) and with its films' blinded."""
        if shadow_mode:
            return cls.of(entry, viewer_url, undelivered).model_copy(update={
                "priority": None, "priority_text": None, "triage_score": None,
                "triage_score_text": None, "decision": None, "decision_text": None,
                "flagged": None, "group": None, "result_shown": False,
                "films": [WorklistFilm.of(film, shadow_mode=True) for film in entry.films]})
        p = entry.priority
        score, score_shown = entry_triage_score(entry)
        outcome = GROUP_DECISIONS[entry.group]
        return cls(
            id=entry.id, study_instance_uid=entry.study_instance_uid,
            accession_number=entry.accession_number, patient_age=entry.patient_age,
            patient_sex=entry.patient_sex, study_date=entry.study_date,
            study_time=entry.study_time, source=entry.source, received_at=entry.received_at,
            last_received_at=entry.last_received_at, status=entry.status,
            status_by=entry.status_by, status_at=entry.status_at, priority=p,
            priority_text=None if p is None else percent(p), triage_score=score,
            triage_score_text=score_shown, decision=outcome, decision_text=outcome.text,
            flagged=entry.flagged,
            group=entry.group,  # type: ignore[arg-type]
            viewer_url=viewer_link(viewer_url, entry.conflict_of or entry.study_instance_uid),
            films=[WorklistFilm.of(film) for film in entry.films],
            undelivered_results=undelivered.count if undelivered else 0,
            delivery_error=undelivered.last_error if undelivered else None,
            conflict_of=entry.conflict_of, study_label=study_label(entry),
            age_band=age_band(entry.patient_age), read=ReadInfo.of(entry.read))


class WorklistPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "entries": [_ENTRY_EXAMPLE], "total": 1, "next_cursor": None}]})

    entries: list[WorklistEntry] = Field(description="Flagged studies first, highest "
                                                     "triage_score first; then the rest; then "
                                                     "those that need a human look")
    total: int = Field(description="Entries the filters match, on every page")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; None on "
                                                "the last")

    @classmethod
    def of(cls, page: Page, viewer_url: str | None,
           undelivered: dict[int, Undelivered] | None = None,
           shadow_mode: bool = False) -> WorklistPage:
        undelivered = undelivered or {}
        return cls(entries=[WorklistEntry.of(e, viewer_url, undelivered.get(e.id),
                                             shadow_mode) for e in page.entries],
                   total=page.total, next_cursor=page.next_cursor)


class StoredFileOutcome(BaseModel):
    index: int = Field(description="Position of the file in the upload, from 0")
    stored: bool = Field(description="On the worklist (false: not stored, see `error`: busy "
                                     "or request_too_slow, send it again; file_too_large, "
                                     "send it smaller)")
    entry_id: int | None
    film_id: int | None
    error: FileError | None = Field(default=None, description="Why it was not scored")

    @classmethod
    def of(cls, outcome: StoredFile) -> StoredFileOutcome:
        error = outcome.result.error
        status, code, message = describe(error) if error is not None else (0, "", "")
        return cls(index=outcome.result.index, stored=outcome.entry_id is not None,
                   entry_id=outcome.entry_id, film_id=outcome.film_id,
                   error=None if error is None else FileError(error=code, detail=message,
                                                              status=status))


class WorklistUpload(BaseModel):
    """Films scored and stored: committed before this answer was sent."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": {"name": "pneumonia", "version": 2}, "threshold": 0.5, "count": 1,
        "stored": 1, "files": [{"index": 0, "stored": True, "entry_id": 3, "film_id": 7,
                                "error": None}],
        "entries": [_ENTRY_EXAMPLE], "note": "Prioritisation aid, not a diagnosis."}]})

    model: ModelInfo
    threshold: float
    count: int = Field(description="Files in the upload")
    stored: int = Field(description="Files now on the worklist (scored or listed with why not)")
    files: list[StoredFileOutcome] = Field(description="One per file, in upload order")
    entries: list[WorklistEntry] = Field(description="The studies they belong to, each with "
                                                     "all its films so far")
    note: str

    @classmethod
    def of(cls, upload: StoredUpload, model: ModelCard, threshold: float,
           viewer_url: str | None, shadow_mode: bool = False) -> WorklistUpload:
        files = [StoredFileOutcome.of(f) for f in upload.files]
        return cls(model=ModelInfo(name=model.name, version=model.version),
                   threshold=threshold, count=len(files),
                   stored=sum(f.stored for f in files), files=files,
                   entries=[WorklistEntry.of(e, viewer_url, shadow_mode=shadow_mode)
                            for e in upload.entries],
                   note=model.disclaimer)


class ReadInfo(BaseModel):
    """A study's read: the finding, who gave it and when."""

    finding: Finding
    read_by: str = Field(description="The trusted proxy's user, 'token holder' or "
                                     "'anonymous' (see the audit trail)")
    read_at: datetime

    @classmethod
    def of(cls, read: Read | None) -> ReadInfo | None:
        return None if read is None else cls(finding=read.finding, read_by=read.read_by,
                                             read_at=read.read_at)


class ReadChange(BaseModel):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"finding": "pneumonia"}]})

    finding: Finding = Field(description="pneumonia, no_pneumonia or indeterminate")


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"status": "reported"}]})

    status: Status = Field(description="new, opened, reported or dismissed")


class AuditEntry(BaseModel):
    """Who did what to which entry, and when."""

    id: int
    at: datetime
    actor: str = Field(description="The trusted proxy's user, 'token holder' or 'anonymous'")
    action: Literal["opened", "exported", "status_changed", "purged", "intended_use", "read",
                    "shadow_mode"]
    entry_id: int | None = Field(description="None: the whole list (an export, a purge, a "
                                             "setting)")
    study_instance_uid: str | None
    detail: dict[str, Any] | None = Field(description="The new status or read; an export's "
                                                      "format and filters (and a JSON page's "
                                                      "paging and entry count); a purge's "
                                                      "counts; the site's intended ages; "
                                                      "shadow mode turned on or off")

    @classmethod
    def of(cls, record: AuditRecord) -> AuditEntry:
        return cls(id=record.id, at=record.at, actor=record.actor,
                   action=record.action.value,  # type: ignore[arg-type]
                   entry_id=record.entry_id, study_instance_uid=record.study_instance_uid,
                   detail=record.detail)


class AuditPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"records": [{
        "id": 12, "at": "2025-03-01T08:03:00Z", "actor": "token holder",
        "action": "status_changed", "entry_id": 3, "study_instance_uid": _UID,
        "detail": {"from": "new", "to": "reported"}}], "next_before_id": None}]})

    records: list[AuditEntry] = Field(description="Newest first")
    next_before_id: int | None = Field(description="Pass as ?before_id= for older records")
