"""Migrations and the schema check, on both engines."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from app.store import schema, schema_problem, upgrade
from app.store.engine import make_engine
from app.store.models import Base

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
