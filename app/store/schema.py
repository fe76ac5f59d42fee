"""The schema's version: Alembic migrations shipped in app/store/migrations, run from code.

The Alembic Config is built here (no alembic.ini), from this file's location, so migrations
run the same from a checkout, an installed package or `python -m`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from app.store.engine import for_writing, make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: PostgreSQL's transaction-scoped advisory lock that serialises replicas'
# `db upgrade` runs (the second finds the schema at head and does nothing).
_UPGRADE_LOCK = 0x5EED_0018


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the shipped migrations; `connection` is the one env.py
    runs them on (for `alembic` commands such as revision, from Python)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


@lru_cache(maxsize=4)
def _revisions(migrations: Path) -> tuple[frozenset[str], frozenset[str]]:
    """The heads and all revisions in `migrations`: read once, /readyz asks often."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    scripts = ScriptDirectory.from_config(config)
    return (frozenset(scripts.get_heads()),
            frozenset(script.revision for script in scripts.walk_revisions()))


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Bring the database's schema to `revision` (default: the code's head).

    Idempotent, and safe when several processes start at once: SQLite serialises them by
    BEGIN IMMEDIATE, PostgreSQL by an advisory lock. Raises SQLAlchemyError when the
    database is unreachable or a migration fails (nothing of that migration is kept on
    PostgreSQL, where DDL is transactional).
    """
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with for_writing(engine).begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _UPGRADE_LOCK})
            command.upgrade(alembic_config(connection), revision)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def schema_problem(url_or_engine: str | Engine) -> str | None:
    """None when the database is reachable and its schema is at the code's head; else one
    short sentence for /readyz, naming no host or password."""
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as exc:
        return f"database unreachable ({type(exc.__cause__ or exc).__name__})"
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
    heads, known = _revisions(MIGRATIONS)
    if current == heads:
        return None
    if not current:
        return "database schema not created: run `db upgrade`"
    unknown = current - known
    if unknown:
        return (f"database schema is ahead of this code (revision {', '.join(sorted(unknown))}"
                " unknown here): deploy the newer version")
    return (f"database schema is behind the code (at {', '.join(sorted(current))}, code needs "
            f"{', '.join(sorted(heads))}): run `db upgrade`")
