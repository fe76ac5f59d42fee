"""`pneumonia-triage validate`: a site measures the served model on its own labelled films.

    LABELS (app/archive/validate_labels.py) -> archive run into DIR/scores (app/archive/run.py,
    the same engine and rows as `archive score`) -> figures of the used films
    (app/archive/validate_figures.py) -> DIR/validation.json (app/contract/validation.py)
    and DIR/report.html (app/archive/validation_report.py)

A film the archive refused (unreadable, not a film the app takes) or one the model cannot
judge (needs a human look) is counted by reason and is in no figure: the figures are those of
the films the app would rank. Subgroups come from the rows' header facts, in bands, and the
labels file's own `subgroup:*` columns; never a name, patient ID or birth date.
"""

from __future__ import annotations

import base64
import io
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from app.archive.engine import Engine
from app.archive.output import Output
from app.archive.run import ArchiveError, Model, Request, score_archive
from app.archive.sources import read_source
from app.archive.validate_figures import (
    bootstrap_auc,
    calibration,
    card_point,
    figures,
    sensitivity_table,
    site_point,
    subgroup_facet,
)
from app.archive.validate_labels import Labelled, Labels, read_labels
from app.archive.validation_report import write_report
from app.config import Settings
from app.contract.card import CLASS_NAMES, ModelCard
from app.contract.dicom_age import age_string_years
from app.contract.preprocessing import decode, model_film
from app.contract.validation import (
    ConfidentError,
    FilmCounts,
    ModelRef,
    RunInfo,
    Validation,
)

SCORES = "scores"  # DIR/scores: the archive run
REPORT_FILE = "report.html"
DEFAULT_SEED = 20240530
CONFIDENT_ERRORS = 6  # of each kind
THUMBNAIL_PX = 160
UNKNOWN = "unknown"
# Age bands of a paediatric service, in completed years: [low, high).
AGE_BANDS = ((0, 1, "under 1 year"), (1, 6, "1 to 5 years"), (6, 12, "6 to 11 years"),
             (12, 18, "12 to 17 years"), (18, 200, "18 years and over"))
# Row spacing of the detector in mm: [low, high).
SPACING_BANDS = ((0.0, 0.1, "under 0.10 mm"), (0.1, 0.15, "0.10 to 0.15 mm"),
                 (0.15, 0.2, "0.15 to 0.20 mm"), (0.2, 1e9, "0.20 mm and over"))


class ValidateError(Exception):
    """A validation that cannot be made as asked; the message says why and what to do."""


@dataclass(frozen=True)
class ValidateRequest:
    labels: str
    out: str
    model: str | None = None
    target_sensitivity: float | None = None  # None: the card's own
    seed: int = DEFAULT_SEED
    resume: bool = False


@dataclass
class Outcome:
    """What became of each labelled film: used (with its row), refused or not assessable."""

    used: list[tuple[Labelled, dict]] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)  # error code -> films
    not_assessable: Counter = field(default_factory=Counter)  # reason -> films
    not_assessable_films: int = 0

    @property
    def y(self) -> np.ndarray:
        return np.array([film.label for film, _ in self.used], dtype=int)

    @property
    def p(self) -> np.ndarray:
        return np.array([row["probability"] for _, row in self.used], dtype=float)


@dataclass(frozen=True)
class Made:
    """A validation made: the JSON's contents, and the used films' labels and probabilities
    for the report's curves."""

    validation: Validation
    outcome: Outcome
    thumbnails: dict[int, str]  # index in validation.confident_errors -> PNG data URI


@dataclass(frozen=True)
class Plan:
    """A validation checked before anything is scored: its films, card and target."""

    request: ValidateRequest
    labels: Labels
    card: ModelCard
    target: float


