"""Migrations and the schema check, on both engines."""

from __future__ import annotations

import multiprocessing
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text

from app.store import FilmRecord, WorklistStore, schema, schema_problem, upgrade
from app.store.engine import for_writing, make_engine
from app.store.models import Base, Film, Study
from app.store.priority import counts, summarise
from tests.store.factories import MODEL_5, MODEL_8, film, mixed_models, refused

_PROBE_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{head}"


def upgrade() -> None:
    op.create_table("probe", sa.Column("id", sa.Integer(), primary_key=True))
'''


def test_upgrade_brings_empty_database_to_head(empty_url: str) -> None:
    assert schema_problem(empty_url) == "database schema not created: run `db upgrade`"
    upgrade(empty_url)
    upgrade(empty_url)  # again: nothing to do
    assert schema_problem(empty_url) is None


def test_migrations_create_what_models_declare(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection),
                                           Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_schema_problem_names_schema_behind_code(url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    newer = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS, newer)
    (newer / "versions" / "9001_probe.py").write_text(
        _PROBE_REVISION.format(head=schema.head()))
    monkeypatch.setattr(schema, "MIGRATIONS", newer)  # the code one revision ahead
    reason = schema_problem(url)
    assert reason is not None and reason.startswith("database schema is behind the code")
    assert "9001" in reason and "db upgrade" in reason
    upgrade(url)
    assert schema_problem(url) is None


def test_schema_problem_names_schema_ahead_of_code(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    assert schema_problem(url) == (
        "database schema is ahead of this code (revision 9999 unknown here): "
        "deploy the newer version")


@pytest.mark.parametrize("url", [
    "sqlite:////nonexistent/folder/worklist.db",
    "postgresql+psycopg://triage:s3cret@127.0.0.1:1/worklist?connect_timeout=2",
])
def test_schema_problem_names_unreachable_database_without_secrets(url: str) -> None:
    reason = schema_problem(url)
    assert reason == "database unreachable (OperationalError)"


def _upgrade_in_child(url: str) -> None:
    upgrade(url)


@pytest.mark.slow
def test_upgrade_from_two_processes_at_once(empty_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_upgrade_in_child, args=(empty_url,))
                 for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]
    assert schema_problem(empty_url) is None


# --- 0003: studies ranked by triage score -------------------------------------------------

# What revision 0002's code stored of a study beside its films: no triage score, and the
# rank of the highest probability.
_RANKED = ("priority", "sort_group", "sort_rank", "flagged", "film_count")


def _studies_of_both_models() -> tuple[list[list[FilmRecord]], list[str]]:
    """Issue 22's studies, one film each, and three of several films: X scored by both
    models (the model 5 film leads, though less probable), L whose most probable film is a
    lateral, N with nothing that counts. Their order on the list."""
    records, expected = mixed_models()
    several = [
        [film("X", "X.1", 0.985, threshold=MODEL_8, minutes=6),
         film("X", "X.2", 0.98, threshold=MODEL_5, minutes=6)],
        [film("L", "L.1", 0.99, threshold=MODEL_8, view_position="LL", minutes=7),
         film("L", "L.2", 0.2, threshold=MODEL_5, view_position="PA", minutes=7)],
        [film("N", "N.1", 0.7, assessable=False, minutes=8), refused("N", "N.2", minutes=8)],
    ]
    # X leads with M5's film (a tie, received later); L ranks by its frontal film alone,
    # flagged (0.2 of model 5, above 0.176) at 0.51: after M5.low's 0.58, before R8's 0.47
    order = ["M5", "X", *expected[1:4], "L", *expected[4:], "N"]
    return [[record] for record in records] + several, order


_AFTER_0002 = {"results_error", "content_hash", "display", "window"}  # of later revisions


def _store_as_0002(url: str, studies: list[list[FilmRecord]]) -> None:
    """Each study's films, written as revision 0002's code wrote them: priority the highest
    probability of a film that counts, sort_rank its negative."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            for study_id, films in enumerate(studies, start=1):
                summary = summarise(films)
                priority = max((f.probability for f in films if counts(f)), default=None)
                first = films[0]
                connection.execute(insert(Study.__table__).values(
                    id=study_id, study_instance_uid=first.study_instance_uid,
                    source=first.source, received_at=first.received_at,
                    last_received_at=first.received_at, status="new", priority=priority,
                    flagged=summary.flagged, film_count=len(films),
                    sort_group=int(summary.group),
                    sort_rank=1.0 if priority is None else -priority))
                for record in films:
                    row = {name: value for name, value in asdict(record).items()
                           if name in Film.__table__.c and name not in _AFTER_0002}
                    connection.execute(insert(Film.__table__).values(
                        {**row, "study_id": study_id, "reasons": list(record.reasons),
                         "warnings": list(record.warnings)}))
    finally:
        engine.dispose()


def _studies(url: str, *names: str) -> dict[str, tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Study.__table__.c.study_instance_uid, *(
                Study.__table__.c[name] for name in names))).all()
    finally:
        engine.dispose()
    return {row[0]: tuple(row[1:]) for row in rows}


def _listed(url: str) -> list[str]:
    store = WorklistStore(url)
    try:
        return [entry.study_instance_uid for entry in store.entries().entries]
    finally:
        store.close()


def test_upgrade_ranks_existing_studies_as_new_ones_by_triage_score(empty_url: str) -> None:
    studies, expected = _studies_of_both_models()
    upgrade(empty_url, "0002")
    _store_as_0002(empty_url, studies)
    ranks = _studies(empty_url, "sort_rank")
    assert ranks["M8.high"] < ranks["M5"]  # 0002: by probability
    upgrade(empty_url)
    assert _listed(empty_url) == expected
    # what today's code stores for the same films (app/store/writes.py), to the bit
    new = {}
    for films in studies:
        summary = summarise(films)
        new[films[0].study_instance_uid] = (summary.priority, summary.triage_score,
                                            summary.rank, int(summary.group))
    assert _studies(empty_url, "priority", "triage_score", "sort_rank", "sort_group") == new
    assert new["X"][0] == 0.98  # the priority is the leading film's probability


def test_downgrade_puts_back_the_probability_order(empty_url: str) -> None:
    studies, _ = _studies_of_both_models()
    upgrade(empty_url, "0002")
    _store_as_0002(empty_url, studies)
    before = _studies(empty_url, *_RANKED)
    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with for_writing(engine).begin() as connection:
            command.downgrade(schema.alembic_config(connection), "0002")
        assert "triage_score" not in {c["name"] for c in inspect(engine).get_columns("studies")}
    finally:
        engine.dispose()
    assert _studies(empty_url, *_RANKED) == before


# --- 0004: why a film's results will not reach the PACS ------------------------------------


def _film_columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns("films")}
    finally:
        engine.dispose()


def test_upgrade_to_0004_adds_results_error_and_downgrade_drops_it(empty_url: str) -> None:
    studies, _ = _studies_of_both_models()
    upgrade(empty_url, "0003")
    _store_as_0002(empty_url, studies)
    before = _studies(empty_url, *_RANKED)
    assert "results_error" not in _film_columns(empty_url)
    upgrade(empty_url, "0004")
    assert "results_error" in _film_columns(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.begin() as connection:  # films stored before: no reason known
            assert connection.execute(text(
                "SELECT count(*) FROM films WHERE results_error IS NOT NULL")).scalar() == 0
            connection.execute(text("UPDATE films SET results_error = 'identity' "
                                    "WHERE sop_instance_uid = 'M5.1'"))
        with for_writing(engine).begin() as connection:
            command.downgrade(schema.alembic_config(connection), "0003")
    finally:
        engine.dispose()
    assert "results_error" not in _film_columns(empty_url)
    upgrade(empty_url)  # and up again, to head
    assert schema_problem(empty_url) is None
    assert _studies(empty_url, *_RANKED) == before  # nothing of the list moved


# --- 0005: patient keys, conflict entries and pixel hashes ----------------------------------


def _columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_upgrade_to_0005_keeps_the_list_and_downgrade_lists_conflicts_as_new(
        empty_url: str) -> None:
    studies, _ = _studies_of_both_models()
    upgrade(empty_url, "0004")
    _store_as_0002(empty_url, studies)
    before = _studies(empty_url, *_RANKED)
    upgrade(empty_url)
    assert {"patient_key", "conflict_of"} <= _columns(empty_url, "studies")
    assert "content_hash" in _columns(empty_url, "films")
    assert _studies(empty_url, *_RANKED) == before  # nothing of the list moved
    if empty_url.startswith("postgresql"):  # _store_as_0002 wrote the ids itself
        engine = make_engine(empty_url)
        with engine.begin() as connection:
            connection.execute(text("SELECT setval(pg_get_serial_sequence('studies', 'id'),"
                                    " (SELECT max(id) FROM studies))"))
        engine.dispose()
    store = WorklistStore(empty_url)
    try:  # a study stored before takes its first key; another patient's film is apart
        store.add_films([film("M8", "M8.9", 0.5, patient_key="1" * 64)])
        added = store.add_received([film("M8", "M8.10", 0.5, patient_key="2" * 64)])
        assert [e.status for e in store.entries(status="conflict").entries] == ["conflict"]
    finally:
        store.close()
    assert list(added.conflicts.values()) == ["patient"]
    engine = make_engine(empty_url)
    try:
        with for_writing(engine).begin() as connection:
            command.downgrade(schema.alembic_config(connection), "0004")
        with engine.connect() as connection:
            statuses = connection.execute(text("SELECT status FROM studies")).scalars().all()
    finally:
        engine.dispose()
    assert "conflict" not in statuses and statuses.count("new") == len(studies) + 1
    assert "patient_key" not in _columns(empty_url, "studies")
    assert "content_hash" not in _columns(empty_url, "films")
    upgrade(empty_url)  # and up again
    assert schema_problem(empty_url) is None
