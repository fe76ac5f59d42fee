"""A site profile: the operating point a hospital adopted from its own local validation
(`pneumonia-triage site adopt DIR`, app/services/site.py), and the one rule that says which
operating point applies to a model.

    STATE_DIR/site_profile.json             the profile in force (absent: none)
    STATE_DIR/validations/<id>/             each adopted validation, kept after a revert:
        validation.json, report.html        copied as they were (id = first 12 hex digits
                                            of validation.json's SHA-256)

The profile belongs to one model version: the card's name AND version that the validation
measured. Any other version (a newer model, an earlier one asked as NAME/VERSION) ignores it
and keeps its card's operating point; the card itself is never edited.

The order, one rule for every door (the app through ModelCatalog, the folder command, the
archive through catalog.model_terms):
    1. PNEUMONIA_THRESHOLD (Settings.threshold), for the default model only: an operator's
       explicit setting wins, as every setting does over a file in the state folder;
    2. the site profile, for the model whose name and version it names;
    3. the model card's operating point.
Needs only pydantic: training and serving may both import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

SITE_PROFILE_FILE = "site_profile.json"
VALIDATIONS_FOLDER = "validations"
VALIDATION_ID = r"^[0-9a-f]{12}$"  # a validation's folder name under VALIDATIONS_FOLDER
THRESHOLD_SETTING = "PNEUMONIA_THRESHOLD"
CARD_TEXT = "the model card's operating point"
MAX_ACTOR = 128  # characters of who adopted it (`--by`)

OperatingSource = Literal["card", "site", "setting"]
_Instant = Annotated[AwareDatetime, PlainSerializer(lambda value: value.isoformat(),
                                                    return_type=str)]


class _Strict(BaseModel):
    # A typo or a newer profile must not pass as this one.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSummary(_Strict):
    """What the validation found, for people reading the profile: the ROC AUC with its 95%
    bootstrap interval, and sensitivity and specificity (with their 95% Wilson intervals)
    at the site operating point. None where the validation had no films of a class."""

    auc: float
    auc_low: float
    auc_high: float
    sensitivity: float | None
    sensitivity_low: float
    sensitivity_high: float
    specificity: float | None
    specificity_low: float
    specificity_high: float


class SiteProfile(_Strict):
    schema_version: Literal[1] = 1
    model_name: str = Field(min_length=1, description="the card's name validated")
    model_version: int = Field(gt=0, description="the card's version validated")
    threshold: float = Field(ge=0, le=1, description="the site operating point, on the "
                                                     "served (calibrated) probability")
    target_sensitivity: float = Field(gt=0, le=1)
    card_threshold: float = Field(ge=0, le=1, description="the card's, for comparison")
    films_used: int = Field(ge=0, description="films with a probability in the validation")
    validated_at: _Instant  # the validation's created_at
    validation_sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                                   description="of validation.json's bytes")
    adopted_by: str = Field(min_length=1, max_length=MAX_ACTOR)
    adopted_at: _Instant
    summary: SiteSummary

    @property
    def validation_id(self) -> str:
        """The folder under STATE_DIR/validations/ that holds its copies."""
        return self.validation_sha256[:12]

    def applies_to(self, name: str, version: int) -> bool:
        return self.model_name == name and self.model_version == version

    @property
    def validated_on(self) -> date:
        """The validation's date (UTC), as every door names it."""
        return self.validated_at.date()


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold a model is served at (flag when p >= threshold) and where it comes
    from: its card, the site's adopted validation, or PNEUMONIA_THRESHOLD."""

    threshold: float
    source: OperatingSource = "card"
    validated_films: int | None = None  # the site's validation only
    validated_on: date | None = None

    @property
    def text(self) -> str:
        """How every door names it: 'site operating point, validated on 624 films on
        2026-12-06', "the model card's operating point", or the setting's."""
        if self.source == "site":
            films = self.validated_films
            return (f"site operating point, validated on {films} film"
                    f"{'' if films == 1 else 's'} on {self.validated_on}")
        if self.source == "setting":
            return f"operating point set by {THRESHOLD_SETTING}"
        return CARD_TEXT


def operating_point(name: str, version: int, card_threshold: float, *,
                    setting: float | None, site: SiteProfile | None) -> OperatingPoint:
    """The one rule (see the module's docstring): `setting` is Settings.threshold for the
    default model and None for any other; `site` the profile in force, if any."""
    if setting is not None:
        return OperatingPoint(setting, "setting")
    if site is not None and site.applies_to(name, version):
        return OperatingPoint(site.threshold, "site", site.films_used, site.validated_on)
    return OperatingPoint(card_threshold, "card")
