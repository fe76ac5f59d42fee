"""The evaluation report: one typed schema for MODEL_DIR/report.json, written by the training
protocols and read by the app's report page through the same code.

    MODEL_DIR/report.json   this report
    MODEL_DIR/figures/      the figures it names, by path relative to MODEL_DIR

Each protocol owns some top-level fields and keeps the others: the full-data run owns the
comparison of the seven experiments (`created` ... `trust`), `--protocol study` owns
`study_protocol` and `ablation`, `--protocol stronger` owns `stronger_models`. They all write
through `write_report_sections`, which validates the whole report before a byte is written.
Shared shapes (metrics, operating point, calibration, guard, data) are the model card's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from app.contract.card import Calibration, DataInfo, GuardInfo, Metrics, OperatingPoint
from app.contract.robustness import RULE, ModelRobustness

REPORT_FILE = "report.json"


class _Strict(BaseModel):
    # Unknown fields are refused: a typo or a newer report must not pass as this one.
    model_config = ConfigDict(extra="forbid", frozen=True)


# When a section was made, in UTC; written back as read ("...+00:00"), so a rewrite of an
# unchanged section changes no byte.
Created = Annotated[AwareDatetime, PlainSerializer(lambda value: value.isoformat(),
                                                   return_type=str)]
ConfusionMatrix = list[list[int]]  # rows: true NORMAL, true PNEUMONIA; columns: predicted
History = dict[str, list[float | None]]  # Keras' per-epoch logs; a NaN (diverged) is null


class Spread(_Strict):
    """Mean, sample standard deviation, min and max of one value over seeds."""

    mean: float
    sd: float = Field(ge=0)
    min: float
    max: float


class Published(_Strict):
    """The original study's published figures; None where it gives none."""

    train_accuracy: float | None
    test_accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None


# --- the full-data run of the seven experiments (python -m training) -------------------------


class Environment(_Strict):
    keras: str
    backend: str
    numpy: str
    scikit_learn: str
    python: str
    machine: str
    cpus: int | None


class InputInfo(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[1, 3]
    resize: str


class ExperimentRecipe(_Strict):
    optimizer: str
    batch_size: int = Field(gt=0)
    epochs: int = Field(ge=0, description="epochs trained")
    study_epochs: int = Field(ge=0, description="the most epochs of the recipe")
    class_weights: bool
    loss: str
    # Selection on validation ROC AUC (experiments that have it).
    learning_rate: float | None = None
    weight_decay: float | None = None
    best_epoch: int | None = Field(default=None, ge=1)
    selected_on: str | None = None


class ExperimentResult(_Strict):
    number: int
    name: str
    description: str
    seed: int | None = None
    recipe: ExperimentRecipe
    parameters: int = Field(gt=0)
    train_seconds: float = Field(ge=0)
    images_per_second: float = Field(ge=0)
    history: History
    metrics: dict[Literal["train", "validation", "test"], Metrics]
    study: Published | None


class Figures(_Strict):
    confusion_matrices: dict[str, str]  # experiment number -> PNG path
    roc: str
    training_curves: str


class ExportedModel(_Strict):
    name: str
    version: int = Field(gt=0)
    experiment: int
    path: str
    test_predictions: str
    seed: int | None = None  # stronger protocol: the seed exported, and why
    chosen_on: str | None = None


class Reliability(_Strict):
    """Equal-width probability bins; None where a bin is empty."""

    confidence: list[float | None]
    frequency: list[float | None]
    counts: list[int]
    ece: float = Field(ge=0)


class TrustSummary(_Strict):
    """The exported model's calibration, operating point and guard (as on its card)."""

    experiment: int
    operating_point: OperatingPoint
    calibration: Calibration | None
    reliability: dict[str, dict[Literal["raw", "calibrated"], Reliability]]
    guard: GuardInfo | None
    figure: str


# --- the study's protocol over seeds, and the ablation (--protocol study) --------------------


class StudyRunMetrics(_Strict):
    accuracy: float
    precision: float
    recall: float
    specificity: float
    f1: float
    roc_auc: float | None
    train_accuracy: float
    confusion_matrix: ConfusionMatrix


class StudyRun(_Strict):
    seed: int
    train_seconds: float = Field(ge=0)
    images_per_second: float = Field(ge=0)
    train_images: int = Field(ge=0)
    metrics: StudyRunMetrics


class StudyRecipe(_Strict):
    optimizer: str
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)
    class_weights: bool