def plan(request: ValidateRequest, settings: Settings) -> Plan:
    """Read and check what a validation needs, scoring nothing. Raises LabelsError;
    ValidateError for a target sensitivity it cannot use; ModelNotFoundError, CardError for
    the model."""
    target = request.target_sensitivity
    if target is not None and not 0 < target <= 1:
        raise ValidateError(f"--target-sensitivity {target} is not above 0 and at most 1")
    labels = read_labels(request.labels)
    card = Model.resolve(settings, request.model).card
    if target is None and card.operating_point is None:
        raise ValidateError(f"model {card.name} v{card.version}'s card states no target "
                            "sensitivity: give --target-sensitivity")
    return Plan(request, labels, card, target or card.operating_point.target_sensitivity)


def validate(planned: Plan, engine: Engine, settings: Settings, progress: bool = True) -> Made:
    """Score the planned films into DIR/scores, write DIR/validation.json and
    DIR/report.html. Raises ValidateError for an output folder it cannot score into, or
    without films of both labels to measure; SourceError, SiteProfileError as `archive
    score` does."""
    request, labels, card, target = (planned.request, planned.labels, planned.card,
                                     planned.target)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        score_archive(Request(labels.sources, str(out / SCORES), request.model,
                              resume=request.resume), engine, settings, progress)
    except ArchiveError as exc:
        raise ValidateError(f"{exc} (the scores of {out})") from None
    seconds = time.monotonic() - started
    outcome = gather(labels, _rows(out / SCORES))
    validation = measure(labels, outcome, card, target, request, seconds)
    made = Made(validation, outcome, _thumbnails(validation, labels, card, settings))
    validation.write(out)
    write_report(out / REPORT_FILE, validation, outcome.y, outcome.p, made.thumbnails, card)
    return made


def _rows(scores: Path) -> dict[str, dict]:
    """source -> its row (the latest, where a resumed run wrote a changed file again)."""
    data = Output(str(scores)).dataset()
    found: dict[str, dict] = {}
    for row in sorted(data.to_table().to_pylist() if data else [],
                      key=lambda r: r["scored_at"]):
        found[row["source"]] = row
    return found


def gather(labels: Labels, rows: dict[str, dict]) -> Outcome:
    """Each labelled film's outcome from its row; a film without one counts as refused
    (`not_scored`)."""
    outcome = Outcome()
    for film in labels.films:
        row = rows.get(film.source)
        if row is None or row["decision"] is None:
            outcome.refused[(row or {}).get("error") or "not_scored"] += 1
        elif row["probability"] is None:  # needs a human look
            outcome.not_assessable_films += 1
            outcome.not_assessable.update(row["reasons"] or ["unstated"])
        else:
            outcome.used.append((film, row))
    return outcome


def measure(labels: Labels, outcome: Outcome, card: ModelCard, target: float,
            request: ValidateRequest, seconds: float) -> Validation:
    """The validation of the used films; ValidateError when they lack a label."""
    y, p = outcome.y, outcome.p
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise ValidateError(
            f"{len(y)} films could be used, {positives} of them labelled pneumonia: a "
            f"validation needs films of both labels ({sum(outcome.refused.values())} refused: "
            f"{dict(outcome.refused) or 'none'}; {outcome.not_assessable_films} the model "
            f"cannot judge: {dict(outcome.not_assessable) or 'none'})")
    whole = figures(y, p, card.threshold)
    facets = _facet_values(labels, outcome)
    listed = len(labels.films)
    return Validation(
        created_at=datetime.now(UTC),
        model=ModelRef(name=card.name, version=card.version, threshold=card.threshold),
        films=FilmCounts(listed=listed, used=len(y),
                         refused=sum(outcome.refused.values()),
                         not_assessable=outcome.not_assessable_films, positives=positives,
                         negatives=len(y) - positives,
                         refused_by_reason=dict(sorted(outcome.refused.items())),
                         not_assessable_by_reason=dict(sorted(outcome.not_assessable.items()))),
        auc=bootstrap_auc(y, p, request.seed),
        card_operating_point=card_point(y, p, card),
        site_operating_point=site_point(y, p, target),
        sensitivity_table=sensitivity_table(y, p),
        calibration=calibration(y, p),
        subgroups=[subgroup_facet(name, values, y, p, card.threshold, whole)
                   for name, values in facets.items()],
        confident_errors=_confident_errors(outcome, card.threshold),
        run=RunInfo(labels=request.labels, labels_kind=labels.kind,
                    subgroup_columns=labels.subgroup_columns, scores=SCORES,
                    seconds=round(seconds, 3),
                    films_per_second=round(listed / seconds, 2) if seconds > 0 else 0.0))


