"""How numbers are shown to people: one home for each display rule."""

from __future__ import annotations


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
