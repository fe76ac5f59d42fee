from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.store.priority import NO_PRIORITY_RANK, Group, counts, summarise


@dataclass
class F:
    probability: float | None
    flagged: bool | None = None
    assessable: bool = True
    error_code: str | None = None
    view_position: str | None = None


@pytest.mark.parametrize(("films", "group", "priority"), [
    ([F(0.9, True)], Group.FLAGGED, 0.9),
    ([F(0.3), F(0.6, True), F(0.4)], Group.FLAGGED, 0.6),
    ([F(0.3)], Group.ROUTINE, 0.3),
    ([F(0.3, view_position="PA"), F(0.2, view_position="ap ")], Group.ROUTINE, 0.3),
    # a lateral does not count, however probable
    ([F(0.95, True, view_position="LL"), F(0.1, view_position="AP")], Group.ROUTINE, 0.1),
    ([F(0.95, True, view_position="LL")], Group.NEEDS_REVIEW, None),
    # not assessable: neither priority nor flag, and the study needs a look
    ([F(0.9, True, assessable=False)], Group.NEEDS_REVIEW, None),
    ([F(0.4), F(None, assessable=False, error_code="not_a_radiograph")],
     Group.NEEDS_REVIEW, 0.4),
    # a flag outranks doubt about another film of the study
    ([F(0.7, True), F(0.2, assessable=False)], Group.FLAGGED, 0.7),
    ([F(None, assessable=False, error_code="damaged")], Group.NEEDS_REVIEW, None),
])
def test_summarise_places_study(films: list[F], group: Group, priority: float | None) -> None:
    summary = summarise(films)
    assert (summary.group, summary.priority) == (group, priority)
    assert summary.rank == (NO_PRIORITY_RANK if priority is None else -priority)
    assert summary.film_count == len(films)


def test_counts_refused_film_never() -> None:
    assert not counts(F(0.5, error_code="lateral_view"))
    assert counts(F(0.5))