def _facet_values(labels: Labels, outcome: Outcome) -> dict[str, list[str]]:
    """Facet -> each used film's value of it: the header facts in bands, then the labels
    file's own columns."""
    rows = [row for _, row in outcome.used]
    facets = {"equipment": [_equipment(row) for row in rows],
              "view_position": [_upper(row["view_position"]) for row in rows],
              "age_band": [_band(age_string_years(row["patient_age"]), AGE_BANDS)
                           for row in rows],
              "sex": [_upper(row["patient_sex"]) for row in rows],
              "body_part": [_upper(row["body_part"]) for row in rows],
              "pixel_spacing_band": [_band(row["pixel_spacing_mm"], SPACING_BANDS)
                                     for row in rows],
              "file_kind": [{"MPO": "JPEG"}.get(row["format"], row["format"] or UNKNOWN)
                            for row in rows]}
    for column in labels.subgroup_columns:
        facets[column] = [film.subgroups[column] for film, _ in outcome.used]
    return facets


def _equipment(row: dict) -> str:
    named = " ".join(part for part in (row["manufacturer"], row["manufacturer_model"])
                     if part)
    return named or UNKNOWN


def _upper(value: str | None) -> str:
    return value.strip().upper() if value and value.strip() else UNKNOWN


def _band(value: float | None, bands: tuple[tuple[float, float, str], ...]) -> str:
    if value is None:
        return UNKNOWN
    return next((name for low, high, name in bands if low <= value < high), UNKNOWN)


def _confident_errors(outcome: Outcome, threshold: float) -> list[ConfidentError]:
    """The false positives of highest probability and the false negatives of lowest, up to
    CONFIDENT_ERRORS of each."""
    films = [(film, row["probability"]) for film, row in outcome.used]
    wrong_positive = sorted(((f, p) for f, p in films if f.label == 0 and p >= threshold),
                            key=lambda fp: -fp[1])
    wrong_negative = sorted(((f, p) for f, p in films if f.label == 1 and p < threshold),
                            key=lambda fp: fp[1])
    return [ConfidentError(kind=kind, line=film.line, source=film.given,
                           label=CLASS_NAMES[film.label], probability=probability)
            for kind, found in (("false_positive", wrong_positive),
                                ("false_negative", wrong_negative))
            for film, probability in found[:CONFIDENT_ERRORS]]


def _thumbnails(validation: Validation, labels: Labels, card: ModelCard,
                settings: Settings) -> dict[int, str]:
    """A small PNG of each confident error's film as the model sees it (its borders cropped,
    no header text), as a data URI; a film that cannot be read again has none."""
    where = {film.given: film.source for film in labels.films}
    found = {}
    for index, error in enumerate(validation.confident_errors):
        try:
            data = read_source(where[error.source], settings.max_upload_bytes)
            found[index] = _thumbnail(data, card, settings)
        except Exception:  # noqa: BLE001 - a film moved or changed since: no thumbnail
            continue
    return found


def _thumbnail(data: bytes, card: ModelCard, settings: Settings) -> str:
    pixels = decode(data, settings.max_image_pixels, target=(2 * THUMBNAIL_PX,) * 2).pixels
    film = Image.fromarray(np.ascontiguousarray(
        model_film(pixels, card.input.preprocessing_version)[0])).convert("L")
    film.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    sink = io.BytesIO()
    film.save(sink, "PNG")
    return "data:image/png;base64," + base64.b64encode(sink.getvalue()).decode("ascii")
