"""The worklist's order, decided once: which group a study is in and how urgent it is.

A study's priority is the highest probability among its films that count: scored,
assessable, not refused, and frontal (AP or PA, or no view given: an upload says none).
Flagged studies come first, most probable first; then the rest by the same key; then the
studies that need a human look (no flagged film, and any film not assessable or refused, or
no film that counts). Ties go to the study received first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

FRONTAL_VIEWS = frozenset({"AP", "PA"})
# sort_rank of a study without a priority: after every -probability (which is <= 0).
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
    def flagged(self) -> bool | None: ...
    @property
    def assessable(self) -> bool: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def view_position(self) -> str | None: ...


@dataclass(frozen=True)
class Summary:
    """What a study row carries for the list: see the module's docstring."""

    priority: float | None
    flagged: bool
    group: Group
    rank: float  # -priority, or NO_PRIORITY_RANK: ascending rank = descending priority
    film_count: int


def counts(film: FilmLike) -> bool:
    """Whether `film` can set its study's priority and flag."""
    frontal = not film.view_position or film.view_position.strip().upper() in FRONTAL_VIEWS
    return (film.probability is not None and film.assessable and film.error_code is None
            and frontal)


def summarise(films: Iterable[FilmLike]) -> Summary:
    """The study's priority, flag and group from all its films (at least one)."""
    films = list(films)
    counted = [film for film in films if counts(film)]
    priority = max((film.probability for film in counted), default=None)  # type: ignore[type-var]
    flagged = any(film.flagged for film in counted)
    doubtful = any(not film.assessable or film.error_code is not None for film in films)
    if flagged:
        group = Group.FLAGGED
    elif doubtful or priority is None:
        group = Group.NEEDS_REVIEW
    else:
        group = Group.ROUTINE
    rank = NO_PRIORITY_RANK if priority is None else -priority
    return Summary(priority=priority, flagged=flagged, group=group, rank=rank,
                   film_count=len(films))
