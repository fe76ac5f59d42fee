"""Request/response classes of the JSON API (not to be confused with models/, the ML models)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.contract.card import ModelCard
from app.display import percent
from app.services.inference import Prediction


class ImageInfo(BaseModel):
    width: int = Field(description="Width in pixels, upright (after EXIF orientation)")
    height: int = Field(description="Height in pixels, upright")
    format: str = Field(description="File format: JPEG or PNG")
    mode: str = Field(description="Pillow mode of the file, e.g. L, I;16, RGB, RGBA, P, CMYK")


class ModelInfo(BaseModel):
    name: str
    version: int


class PredictionResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "probability": 0.9731,
        "probability_text": "97.3%",
        "label": "PNEUMONIA",
        "threshold": 0.5,
        "model": {"name": "pneumonia", "version": 1},
        "image": {"width": 1336, "height": 840, "format": "JPEG", "mode": "L"},
        "elapsed_ms": 21.4,
        "note": "Prioritisation aid, not a diagnosis.",
    }]})

    probability: float = Field(ge=0, le=1, description="Model probability of pneumonia")
    probability_text: str = Field(description="The probability as people are shown it: "
                                              "one decimal, never 100.0% or 0.0%")
    label: str = Field(description="PNEUMONIA when probability >= threshold, else NORMAL")
    threshold: float = Field(ge=0, le=1, description="Decision threshold applied")
    model: ModelInfo
    image: ImageInfo
    elapsed_ms: float = Field(description="Server-side time: decode, preprocess, inference")
    note: str = Field(description="The model card's disclaimer")

    @classmethod
    def from_prediction(cls, p: Prediction, card: ModelCard) -> PredictionResponse:
        return cls(
            probability=p.probability,
            probability_text=percent(p.probability),
            label=p.label,
            threshold=p.threshold,
            model=ModelInfo(name=p.model_name, version=p.model_version),
            image=ImageInfo(width=p.image.width, height=p.image.height,
                            format=p.image.format, mode=p.image.mode),
            elapsed_ms=round(p.elapsed_ms, 2),
            note=card.disclaimer,
        )


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "error": "unsupported_format",
        "detail": "GIF images are not supported. Upload a JPEG or PNG.",
    }]})

    error: str = Field(description="Short machine-readable code")
    detail: str = Field(description="What went wrong, for a person")


class HealthResponse(BaseModel):
    status: str
    model: ModelInfo | None = Field(default=None, description="The model served, once ready")
