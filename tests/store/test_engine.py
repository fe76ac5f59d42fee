"""Engines: the default SQLite file and its settings; URLs the store refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from app.store import database_url, make_engine


def test_database_url_defaults_to_sqlite_in_created_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state" / "var"
    url = database_url(None, state)
    assert state.is_dir() and url == f"sqlite:///{state.resolve() / 'worklist.db'}"


def test_database_url_keeps_given_url(tmp_path: Path) -> None:
    given = "postgresql+psycopg://triage@db/worklist"
    assert database_url(given, tmp_path / "unused") == given
    assert not (tmp_path / "unused").exists()


def test_make_engine_sets_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as connection:
        pragma = {name: connection.execute(text(f"PRAGMA {name}")).scalar()
                  for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous",
                                "secure_delete")}
    engine.dispose()
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10_000,
                      "synchronous": 2, "secure_delete": 1}  # synchronous 2: FULL


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/db"])
def test_make_engine_refuses_unsupported_url(url: str) -> None:
    with pytest.raises(ValueError):
        make_engine(url)
