"""The embedded run of the mixed folder, made once per session and read by several tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.archive.harness import EMBEDDED, archive_cli, mixed_folder, short_dir


@dataclass(frozen=True)
class ScoredFolder:
    folder: Path
    out: Path
    ray_dir: Path  # Ray's files of the run, its logs among them
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def scored_folder(tmp_path_factory, data_dir: Path) -> Iterator[ScoredFolder]:
    """`archive score` of the mixed folder on Ray embedded (2 CPUs), in shards of 3 rows."""
    root = tmp_path_factory.mktemp("archive")
    folder = mixed_folder(root / "export", data_dir)
    ray_dir = short_dir("ray-emb-")
    try:
        result = archive_cli("score", str(folder), "--out", str(root / "out"), *EMBEDDED,
                             "--shard-rows", "3", ray_dir=ray_dir)
        assert result.returncode == 0, result.stderr[-3000:]
        yield ScoredFolder(folder, root / "out", ray_dir, result.stdout, result.stderr)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
