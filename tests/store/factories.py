"""FilmRecords for the store's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.store import FilmRecord

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
THRESHOLD = 0.5


def film(study: str, sop: str | None = None, probability: float | None = 0.2, *,
         minutes: float = 0, **fields: Any) -> FilmRecord:
    """A scored, assessable film of `study`, received `minutes` after T0; flagged when
    `probability` reaches THRESHOLD. `fields` override any FilmRecord field."""
    values: dict[str, Any] = {
        "study_instance_uid": study, "sop_instance_uid": sop or f"{study}.1",
        "received_at": T0 + timedelta(minutes=minutes), "probability": probability,
        "threshold": THRESHOLD, "assessable": True, "model_name": "pneumonia",
        "model_version": "3", "scored_at": T0 + timedelta(minutes=minutes, seconds=1),
        "flagged": None if probability is None else probability >= THRESHOLD}
    return FilmRecord(**{**values, **fields})


def refused(study: str, sop: str | None = None, *, minutes: float = 0,
            code: str = "not_a_radiograph", **fields: Any) -> FilmRecord:
    """A film the service refused (e.g. a CT): listed with its reason, never scored."""
    return film(study, sop, None, minutes=minutes, assessable=False, error_code=code,
                error_detail="the film is a CT slice", threshold=None, scored_at=None,
                **fields)
