"""FilmRecords for the store's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.store import FilmRecord

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
THRESHOLD = 0.5
# The operating points of the original study's models 5 and 8 (issue 22): one list may hold
# films of both, and only the triage score compares them.
MODEL_5, MODEL_8 = 0.176, 0.964


def film(study: str, sop: str | None = None, probability: float | None = 0.2, *,
         minutes: float = 0, **fields: Any) -> FilmRecord:
    """A scored, assessable film of `study`, received `minutes` after T0; flagged when
    `probability` reaches its threshold (THRESHOLD unless `fields` give another). `fields`
    override any FilmRecord field."""
    threshold = fields.get("threshold", THRESHOLD)
    values: dict[str, Any] = {
        "study_instance_uid": study, "sop_instance_uid": sop or f"{study}.1",
        "received_at": T0 + timedelta(minutes=minutes), "probability": probability,
        "threshold": THRESHOLD, "assessable": True, "model_name": "pneumonia",
        "model_version": "3", "scored_at": T0 + timedelta(minutes=minutes, seconds=1),
        "flagged": (None if probability is None or threshold is None
                    else probability >= threshold)}
    return FilmRecord(**{**values, **fields})


def mixed_models() -> tuple[list[FilmRecord], list[str]]:
    """One study per film, scored by model 5 or model 8, and the studies' order on the list:
    by triage score within each group, which their probabilities would not give (the
    probability order is M8.high, M8, M5, M5.low; R8, R5). Triage scores in comments."""
    def scored(study: str, probability: float, threshold: float, minutes: float) -> FilmRecord:
        return film(study, probability=probability, threshold=threshold, minutes=minutes,
                    model_version="5" if threshold == MODEL_5 else "8")

    records = [
        scored("M8", 0.985, MODEL_8, 0),  # 0.79
        scored("M5", 0.98, MODEL_5, 1),  # 0.99
        scored("M8.high", 0.99, MODEL_8, 2),  # 0.86
        scored("M5.low", 0.30, MODEL_5, 3),  # 0.58
        scored("R8", 0.90, MODEL_8, 4),  # 0.47, not flagged
        scored("R5", 0.15, MODEL_5, 5),  # 0.43
    ]
    return records, ["M5", "M8.high", "M8", "M5.low", "R8", "R5"]


def refused(study: str, sop: str | None = None, *, minutes: float = 0,
            code: str = "not_a_radiograph", **fields: Any) -> FilmRecord:
    """A film the service refused (e.g. a CT): listed with its reason, never scored."""
    return film(study, sop, None, minutes=minutes, assessable=False, error_code=code,
                error_detail="the film is a CT slice", threshold=None, scored_at=None,
                **fields)
