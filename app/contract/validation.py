"""A local validation: one typed schema for DIR/validation.json, written by `pneumonia-triage
validate` (app/archive/validate.py) and read by the site profile and the app's /validation
page through the same code.

    DIR/validation.json   this validation
    DIR/report.html       the same figures for people, readable without the server
    DIR/scores/           the archive run that scored the films

A site measures the served model on its own labelled films: the figures at the card's
operating point beside the card's own (with a verdict each), a site operating point for a
target sensitivity, the table at every 0.05 of sensitivity (the WHO CAD calibration toolkit's
view), calibration and subgroups. Proportions carry their 95% Wilson interval
(app/contract/intervals.py); the ROC AUC its percentile bootstrap interval.

Nothing here identifies a patient: subgroups are header facts in bands (never a name, patient
ID or birth date), and a confident error names only the labels file's own line and source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

VALIDATION_FILE = "validation.json"
SCHEMA_VERSION = 1

Verdict = Literal["inside", "above", "below"]  # the site's value against the card's interval
FigureName = Literal["sensitivity", "specificity", "ppv", "npv"]
Created = Annotated[AwareDatetime, PlainSerializer(lambda value: value.isoformat(),
                                                   return_type=str)]


class _Strict(BaseModel):
    # Unknown fields are refused: a typo or a newer validation must not pass as this one.
    # NaN or infinity passes JSON and no bound here: never a figure (allow_inf_nan).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelRef(_Strict):
    """The model validated: its name, version, and the card's operating point."""

    name: str = Field(min_length=1)
    version: int = Field(gt=0)
    threshold: float = Field(ge=0, le=1, description="the card's operating point, on the "
                                                     "served (calibrated) probability")


class FilmCounts(_Strict):
    """What became of the labelled films. `used` = positives + negatives: the films with a
    probability, the only ones in any figure. A refused film (unreadable, not a film the app
    takes) and a film the model cannot judge (needs a human look) are counted by reason."""

    listed: int = Field(ge=0, description="films in the labels file")
    used: int = Field(ge=0)
    refused: int = Field(ge=0)
    not_assessable: int = Field(ge=0)
    positives: int = Field(ge=0, description="used films labelled pneumonia")
    negatives: int = Field(ge=0, description="used films labelled normal")
    refused_by_reason: dict[str, int]  # the archive row's error code -> films
    not_assessable_by_reason: dict[str, int]  # reason code -> films (a film may have several)

    @model_validator(mode="after")
    def _counts_add_up(self) -> FilmCounts:
        if self.used != self.positives + self.negatives:
            raise ValueError(f"used {self.used} != positives {self.positives} + negatives "
                             f"{self.negatives}")
        if self.listed != self.used + self.refused + self.not_assessable:
            raise ValueError(f"listed {self.listed} != used + refused + not_assessable")
        return self


class Estimate(_Strict):
    """A value with its 95% interval [low, high]."""

    value: float
    low: float
    high: float


class AucEstimate(Estimate):
    """ROC AUC (scikit-learn's roc_auc_score) with a 95% percentile bootstrap interval:
    `draws` resamples of the used films with replacement (numpy's default Generator seeded
    with `seed`); a draw with one class only has no AUC and is skipped and counted."""

    draws: int = Field(gt=0)
    skipped_draws: int = Field(ge=0, description="draws with one class only")
    seed: int


class Proportion(_Strict):
    """successes / total with its 95% Wilson interval; value None when total is 0 (the
    interval is then [0, 1]: nothing is known)."""

    value: float | None = Field(ge=0, le=1)
    successes: int = Field(ge=0)
    total: int = Field(ge=0)
    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)


class Figures(_Strict):
    """The four figures at `threshold` (flag when p >= threshold): sensitivity TP/(TP+FN),
    specificity TN/(TN+FP), PPV TP/(TP+FP), NPV TN/(TN+FN)."""

    threshold: float = Field(ge=0, le=1)
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion


