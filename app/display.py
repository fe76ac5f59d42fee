"""How numbers are shown to people: one home for each display rule."""

from __future__ import annotations

from datetime import UTC, datetime


def percent(probability: float) -> str:
    """'43.2%'; never '100.0%' or '0.0%', because the model is never certain.

    The API returns this text next to the number, so the page, its script and the worklist
    all show what this function says.
    """
    if probability > 0.999:
        return ">99.9%"
    if probability < 0.001:
        return "<0.1%"
    return f"{probability * 100:.1f}%"


def when(moment: datetime, seconds: bool = False) -> str:
    """'2025-03-01 08:00' in UTC, as the worklist's pages show times (an aware datetime from
    either database, whatever its session's time zone)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
