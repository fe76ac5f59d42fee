"""A throw-away PostgreSQL cluster for the store's tests and its benchmark.

initdb in a fresh temporary folder, the server on a free loopback port (its socket in that
folder too), removed at the end. PostgreSQL refuses to run as root, so as root the binaries
run as the `postgres` system user, in a folder it owns. The binaries come from PATH or
Debian's /usr/lib/postgresql/<version>/bin (`apt-get install postgresql`; .ci/run does).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
# Durability costs nothing to leave off for tests: a kill -9 hits the client, never this
# server. The benchmark keeps it on, so that its figures are what a real server pays.
_FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


class PostgresMissing(RuntimeError):
    """initdb or pg_ctl not found."""


@dataclass(frozen=True)
class Cluster:
    port: int
    folder: Path

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` (psycopg 3, trust authentication)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create `name` (a copy of `template` when given); its URL."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as connection:
            clause = f" TEMPLATE {template}" if template else ""
            connection.execute(f'CREATE DATABASE "{name}"{clause}')  # type: ignore[arg-type]
        return self.url(name)


def binary(name: str) -> Path:
    """The path of a PostgreSQL server binary. Raises PostgresMissing."""
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = sorted(DEBIAN_BINARIES.glob(f"*/bin/{name}"),
                        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0)
    if candidates:
        return candidates[-1]
    raise PostgresMissing(f"PostgreSQL's {name} was not found on PATH or in {DEBIAN_BINARIES}:"
                          " install Debian's postgresql package (`apt-get install postgresql`)")


@contextlib.contextmanager
def throwaway_cluster(*, durable: bool = False) -> Iterator[Cluster]:
    """A running cluster, stopped and deleted on exit. `durable` keeps fsync on.

    Raises PostgresMissing, or RuntimeError with the server's log when it does not start.
    """
    initdb, pg_ctl = binary("initdb"), binary("pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="worklist-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"
    try:
        _run([*as_user, str(initdb), "-D", str(data), "-U", "postgres", "-A", "trust",
              "-E", "UTF8", "--locale=C", "--no-sync"])
        port = _start(as_user, pg_ctl, data, log, folder, durable)
        try:
            yield Cluster(port=port, folder=folder)
        finally:
            _run([*as_user, str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _start(as_user: list[str], pg_ctl: Path, data: Path, log: Path, folder: Path,
           durable: bool) -> int:
    # A free port can be taken between choosing it and binding it: try a few.
    for _ in range(3):
        port = _free_port()
        options = ["-p", str(port), "-k", str(folder), "-c", "listen_addresses=127.0.0.1",
                   *(() if durable else _FAST)]
        started = subprocess.run(
            [*as_user, str(pg_ctl), "-D", str(data), "-l", str(log), "-w", "-t", "60",
             "-o", " ".join(options), "start"], capture_output=True, text=True)
        if started.returncode == 0:
            return port
    raise RuntimeError("PostgreSQL did not start: " + log.read_text()[-2000:])


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
