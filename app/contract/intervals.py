"""Confidence intervals of proportions: one definition for the card's figures (training
writes them) and the live figures measured from radiologists' reads (app/services/
performance.py). Plain Python: the contract imports nothing heavy."""

from __future__ import annotations

import math

Z_95 = 1.96  # the standard normal's 97.5th percentile: a two-sided 95% interval


def wilson(successes: int, total: int, z: float = Z_95) -> list[float]:
    """[low, high] of the 95% Wilson score interval of `successes` out of `total` (Wilson,
    JASA 1927; the interval Brown, Cai and DasGupta, Statistical Science 2001, recommend
    over the normal one, which collapses to a point at 0 or n successes). [0, 1] when
    `total` is 0: nothing is known."""
    if total == 0:
        return [0.0, 1.0]
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [max(0.0, centre - half), min(1.0, centre + half)]
