"""A local validation as `pneumonia-triage validate` writes it (app/contract/validation.py),
made without scoring anything: for the site profile's tests, which need its model, its site
operating point and its date, not its figures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from app.contract.validation import (
    AucEstimate,
    CalibrationBin,
    CardOperatingPoint,
    FilmCounts,
    ModelRef,
    Proportion,
    RunInfo,
    SiteOperatingPoint,
    Validation,
    ValidationCalibration,
)

VALIDATED_AT = datetime(2026, 12, 6, 14, 30, tzinfo=UTC)
REPORT_HTML = ("<!doctype html><html><head><style>body{font-family:sans-serif}</style>"
               "</head><body><h1>Local validation</h1><p>made by tests</p></body></html>")


def _share(successes: int, total: int) -> Proportion:
    return Proportion(value=successes / total if total else None, successes=successes,
                      total=total, low=0.0, high=1.0)


def site_validation(name: str, version: int, card_threshold: float, site_threshold: float,
                    *, used: int = 624, created_at: datetime = VALIDATED_AT,
                    target_sensitivity: float = 0.95) -> Validation:
    """A validation of model `name` v`version` on `used` films (about 60% pneumonia) whose
    site operating point is `site_threshold`."""
    positives = round(used * 0.6)
    negatives = used - positives

    def figures(threshold: float) -> dict:
        return {"threshold": threshold, "sensitivity": _share(positives - 10, positives),
                "specificity": _share(negatives - 40, negatives),
                "ppv": _share(positives - 10, positives + 30),
                "npv": _share(negatives - 40, negatives - 30)}

    site = SiteOperatingPoint(target_sensitivity=target_sensitivity,
                              **figures(site_threshold))
    return Validation(
        created_at=created_at,
        model=ModelRef(name=name, version=version, threshold=card_threshold),
        films=FilmCounts(listed=used, used=used, refused=0, not_assessable=0,
                         positives=positives, negatives=negatives, refused_by_reason={},
                         not_assessable_by_reason={}),
        auc=AucEstimate(value=0.93, low=0.91, high=0.95, draws=2000, skipped_draws=0, seed=7),
        card_operating_point=CardOperatingPoint(card=[], **figures(card_threshold)),
        site_operating_point=site,
        sensitivity_table=[site],
        calibration=ValidationCalibration(
            bins=[CalibrationBin(low=0.0, high=1.0, n=used, mean_probability=0.6,
                                 observed_rate=positives / used)], ece=0.0, brier=0.1),
        subgroups=[], confident_errors=[],
        run=RunInfo(labels="labels.csv", labels_kind="csv", subgroup_columns=[],
                    scores="scores", seconds=10.0, films_per_second=used / 10.0))


def validation_folder(folder: Path, validation: Validation) -> Path:
    """`folder` holding `validation`'s validation.json and a small report.html, as the
    validate command leaves its --out folder."""
    folder.mkdir(parents=True, exist_ok=True)
    validation.write(folder)
    (folder / "report.html").write_text(REPORT_HTML)
    return folder
