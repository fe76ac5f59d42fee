from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.contract.triage_score import triage_score
from app.store.priority import NO_PRIORITY_RANK, Group, counts, summarise

# The operating points of the original study's model 5 and model 8 (issue 22).
MODEL_5, MODEL_8 = 0.176, 0.964


@dataclass
class F:
    probability: float | None
    flagged: bool | None = None
    assessable: bool = True
    error_code: str | None = None
    view_position: str | None = None
    threshold: float | None = 0.5


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
    # one model (threshold 0.5): the triage score orders as the probability does
    score = None if priority is None else triage_score(priority, 0.5)
    assert summary.triage_score == score
    assert summary.rank == (NO_PRIORITY_RANK if score is None else -score)
    assert summary.film_count == len(films)


def test_studies_of_different_models_rank_by_triage_score_not_probability() -> None:
    # issue 22's example: p=0.985 of model 8 is a triage score of 0.79, p=0.98 of model 5
    # one of 0.99; both flagged, and model 5's film is the more urgent.
    model_8 = summarise([F(0.985, True, threshold=MODEL_8)])
    model_5 = summarise([F(0.98, True, threshold=MODEL_5)])
    assert model_8.triage_score == pytest.approx(0.7917, abs=1e-4)
    assert model_5.triage_score == pytest.approx(0.9879, abs=1e-4)
    assert model_5.group == model_8.group == Group.FLAGGED
    assert model_5.rank < model_8.rank  # ascending rank: model 5's study first


def test_the_leading_film_sets_both_score_and_priority() -> None:
    # one study scored by both models: the film with the higher triage score leads, and the
    # priority is its probability, not the study's highest probability
    summary = summarise([F(0.985, True, threshold=MODEL_8), F(0.98, True, threshold=MODEL_5)])
    assert summary.priority == 0.98
    assert summary.triage_score == triage_score(0.98, MODEL_5)
    assert summary.rank == -summary.triage_score


def test_a_film_without_a_threshold_ranks_after_every_score() -> None:
    # only a row stored before thresholds were required can lack one: listed, never first
    summary = summarise([F(0.9, threshold=None)])
    assert (summary.priority, summary.triage_score, summary.rank) == (0.9, None,
                                                                      NO_PRIORITY_RANK)
    assert summarise([F(0.9, threshold=None), F(0.2)]).triage_score == triage_score(0.2, 0.5)


def test_counts_refused_film_never() -> None:
    assert not counts(F(0.5, error_code="lateral_view"))
    assert counts(F(0.5))
