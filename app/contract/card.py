"""The model card: one typed schema, written by training beside every SavedModel, read and
checked by the app before it loads the model.

    MODEL_DIR/<name>/<version>/saved_model.pb, variables/   the SavedModel
    MODEL_DIR/<name>/<version>/model_card.json              this card

Everything the app needs to serve a model (input size and colour mode, class order, signature
names, threshold, the texts shown to users) is a field here; the app repeats none of it.
A card that does not validate, or that was made with another preprocessing version, is
refused: a model fed differently prepared pixels would be served silently wrong.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.contract.preprocessing import PREPROCESSING_VERSION, SERVES_PREPROCESSING_VERSIONS
from app.contract.robustness import RobustnessInfo

CARD_FILE = "model_card.json"
CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # index = label; the model outputs P(PNEUMONIA)


class _Strict(BaseModel):
    # Unknown fields are refused: a typo or a newer card must not pass as this one.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Signature(_Strict):
    """Names of the SavedModel signatures the app (and TensorFlow Serving) calls."""

    name: str = "serving_default"
    input: str = "images"
    output: str = "probability"
    # images -> probability and a heatmap of the input's height and width; None = none
    explain: str | None = None
    heatmap: str = "heatmap"


SIGNATURE = Signature(explain="explain")


class InputSpec(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[1, 3]
    color_mode: Literal["grayscale", "rgb"]
    dtype: Literal["float32"]
    value_range: tuple[float, float] = Field(description="what the signature expects, e.g. 0-255")
    scaling: str = Field(description="where scaling to the network's range happens")
    resize: str
    preprocessing_version: str

    @model_validator(mode="after")
    def _mode_matches_channels(self) -> InputSpec:
        if (self.channels == 3) != (self.color_mode == "rgb"):
            raise ValueError(f"color_mode {self.color_mode!r} with {self.channels} channels")
        return self


class Metrics(_Strict):
    """Binary metrics at `threshold`: predict the positive class when p >= threshold."""

    n: int = Field(ge=0)
    threshold: float = Field(ge=0, le=1)
    accuracy: float
    error: float
    precision: float
    recall: float
    specificity: float
    f1: float
    roc_auc: float | None  # undefined when only one class is present
    confusion_matrix: list[list[int]]  # rows: true negative class, true positive class


class Rates(_Strict):
    """Sensitivity and specificity at a threshold, with 95% Wilson intervals."""

    sensitivity: float
    sensitivity_ci: tuple[float, float]
    specificity: float
    specificity_ci: tuple[float, float]
    positives: int
    negatives: int


class OperatingPoint(_Strict):
    threshold: float = Field(ge=0, le=1, description="on the calibrated probability")
    target_sensitivity: float = Field(gt=0, le=1)
    chosen_on: Literal["validation"]
    validation: Rates
    test: Rates | None = None  # measured once, after the choice, for the report


class Calibration(_Strict):
    method: Literal["temperature", "platt"]
    parameters: dict[str, float]  # p = sigmoid(a * logit + b); temperature T = 1 / a
    fitted_on: Literal["validation"]
    inside_model: bool  # the SavedModel's own output is calibrated
    brier: dict[str, dict[str, float]]  # split -> {"raw": ..., "calibrated": ...}
    ece: dict[str, dict[str, float]]


class Explanation(_Strict):
    """How the heatmap is made: occlusion sensitivity (Zeiler and Fergus, 2014). A patch of
    the film's mean grey hides `patch` x `patch` px of the model input at positions `stride`
    px apart (the grid of the SavedModel's `explain` signature); each pixel's heat is the
    mean drop of the pneumonia logit over the measured positions that hid it.

    With `coarse_stride`, the app measures that grid coarse to fine in two model calls:
    every `coarse_stride` px first, then every grid position within `refine` px of the
    coarse pass's largest drop. Without it, every grid position, as the signature does."""

    method: str
    patch: int = Field(gt=0, description="px of the model input hidden at each position")
    stride: int = Field(gt=0, description="px between the grid's positions")
    coarse_stride: int | None = Field(default=None, gt=0, description="px between the "
                                      "positions of the coarse pass; None: one full pass")
    refine: int = Field(default=0, ge=0, description="px around the coarse pass's largest "
                                                     "drop measured at `stride`")
    note: str

    @model_validator(mode="after")
    def _coarse_grid_is_on_the_grid(self) -> Explanation:
        if self.coarse_stride is not None and self.coarse_stride % self.stride:
            raise ValueError(f"coarse_stride {self.coarse_stride} is not a multiple of "
                             f"stride {self.stride}")
        return self


class GuardInfo(_Strict):
    method: str
    file: str
    percentile: float
    validation_false_alarm_rate: float
    checks: list[str]


class AssessabilityInfo(_Strict):
    """The polarity/rotation detector beside the model (app/contract/assessability.py)."""

    method: str
    file: str
    fitted_on: str = Field(description="the films it was fitted on")
    measured_on: str = Field(description="the films its rates were measured on")
    films: int = Field(ge=0, description="upright films measured (each also rotated and "
                                         "inverted)")
    upright_pass_rate: float = Field(ge=0, le=1)
    caught: dict[str, float] = Field(description="copy -> share of them caught")


class TrainingInfo(_Strict):
    protocol: str = Field(description="which training protocol produced the model")
    experiment: int
    optimizer: str
    batch_size: int = Field(gt=0)
    epochs: int = Field(ge=0)
    study_epochs: int = Field(ge=0)
    class_weights: bool
    loss: str
    augmentation: str
    seed: int
    parameters: int = Field(gt=0)
    train_seconds: float = Field(ge=0)
    # Models beyond the study: AdamW and the epoch kept by validation ROC AUC.
    learning_rate: float | None = Field(default=None, gt=0)
    weight_decay: float | None = Field(default=None, ge=0)
    best_epoch: int | None = Field(default=None, ge=1)
    selected_on: str | None = None


class DataInfo(_Strict):
    name: str
    credit: str
    credit_short: str
    counts: dict[str, dict[str, int]]
    split: str
    subset_per_class: int | None


class IntendedPopulation(_Strict):
    """The films the model was validated on, as a DICOM header states them. The app's
    intended-use gate (app/contract/intended_use.py) holds every DICOM film to it: a film
    whose header says otherwise is not ranked but needs a human look, with a reason code.

    `age_years` is [first, last): a patient is in it when first <= age < last, the age in
    years as a fraction (Patient's Age, 0010,1010, or from Patient's Birth Date to the Study
    Date). "Ages 1 to 5" in completed years is (1, 6): from the first birthday up to, not
    including, the sixth. None: the card states no age range (a card written before this
    field; no age is then checked unless the site sets one)."""

    age_years: tuple[float, float] | None = Field(
        default=None, description="[first, last) in years: first <= age < last")
    # View Position (0018,5101) terms, PS3.3 C.8.11.5: which frontal views it was shown.
    projections: tuple[str, ...] = Field(default=("AP", "PA"), min_length=1)
    # Body Part Examined (0018,0015), a defined term of PS3.16 Annex L (CID 4031): the chest
    # alone (CHESTABDOMEN, a babygram, is another part).
    body_part: Literal["CHEST"] = "CHEST"
    # Modality (0008,0060) of the projection radiographs it was shown; their SOP classes
    # (PS3.4 B.5) are the ones the gate takes, beside secondary captures (scanned films).
    modalities: tuple[Literal["CR", "DX"], ...] = Field(default=("CR", "DX"), min_length=1)
    # Presentation Intent Type (0008,0068), PS3.3 C.8.11.1.1.1: processed for viewing.
    pixel_intent: Literal["FOR PRESENTATION"] = "FOR PRESENTATION"
    source: str = Field(default="", description="where these facts come from")

    @model_validator(mode="after")
    def _ages_are_a_range(self) -> IntendedPopulation:
        if self.age_years is not None and not 0 <= self.age_years[0] < self.age_years[1]:
            raise ValueError(f"age_years {list(self.age_years)} is not [first, last) with "
                             "0 <= first < last")
        return self


class ModelCard(_Strict):
    name: str = Field(min_length=1)
    version: int = Field(gt=0)
    description: str
    created: datetime
    code_version: str
    format: Literal["TensorFlow SavedModel"]
    signature: Signature
    input: InputSpec
    output: str
    class_names: tuple[str, str]
    positive_class: str
    threshold: float = Field(ge=0, le=1)
    threshold_method: str
    metrics: dict[Literal["validation", "test"], Metrics]
    training: TrainingInfo
    data: DataInfo
    intended_use: str
    # A card written before it states no population: read as a chest radiograph model of
    # unstated ages (every check of the gate but the age applies).
    intended_population: IntendedPopulation = Field(default_factory=IntendedPopulation)
    disclaimer: str = Field(min_length=1, description="shown with every result")
    limitations: list[str]
    # Trust features; a card written before they existed has none of them.
    operating_point: OperatingPoint | None = None
    calibration: Calibration | None = None
    explanation: Explanation | None = None
    input_guard: GuardInfo | None = None
    assessability: AssessabilityInfo | None = None
    robustness: RobustnessInfo | None = None  # robustness.json beside it (issue 28)

    @model_validator(mode="after")
    def _positive_class_is_a_class(self) -> ModelCard:
        if self.positive_class not in self.class_names:
            raise ValueError(f"positive_class {self.positive_class!r} not in class_names")
        return self

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return self.input.height, self.input.width

    @property
    def channels(self) -> int:
        return self.input.channels

    @property
    def negative_class(self) -> str:
        return next(c for c in self.class_names if c != self.positive_class)

    def label_for(self, probability: float, threshold: float) -> str:
        return self.positive_class if probability >= threshold else self.negative_class

    def write(self, version_dir: Path) -> Path:
        path = Path(version_dir) / CARD_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path


class CardError(ValueError):
    """A card the app must not serve. `field` names what is wrong, for the one log line."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{CARD_FILE} field '{field}': {problem}")
        self.field = field


def read_card(version_dir: Path) -> ModelCard:
    """The validated card of a model folder, checked against this code's preprocessing.

    Raises CardError naming the first offending field, FileNotFoundError when there is none.
    """
    text = (Path(version_dir) / CARD_FILE).read_text()
    try:
        card = ModelCard.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(whole card)"
        raise CardError(field, first["msg"]) from None
    if card.input.preprocessing_version not in SERVES_PREPROCESSING_VERSIONS:
        raise CardError("input.preprocessing_version",
                        f"the model was trained with preprocessing version "
                        f"{card.input.preprocessing_version!r}, this app applies "
                        f"{PREPROCESSING_VERSION!r} and serves models of "
                        f"{', '.join(map(repr, SERVES_PREPROCESSING_VERSIONS))}")
    return card