class StudyExperiment(_Strict):
    number: int
    name: str
    description: str
    recipe: StudyRecipe
    runs: list[StudyRun]
    summary: dict[str, Spread]
    published: Published
    published_within_seed_range: dict[str, bool]


class StudySection(_Strict):
    created: Created
    command: str
    code_version: str
    seeds: list[int]
    subset: dict[str, int]  # class name -> images drawn per seed
    threshold: float = Field(ge=0, le=1)
    experiments: list[StudyExperiment]
    wall_seconds: float = Field(ge=0)


class AblationRecipe(_Strict):
    name: str
    subset: bool
    validation: bool
    rescale: bool
    fresh_augmentation: bool
    class_weights: Literal["balanced", "study"]


class AblationStep(_Strict):
    step: int = Field(ge=1)
    change: str
    recipe: AblationRecipe
    runs: list[StudyRun]
    summary: dict[str, Spread]


class AblationSection(_Strict):
    created: Created
    command: str
    code_version: str
    experiment: int
    seeds: list[int]
    threshold: float = Field(ge=0, le=1)
    steps: list[AblationStep]
    wall_seconds: float = Field(ge=0)


# --- models beyond the study over seeds (--protocol stronger) --------------------------------


class SelectionRules(_Strict):
    patience: int = Field(ge=1)
    lr_patience: int = Field(ge=1)
    lr_factor: float = Field(gt=0, lt=1)


class StrongerRecipe(_Strict):
    optimizer: str
    batch_size: int = Field(gt=0)
    max_epochs: int = Field(gt=0)
    learning_rate: float | None
    weight_decay: float | None
    class_weights: bool
    early_stopping: SelectionRules | None


class OperatingMetrics(_Strict):
    """Metrics at a model's validation operating point."""

    roc_auc: float | None
    accuracy: float
    recall: float
    specificity: float
    precision: float
    f1: float


class RunTestMetrics(OperatingMetrics):
    confusion_matrix: ConfusionMatrix


class AtHalf(_Strict):
    accuracy: float
    recall: float
    specificity: float


class StrongerRun(_Strict):
    seed: int
    parameters: int = Field(gt=0)
    train_seconds: float = Field(ge=0)
    images_per_second: float = Field(ge=0)
    epochs: int = Field(ge=0)
    best_epoch: int | None = Field(ge=1)
    validation_roc_auc: float | None
    threshold: float = Field(ge=0, le=1)
    temperature: float = Field(gt=0)
    metrics: RunTestMetrics
    validation: OperatingMetrics
    test_at_0_5: AtHalf
    history: History


class StrongerFigures(_Strict):
    confusion_matrix: str
    roc: str


class StrongerExperiment(_Strict):
    number: int
    name: str
    description: str
    export_name: str | None
    augmentation: str
    recipe: StrongerRecipe
    parameters: int = Field(gt=0)
    runs: list[StrongerRun]
    summary: dict[str, Spread]
    exported: ExportedModel | None
    figures: StrongerFigures


class Baseline(_Strict):
    """The full protocol's exported model 5, what the new models are compared with."""

    number: int
    name: str
    version: int = Field(gt=0)
    seed: int | None
    metrics: OperatingMetrics
    sensitivity_ci: tuple[float, float]
    specificity_ci: tuple[float, float]
    test_predictions: str


class Reference(_Strict):
    name: str
    accuracy: float
    sensitivity: float
    specificity: float
    roc_auc: float


class StrongerSection(_Strict):
    created: Created
    command: str
    code_version: str
    protocol: str
    seeds: list[int]
    target_sensitivity: float = Field(gt=0, le=1)
    experiments: list[StrongerExperiment]
    baseline: Baseline | None
    reference: Reference
    wall_seconds: float = Field(ge=0)


class VersionFigures(_Strict):
    """One exported version at its own operating point (chosen on validation): validation
    ROC AUC, and the test split's figures at that threshold."""

    name: str
    version: int = Field(gt=0)
    threshold: float = Field(ge=0, le=1)
    validation_roc_auc: float | None
    test: OperatingMetrics


