"""The throw-away PostgreSQL helper: missing binaries are an error that says what to install
(the store's tests then FAIL, never skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import pg


def test_binary_missing_names_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pg, "DEBIAN_BINARIES", tmp_path / "none")
    with pytest.raises(pg.PostgresMissing, match="apt-get install postgresql"):
        pg.binary("initdb")


def test_binary_prefers_newest_debian_version(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for version in ("9", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    monkeypatch.setattr(pg, "DEBIAN_BINARIES", tmp_path)
    assert pg.binary("initdb") == tmp_path / "15" / "bin" / "initdb"
