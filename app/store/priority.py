"""The worklist's order, decided once: which group a study is in and how urgent it is.

The films that count for a study: scored, assessable, not refused, and frontal (AP or PA, or
no view given: an upload says none). Its *leading* film is the one of those with the highest
triage score, each at the threshold it was scored at (app/contract/triage_score.py,
torchxrayvision's op_norm): films of one list may come from models whose operating points
differ (0.176 and 0.964), and only the triage score puts them on one scale, the one the page
shows. A study's rank is its leading film's triage score, its priority that film's
probability.

Flagged studies come first, highest triage score first; then the rest by the same key; then
the studies that need a human look (no flagged film, and any film not assessable or refused,
or no film that counts). Ties go to the study received first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, TypeVar

from app.contract.triage_score import triage_score

FRONTAL_VIEWS = frozenset({"AP", "PA"})
# sort_rank of a study without a triage score: after every -score (which is <= 0).
NO_PRIORITY_RANK = 1.0


class Group(IntEnum):
    """The list's three groups, in the order shown."""

    FLAGGED = 0
    ROUTINE = 1
    NEEDS_REVIEW = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class FilmLike(Protocol):
    """What the rule reads of a film: a FilmRecord, a Film row or a result row."""

    @property
    def probability(self) -> float | None: ...
    @property
    def threshold(self) -> float | None: ...
    @property
    def flagged(self) -> bool | None: ...
    @property
    def assessable(self) -> bool: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def view_position(self) -> str | None: ...


F = TypeVar("F", bound=FilmLike)


@dataclass(frozen=True)
class Summary:
    """What a study row carries for the list: see the module's docstring.

    `triage_score` (0-1) and `priority` (its probability, 0-1) are the leading film's, None
    when no film counts. `rank` is -triage_score, or NO_PRIORITY_RANK without one: ascending
    rank is descending triage score.
    """

    priority: float | None
    triage_score: float | None
    flagged: bool
    group: Group
    rank: float
    film_count: int


def counts(film: FilmLike) -> bool:
    """Whether `film` can set its study's priority and flag."""
    frontal = not film.view_position or film.view_position.strip().upper() in FRONTAL_VIEWS
    return (film.probability is not None and film.assessable and film.error_code is None
            and frontal)


def score(film: FilmLike) -> float | None:
    """A counted film's triage score (0-1) at the threshold it was scored at; None without a
    threshold (every film stored since FilmRecord required one has it).
    Raises ValueError for a probability or threshold outside [0, 1]."""
    if film.probability is None or film.threshold is None:
        return None
    return triage_score(film.probability, film.threshold)


def _urgency(film: FilmLike) -> tuple[float, float]:
    """The key of the leading film: its triage score, a film without one last; a tie of
    scores to the higher probability, so the choice never depends on the films' order."""
    found = score(film)
    return (-1.0 if found is None else found, film.probability or 0.0)


def leading(films: Iterable[F]) -> F | None:
    """The study's leading film: of the films that count, the one with the highest triage
    score; None when none counts."""
    return max((film for film in films if counts(film)), key=_urgency, default=None)


def summarise(films: Iterable[FilmLike]) -> Summary:
    """The study's priority, triage score, flag and group from all its films (at least
    one). Raises ValueError for a counted film's probability or threshold outside [0, 1]."""
    films = list(films)
    counted = [film for film in films if counts(film)]
    lead = leading(counted)
    priority = None if lead is None else lead.probability
    ranked = None if lead is None else score(lead)
    flagged = any(film.flagged for film in counted)
    doubtful = any(not film.assessable or film.error_code is not None for film in films)
    if flagged:
        group = Group.FLAGGED
    elif doubtful or priority is None:
        group = Group.NEEDS_REVIEW
    else:
        group = Group.ROUTINE
    rank = NO_PRIORITY_RANK if ranked is None else -ranked
    return Summary(priority=priority, triage_score=ranked, flagged=flagged, group=group,
                   rank=rank, film_count=len(films))