class RetrainedModel(_Strict):
    """A served model retrained on real-film augmentations, beside the version it follows."""

    number: int
    description: str
    augmentation: str
    probabilities: dict[str, float]  # each augmentation family's chance per film
    preprocessing_version: str
    command: str  # the run that made it (a run may retrain one model and keep the other)
    code_version: str
    created: Created
    train_seconds: float = Field(ge=0)
    best_epoch: int | None
    previous: VersionFigures | None  # the newest version before this run
    retrained: VersionFigures


class RealFilmSection(_Strict):
    """`--protocol real-films`: models 5 and 8 retrained on augmentations that draw what
    real films carry (training/augment.py), with the border crop of preprocessing 3."""

    seed: int
    models: list[RetrainedModel]  # by model number; each run replaces the models it trained


class RobustnessSection(_Strict):
    """`python -m training robustness`: every measured model's table of perturbation
    families (app/contract/robustness.py), old and new side by side; a model measured again
    replaces its own entry and keeps the others'."""

    created: Created
    command: str
    code_version: str
    rule: str = RULE
    models: list[ModelRobustness]
    wall_seconds: float = Field(ge=0)


# --- the report -------------------------------------------------------------------------------

# What the full-data run always writes; `exported_model` and `trust` only when it exported.
FULL_RUN_FIELDS = ("created", "protocol", "full_protocol_differences", "command",
                   "code_version", "environment", "wall_seconds", "dataset", "input",
                   "augmentation", "threshold", "threshold_method", "seed", "experiments",
                   "figures")


class Report(_Strict):
    # The full-data run of the seven experiments: all of FULL_RUN_FIELDS, or none of them.
    created: Created | None = None
    protocol: Literal["full"] | None = None
    full_protocol_differences: dict[str, str] | None = None
    command: str | None = None
    code_version: str | None = None
    environment: Environment | None = None
    wall_seconds: float | None = Field(default=None, ge=0)
    dataset: DataInfo | None = None
    input: InputInfo | None = None
    augmentation: str | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)
    threshold_method: str | None = None
    seed: int | None = None
    experiments: list[ExperimentResult] | None = None
    figures: Figures | None = None
    exported_model: ExportedModel | None = None
    trust: TrustSummary | None = None
    # The other protocols' sections, each with its own command and code version.
    study_protocol: StudySection | None = None
    ablation: AblationSection | None = None
    stronger_models: StrongerSection | None = None
    real_film_models: RealFilmSection | None = None
    robustness: RobustnessSection | None = None

    @model_validator(mode="after")
    def _full_run_is_whole(self) -> Report:
        present = [name for name in FULL_RUN_FIELDS if getattr(self, name) is not None]
        missing = [name for name in FULL_RUN_FIELDS if getattr(self, name) is None]
        if present and missing:
            raise ValueError(f"the full-data run's fields come together; missing {missing}")
        if (self.exported_model or self.trust) and not present:
            raise ValueError("an exported model without the full-data run that made it")
        return self

    def to_json(self) -> str:
        # exclude_unset: a field the writer left out stays out (no nulls appear on rewrite).
        return self.model_dump_json(indent=2, exclude_unset=True) + "\n"


def read_report(path: Path) -> Report:
    """The validated report at `path` (a file, or a model folder holding REPORT_FILE).
    Raises FileNotFoundError, or pydantic's ValidationError (a ValueError)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILE
    return Report.model_validate_json(path.read_text())


def write_report_sections(out: Path, sections: Mapping[str, object]) -> Report:
    """Set `sections` (top-level field -> content; None removes the field) in
    OUT/report.json, keeping every other field. The merged report is validated, and its
    JSON read back, before it replaces the old file: an invalid report is never written."""
    out = Path(out)
    path = out / REPORT_FILE
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged.update(sections)
    merged = {name: value for name, value in merged.items() if value is not None}
    text = Report.model_validate(merged).to_json()
    report = Report.model_validate_json(text)  # what a reader will get, NaN included
    out.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{REPORT_FILE}.{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(path)
    return report
