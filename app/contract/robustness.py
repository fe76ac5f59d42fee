"""How a served model stands up to what real films carry: one typed schema for
MODEL_DIR/<name>/<version>/robustness.json, written by `python -m training robustness` and
read by the app's report page through the same code.

    robustness.json    the table: every perturbation family at its strengths
    model_card.json    `robustness`: the file's name and its summary (RobustnessInfo)
    report.json        `robustness`: every measured model's table, side by side
                       (app/contract/report.py's RobustnessSection)

The table follows the ImageNet-C habit: each family of perturbation (burned-in text, side
markers, tubes, borders, geometry, contrast, JPEG) at a low, middle and high strength, on the
validation split, and for each the share of films whose decision flips at the card's
operating point (flagged <-> not flagged, against the same film's clean decision), the flips
by direction, and the ROC AUC beside the clean one. Beside it, how much of the model's
occlusion heatmap falls outside the patient's body (app/contract/body.py).

The rule of issue 28 ("a model robust to real films"): a model is robust to a family when
at most 2% of the validation films' decisions flip at the family's middle strength.

Needs pydantic only (the contract package: no NumPy, no training code).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

ROBUSTNESS_FILE = "robustness.json"
STRENGTH_NAMES = ("low", "middle", "high")
MIDDLE = STRENGTH_NAMES.index("middle")
MAX_MIDDLE_FLIP_RATE = 0.02  # issue 28: robust to a family at <= 2% flips, middle strength
RULE = ("robust to a family when at most 2% of the validation films' decisions flip at its "
        "middle strength (issue 28)")


class _Strict(BaseModel):
    # Unknown fields are refused: a typo or a newer file must not pass as this one.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Perturbed(_Strict):
    """One family at one strength, on every film of the split (each perturbed once)."""

    strength: float = Field(ge=0, le=1, description="the family's own 0-1 scale")
    flip_rate: float = Field(ge=0, le=1, description="share of the films whose decision "
                                                     "flipped at the operating point")
    flips_to_flagged: int = Field(ge=0, description="not flagged clean, flagged perturbed")
    flips_to_not_flagged: int = Field(ge=0, description="flagged clean, not flagged perturbed")
    roc_auc: float | None = Field(description="on the perturbed films; None with one class")


class HeatmapTruth(_Strict):
    """How much of the model's occlusion map (app/services/occlusion.py, the card's grid)
    falls outside the patient's body (app/contract/body.py), over validation films."""

    films: int = Field(ge=0, description="films measured")
    drawn_from: int = Field(ge=0, description="validation films they were drawn from")
    seed: int
    outside_mean: float = Field(ge=0, le=1, description="mean share of a map's mass outside")
    outside_median: float = Field(ge=0, le=1)
    mostly_outside: float = Field(ge=0, le=1, description="share of the films whose map is "
                                                          "more than half outside the body")


class Robustness(_Strict):
    """One model's table. `families[name][i]` is the family at STRENGTH_NAMES[i]."""

    measured_on: str = Field(description="the films: which split, how many, how decoded")
    films: int = Field(gt=0)
    positives: int = Field(ge=0, description="films of the positive class among them")
    threshold: float = Field(ge=0, le=1, description="the card's operating point")
    seed: int = Field(description="each film's perturbation is drawn from (seed, family, "
                                  "film), the same for every model")
    clean_roc_auc: float | None
    clean_flagged: int = Field(ge=0, description="films flagged before any perturbation")
    families: dict[str, list[Perturbed]]
    rule: str = RULE
    robust_to: list[str]
    not_robust_to: list[str]
    heatmap: HeatmapTruth | None = None

    @model_validator(mode="after")
    def _table_is_whole_and_summary_true(self) -> Robustness:
        for name, rows in self.families.items():
            if len(rows) != len(STRENGTH_NAMES):
                raise ValueError(f"family {name!r} has {len(rows)} strengths, not "
                                 f"{len(STRENGTH_NAMES)} ({', '.join(STRENGTH_NAMES)})")
            if any(a.strength > b.strength for a, b in zip(rows, rows[1:])):
                raise ValueError(f"family {name!r}: strengths are not low to high")
        if (self.robust_to, self.not_robust_to) != summary(self.families):
            raise ValueError(f"robust_to / not_robust_to disagree with the table ({RULE})")
        return self

    @classmethod
    def of(cls, families: dict[str, list[Perturbed]], **fields) -> Robustness:
        """The table with its summary by the rule."""
        robust, not_robust = summary(families)
        return cls(families=families, robust_to=robust, not_robust_to=not_robust, **fields)

    def middle_flip_rates(self) -> dict[str, float]:
        return {name: rows[MIDDLE].flip_rate for name, rows in self.families.items()}

    def info(self) -> RobustnessInfo:
        """The card's section: where the table is, and what it says."""
        return RobustnessInfo(
            file=ROBUSTNESS_FILE, measured_on=self.measured_on, films=self.films,
            rule=self.rule, middle_flip_rate=self.middle_flip_rates(),
            robust_to=self.robust_to, not_robust_to=self.not_robust_to,
            heatmap_mostly_outside=None if self.heatmap is None
            else self.heatmap.mostly_outside)

    def write(self, version_dir: Path) -> Path:
        path = Path(version_dir) / ROBUSTNESS_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def read(cls, version_dir: Path) -> Robustness | None:
        """The model folder's table, or None where it has none. Raises pydantic's
        ValidationError (a ValueError) for a file that does not validate."""
        path = Path(version_dir) / ROBUSTNESS_FILE
        return cls.model_validate_json(path.read_text()) if path.is_file() else None


def summary(families: dict[str, list[Perturbed]]) -> tuple[list[str], list[str]]:
    """(robust to, not robust to): the families in table order, by RULE."""
    robust = [name for name, rows in families.items()
              if rows[MIDDLE].flip_rate <= MAX_MIDDLE_FLIP_RATE]
    return robust, [name for name in families if name not in robust]


class RobustnessInfo(_Strict):
    """The card's pointer to robustness.json beside it, with what the table says."""

    file: str
    measured_on: str
    films: int = Field(gt=0)
    rule: str
    middle_flip_rate: dict[str, float] = Field(description="family -> flip rate at its "
                                                           "middle strength")
    robust_to: list[str]
    not_robust_to: list[str]
    heatmap_mostly_outside: float | None = Field(
        default=None, ge=0, le=1, description="share of validation films whose heatmap is "
                                              "more than half outside the body")


class ModelRobustness(Robustness):
    """One model's table in the report, named."""

    name: str
    version: int = Field(gt=0)

