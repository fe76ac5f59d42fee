"""Request/response classes of the JSON API (not to be confused with models/, the ML models)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.contract.card import ModelCard
from app.display import percent
from app.http_errors import describe
from app.services.film import ImageFacts
from app.services.pipeline import FileResult, Prediction


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

    @classmethod
    def of(cls, image: ImageFacts) -> ImageInfo:
        dicom = image.dicom
        return cls(width=image.width, height=image.height, format=image.format, mode=image.mode,
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


class ModelInfo(BaseModel):
    name: str
    version: int


class PredictionResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "probability": 0.9731,
        "probability_text": "97.3%",
        "label": "PNEUMONIA",
        "assessable": True,
        "reasons": [],
        "unvalidated_probability": None,
        "threshold": 0.5,
        "model": {"name": "pneumonia", "version": 1},
        "image": {"width": 1336, "height": 840, "format": "JPEG", "mode": "L", "dicom": None},
        "warnings": [],
        "calibrated": True,
        "heatmap": None,
        "elapsed_ms": 21.4,
        "note": "Prioritisation aid, not a diagnosis.",
    }]})

    probability: float | None = Field(ge=0, le=1, description="Model probability of "
                                      "pneumonia; null when the film is not assessable")
    probability_text: str | None = Field(description="The probability as people are shown "
                                                     "it: one decimal, never 100.0% or 0.0%")
    label: str | None = Field(description="PNEUMONIA when probability >= threshold, else "
                                          "NORMAL; null when the film is not assessable")
    assessable: bool = Field(description="false: the model cannot judge this film (see "
                                         "reasons); it has no label and needs a human look")
    reasons: list[str] = Field(description="Why it is not assessable: inverted, rotated, "
                                           "not_chest, not_frontal, unlike_training, too_small, "
                                           "no_contrast")
    unvalidated_probability: float | None = Field(
        default=None, ge=0, le=1, description="Only for a film that is not assessable: the "
        "model's raw output on it, which means nothing clinically; for audit, never a result")
    threshold: float = Field(ge=0, le=1, description="Decision threshold applied")
    model: ModelInfo
    image: ImageInfo
    warnings: list[str] = Field(description="Reasons to look twice, for a person: the input "
                                            "guard, the detector, the DICOM tags and how the "
                                            "file was read")
    calibrated: bool = Field(description="The probability is calibrated (the model card "
                                         "says how)")
    heatmap: HeatmapInfo | None = Field(default=None, description="With ?explain=true")
    elapsed_ms: float = Field(description="Server-side time: decode, preprocess, inference")
    note: str = Field(description="The model card's disclaimer")

    @classmethod
    def from_prediction(cls, p: Prediction, card: ModelCard) -> PredictionResponse:
        judged = p.assessable
        return cls(
            probability=p.probability if judged else None,
            probability_text=percent(p.probability) if judged else None,
            label=p.label,
            assessable=judged,
            reasons=list(p.reasons),
            unvalidated_probability=None if judged else p.probability,
            threshold=p.threshold,
            model=ModelInfo(name=p.model_name, version=p.model_version),
            image=ImageInfo.of(p.image),
            warnings=list(p.warnings),
            calibrated=card.calibration is not None and card.calibration.inside_model,
            heatmap=None if p.heatmap is None else HeatmapInfo(
                film=p.heatmap.film, overlay=p.heatmap.overlay, width=p.heatmap.width,
                height=p.heatmap.height,
                note=card.explanation.note if card.explanation else ""),
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
    probability: float | None = Field(default=None, ge=0, le=1)
    probability_text: str | None = None
    label: str | None = None
    flagged: bool = Field(default=False, description="label is the positive class")
    assessable: bool | None = Field(default=None, description="false: needs a human look, "
                                                              "no label; null: not scored")
    reasons: list[str] = []
    unvalidated_probability: float | None = Field(default=None, ge=0, le=1, description=(
        "Only when not assessable: the model's raw output, never a result"))
    image: ImageInfo | None = None
    warnings: list[str] = []
    thumbnail: str | None = Field(default=None, description="data: URI of a small PNG, "
                                                            "with ?thumbnails=true")
    error: FileError | None = Field(default=None, description="Why this file was not scored")

    @classmethod
    def of(cls, result: FileResult) -> BatchEntry:
        p = result.prediction
        if p is None:
            status, code, message = describe(result.error)
            return cls(index=result.index, filename=result.filename,
                       error=FileError(error=code, detail=message, status=status))
        judged = p.assessable
        return cls(index=result.index, filename=result.filename,
                   probability=p.probability if judged else None,
                   probability_text=percent(p.probability) if judged else None,
                   label=p.label, flagged=p.flagged, assessable=judged,
                   reasons=list(p.reasons),
                   unvalidated_probability=None if judged else p.probability,
                   image=ImageInfo.of(p.image), warnings=list(p.warnings),
                   thumbnail=p.thumbnail)


class BatchResponse(BaseModel):
    model: ModelInfo
    threshold: float
    count: int
    scored: int = Field(description="Films the model judged (assessable)")
    flagged: int
    needs_human_look: int = Field(description="Films read but not assessable: no label")
    results: list[BatchEntry] = Field(description="One entry per file, in upload order")
    elapsed_ms: float
    note: str


class HealthResponse(BaseModel):
    status: str
    model: ModelInfo | None = Field(default=None, description="The model served, once ready")


class OfferedModel(BaseModel):
    name: str = Field(description="What to pass as ?model=NAME")
    version: int
    description: str
    default: bool = Field(description="Asked when a request names no model")
    threshold: float = Field(description="The card's operating point")
    input: str = Field(description="What the network sees, e.g. '64x64, 3 channels'")

    @classmethod
    def of(cls, card, default: bool) -> OfferedModel:
        height, width = card.input_size
        return cls(name=card.name, version=card.version, description=card.description,
                   default=default, threshold=card.threshold,
                   input=f"{height}x{width}, {card.channels} channel"
                         + ("s" if card.channels > 1 else ""))


class ModelsResponse(BaseModel):
    models: list[OfferedModel]
