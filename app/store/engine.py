"""Engines for the worklist database: embedded SQLite by default, or any URL given.

SQLite gets WAL (readers never wait for the writer), foreign keys (the films' cascade),
a busy timeout (another process's write waits instead of failing), and BEGIN issued by us:
the sqlite3 module of Python 3.11 starts transactions lazily and never as IMMEDIATE, so two
writers that both read first would deadlock on the lock upgrade.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_FILE = "worklist.db"
# How long a writer waits for another process's write transaction, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# An execution option: the kind of BEGIN a SQLite connection issues (DEFERRED or IMMEDIATE).
_BEGIN_OPTION = "worklist_sqlite_begin"


def database_url(url: str | None, state_dir: Path) -> str:
    """The database to use: `url` when given, else SQLite at `state_dir`/worklist.db.

    The state folder is created (with its parents) when the default is used.
    """
    if url:
        return url
    state_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(state_dir / SQLITE_FILE).resolve()}"


def make_engine(url: str) -> Engine:
    """An engine for `url` (sqlite:///PATH or postgresql+psycopg://...).

    Raises ValueError for an in-memory SQLite database (each pooled connection would see its
    own empty database) and for other dialects (the store's upserts are written for these two).
    """
    parsed = make_url(url)
    # Statement parameters stay out of exception messages and logs: they hold study details.
    options: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("the worklist needs a SQLite file, not an in-memory database")
        engine = create_engine(parsed, **options)
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # pre_ping: a replica outlives database restarts and fail-overs
        return create_engine(parsed, pool_pre_ping=True, **options)
    raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: "
                     "use sqlite:///PATH or postgresql+psycopg://...")


def for_writing(engine: Engine) -> Engine:
    """`engine`, its SQLite transactions taking the write lock at BEGIN (BEGIN IMMEDIATE).

    A transaction that reads and then writes must hold the lock from the start, or two of
    them can each hold a read snapshot that the other's commit invalidates (SQLITE_BUSY
    without waiting). PostgreSQL engines come back unchanged.
    """
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver issues no BEGIN; _on_begin does
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching to WAL takes a lock another process may hold
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        # FULL: a commit is on disk before add_films returns, also across a power cut
        # (NORMAL in WAL mode may lose the last commits then, though never on a kill -9)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Retention deletes study details: overwrite them in the file, not only unlink them.
        cursor.execute("PRAGMA secure_delete = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        kind = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {kind}")


def _switch_to_wal(cursor: Any) -> None:
    """Put the database file in WAL mode, waiting up to the busy timeout for other processes.

    The switch needs the exclusive lock, and SQLite answers SQLITE_BUSY at once, without
    calling the busy handler, when waiting could deadlock (another connection holding a
    shared lock while it waits for ours: https://www.sqlite.org/c3ref/busy_handler.html).
    Two processes opening a new database together hit that, so the switch is retried
    here. WAL mode is kept in the file, so once any process has switched, the others find
    it done without a lock. Raises sqlite3.OperationalError when the lock never comes.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            # the pragma answers the mode in force: the old one when it could not switch
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()
            if mode == "wal":
                return
            problem = f"journal mode stayed {mode}"
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            problem = str(exc)
        if time.monotonic() + pause > deadline:
            raise sqlite3.OperationalError(f"cannot switch the worklist to WAL: {problem}")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
