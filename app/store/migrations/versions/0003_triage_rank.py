"""Studies ranked by triage score, not by probability (issue 22): a `triage_score` column, and
every study's priority, triage score and sort_rank recomputed from its films' stored
probability and threshold, so that an upgraded database orders as a new one does.

Downgrade puts back the probability order (priority the highest probability, sort_rank
-priority) and drops the column. Groups (sort_group) and flags are the same under both
rules and are left alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

The rules are written out here, not imported from app.store.priority and
app.contract.triage_score, so that this revision keeps doing what it did when the code
moves on. The arithmetic is Python's, in the same order as the code's, so that a study
upgraded here and one stored afterwards get bit-for-bit the same rank on both engines (SQL's
arithmetic, its literals' types and its trim() differ between SQLite and PostgreSQL).
"""

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Studies read and written per round: bounds the memory of a large list, and keeps each
# statement's parameters under SQLite's limit.
BATCH = 2_000
NO_PRIORITY_RANK = 1.0  # app/store/priority.py: after every -score

_studies = sa.table("studies", sa.column("id", BigId), sa.column("priority", sa.Double()),
                    sa.column("triage_score", sa.Double()), sa.column("sort_rank", sa.Double()))
_films = sa.table("films", sa.column("id", BigId), sa.column("study_id", BigId),
                  sa.column("probability", sa.Double()), sa.column("threshold", sa.Double()),
                  sa.column("assessable", sa.Boolean()), sa.column("error_code", sa.String()),
                  sa.column("view_position", sa.String()))

# (priority, triage_score, sort_rank) of a study from its films' rows.
Rule = Callable[[list[Any]], tuple[float | None, float | None, float]]


def _counts(film: Any) -> bool:
    """app/store/priority.py `counts` as of revision 0003: scored, assessable, not refused,
    frontal (AP, PA or no view)."""
    view = film.view_position
    frontal = not view or view.strip().upper() in ("AP", "PA")
    return (film.probability is not None and bool(film.assessable)
            and film.error_code is None and frontal)


def _triage_score(probability: float, operating_point: float) -> float:
    """app/contract/triage_score.py `triage_score` (torchxrayvision's op_norm) as of
    revision 0003. Both in [0, 1]: FilmRecord and the model card refuse anything else."""
    if probability < operating_point:
        return 0.5 * probability / operating_point
    if operating_point >= 1.0:
        return 1.0
    return 1.0 - 0.5 * (1.0 - probability) / (1.0 - operating_point)


def _by_triage_score(films: list[Any]) -> tuple[float | None, float | None, float]:
    """The leading film (highest triage score, then probability; one without a threshold
    last): its probability, its score, and -score as the rank (app/store/priority.py)."""
    def urgency(film: Any) -> tuple[float, float]:
        score = (None if film.threshold is None
                 else _triage_score(film.probability, film.threshold))
        return (-1.0 if score is None else score, film.probability)

    counted = [film for film in films if _counts(film)]
    if not counted:
        return None, None, NO_PRIORITY_RANK
    leading = max(counted, key=urgency)
    score = (None if leading.threshold is None
             else _triage_score(leading.probability, leading.threshold))
    return leading.probability, score, NO_PRIORITY_RANK if score is None else -score


def _by_probability(films: list[Any]) -> tuple[float | None, float | None, float]:
    """Revision 0002's rule: the highest probability, and -probability as the rank."""
    priority = max((film.probability for film in films if _counts(film)), default=None)
    return priority, None, NO_PRIORITY_RANK if priority is None else -priority


def _restamp(rule: Rule, with_score: bool) -> None:
    """Every study's priority, sort_rank (and triage_score when `with_score`) by `rule`, a
    BATCH of studies at a time in id order."""
    connection = op.get_bind()
    values = {"priority": sa.bindparam("new_priority"), "sort_rank": sa.bindparam("new_rank")}
    if with_score:
        values["triage_score"] = sa.bindparam("new_score")
    statement = (sa.update(_studies).where(_studies.c.id == sa.bindparam("study"))
                 .values(**values))
    last = None
    while True:
        query = sa.select(_studies.c.id).order_by(_studies.c.id).limit(BATCH)
        if last is not None:
            query = query.where(_studies.c.id > last)
        ids = connection.execute(query).scalars().all()
        if not ids:
            return
        films: dict[int, list[Any]] = {study: [] for study in ids}
        for film in connection.execute(sa.select(_films).where(
                _films.c.study_id.between(ids[0], ids[-1]))):
            films[film.study_id].append(film)
        rows = []
        for study, its_films in films.items():
            priority, score, rank = rule(its_films)
            rows.append({"study": study, "new_priority": priority, "new_rank": rank,
                         "new_score": score})
        connection.execute(statement, rows)
        last = ids[-1]


def upgrade() -> None:
    op.add_column("studies", sa.Column("triage_score", sa.Double()))
    _restamp(_by_triage_score, with_score=True)


def downgrade() -> None:
    _restamp(_by_probability, with_score=False)
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later) keeps the table in place,
    # where a batch operation would copy every row into a new one.
    op.drop_column("studies", "triage_score")