class CardFigure(_Strict):
    """One figure of the card's (its validation or test split, at the card's threshold,
    recomputed with a Wilson interval from the card's confusion matrix) and where the site's
    value falls against its interval."""

    split: Literal["validation", "test"]
    figure: FigureName
    card: Proportion
    site_value: float | None
    verdict: Verdict | None  # None when the site's value is undefined (no films)


class CardOperatingPoint(Figures):
    """The site's figures at the card's threshold, and the card's own beside them."""

    card: list[CardFigure]


class SiteOperatingPoint(Figures):
    """The highest threshold whose sensitivity on the site's films is >= target_sensitivity
    (the card's own rule, applied to the site's films), with its figures."""

    target_sensitivity: float = Field(gt=0, le=1)


class CalibrationBin(_Strict):
    """Films whose served probability is in [low, high) (the last bin includes 1)."""

    low: float
    high: float
    n: int = Field(ge=0)
    mean_probability: float | None  # None: an empty bin
    observed_rate: float | None  # share labelled pneumonia


class ValidationCalibration(_Strict):
    """Reliability of the served probability in `bins` equal-width bins; the expected
    calibration error = sum over bins of n/N * |observed rate - mean probability|."""

    bins: list[CalibrationBin]
    ece: float = Field(ge=0, le=1)
    brier: float = Field(ge=0, le=1)


class Subgroup(_Strict):
    """The used films with one value of a facet; figures at the card's operating point.
    `below` names the figures whose interval lies wholly below the whole set's."""

    value: str  # "unknown" where the header or labels file says nothing
    n: int = Field(ge=0)
    positives: int = Field(ge=0)
    negatives: int = Field(ge=0)
    auc: float | None  # None with one class only
    sensitivity: Proportion
    specificity: Proportion
    below: list[Literal["sensitivity", "specificity"]]


class SubgroupFacet(_Strict):
    """One way of cutting the used films; its subgroups' n add up to the used films."""

    facet: str  # e.g. "view_position", "file_kind", or the labels file's "subgroup:ward"
    subgroups: list[Subgroup]


class ConfidentError(_Strict):
    """A film the model got wrong with the most confidence, for a radiologist to review.
    Named by the labels file only: its line (None for the folder form) and its source as
    written there; never a header fact."""

    kind: Literal["false_positive", "false_negative"]
    line: int | None = Field(default=None, ge=1)
    source: str
    label: Literal["NORMAL", "PNEUMONIA"]
    probability: float = Field(ge=0, le=1)


class RunInfo(_Strict):
    """How the films were scored: the archive run under DIR/scores."""

    labels: str = Field(description="the LABELS argument as given")
    labels_kind: Literal["csv", "folder"]
    subgroup_columns: list[str]
    scores: str = Field(description="the archive output, relative to the validation folder")
    seconds: float = Field(ge=0, description="wall time of the scoring")
    films_per_second: float = Field(ge=0)


class Validation(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    created_at: Created  # UTC
    model: ModelRef
    films: FilmCounts
    auc: AucEstimate
    card_operating_point: CardOperatingPoint
    site_operating_point: SiteOperatingPoint
    sensitivity_table: list[SiteOperatingPoint]  # targets 0.50, 0.55, ..., 1.00
    calibration: ValidationCalibration
    subgroups: list[SubgroupFacet]
    confident_errors: list[ConfidentError]
    run: RunInfo

    def write(self, folder: Path) -> Path:
        path = Path(folder) / VALIDATION_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path


class ValidationFileError(ValueError):
    """A validation.json that is missing or does not validate; the message names the file
    and the first offending field."""


def read_validation(path: Path) -> Validation:
    """The validated contents of a validation.json (`path` is the file or its folder).

    Raises ValidationFileError when it is missing, unreadable or invalid."""
    path = Path(path)
    if path.is_dir():
        path = path / VALIDATION_FILE
    try:
        text = path.read_bytes()  # not UTF-8: pydantic's "Invalid JSON", not a crash
    except OSError as exc:
        raise ValidationFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return Validation.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(whole file)"
        raise ValidationFileError(f"{path} field '{field}': {first['msg']}") from None
