"""The one Wilson interval (app/contract/intervals.py), shared by the card and live
performance, against SciPy's implementation."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from app.contract.intervals import wilson


@pytest.mark.parametrize("successes,total", [(95, 100), (0, 7), (7, 7), (1, 3), (379, 390),
                                             (151, 234), (500, 1000)])
def test_wilson_matches_scipy(successes: int, total: int) -> None:
    expected = binomtest(successes, total).proportion_ci(0.95, method="wilson")
    low, high = wilson(successes, total)
    # SciPy's z is 1.959964..., ours the conventional 1.96: equal to 1e-4.
    assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-4)


def test_no_reads_know_nothing() -> None:
    assert wilson(0, 0) == [0.0, 1.0]
