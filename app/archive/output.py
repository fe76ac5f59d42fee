"""An archive run's output folder (a local path or a URI pyarrow's filesystems write):

    DIR/run.json                     the manifest (app/archive/run.py writes it)
    DIR/results/part-RUN-NNNNN.parquet            one shard of rows
    DIR/results/part-RUN-NNNNN.parquet.committed  its marker: {"rows": n}

A shard counts once its marker is there and names as many rows as the shard holds: the
marker is written (whole, then moved into place where the filesystem can move) only after
the shard is. A run killed between the two leaves a shard without a marker, which no reader
counts and the next `--resume` deletes; its films are scored again. So every reader
(`--resume`, `archive status`, `archive import`) sees each committed row once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from app.archive.rows import SCHEMA
from app.archive.sources import filesystem

RESULTS = "results"
MANIFEST = "run.json"
SHARD = ".parquet"
MARKER = ".committed"


@dataclass(frozen=True)
class Shard:
    path: str  # on the output's filesystem
    rows: int


class Output:
    """The output folder `out` on its filesystem."""

    def __init__(self, out: str) -> None:
        if "://" in out:
            self.fs, path = filesystem(out)
            self.local = isinstance(self.fs, pafs.LocalFileSystem)
        else:
            self.fs, path, self.local = pafs.LocalFileSystem(), os.path.abspath(out), True
        self.root = path.rstrip("/") or "/"
        self.results = f"{self.root}/{RESULTS}"

    # --- the manifest -------------------------------------------------------------------

    def manifest(self) -> dict[str, Any] | None:
        """run.json as written, or None when there is none."""
        path = f"{self.root}/{MANIFEST}"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as stream:
            return json.loads(stream.read())

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.fs.create_dir(self.root, recursive=True)
        self._write_whole(f"{self.root}/{MANIFEST}",
                          (json.dumps(manifest, indent=2) + "\n").encode())

    # --- shards -------------------------------------------------------------------------

    def commit(self, rows: pa.Table, name: str) -> Shard:
        """Write `rows` as shard `name` and then its marker: committed on return."""
        self.fs.create_dir(self.results, recursive=True)
        path = f"{self.results}/{name}{SHARD}"
        pq.write_table(rows, path, filesystem=self.fs, compression="zstd")
        self._write_whole(path + MARKER, json.dumps({"rows": rows.num_rows}).encode())
        return Shard(path, rows.num_rows)

    def _write_whole(self, path: str, data: bytes) -> None:
        """`data` at `path`, never seen half-written: written beside it and moved in place
        on a filesystem that moves (an object store's put is whole already)."""
        target = f"{path}.{os.getpid()}.part" if self.local else path
        with self.fs.open_output_stream(target) as stream:
            stream.write(data)
        if target != path:
            self.fs.move(target, path)

    def _files(self) -> list[str]:
        if self.fs.get_file_info(self.results).type != pafs.FileType.Directory:
            return []
        return sorted(info.path for info in self.fs.get_file_info(
            pafs.FileSelector(self.results)) if info.type == pafs.FileType.File)

    def shards(self) -> list[Shard]:
        """The committed shards, in name order."""
        files = set(self._files())
        found = []
        for path in sorted(f for f in files if f.endswith(SHARD)):
            rows = self._marked_rows(path) if path + MARKER in files else None
            if rows is not None:
                found.append(Shard(path, rows))
        return found

    def _marked_rows(self, path: str) -> int | None:
        """The rows of the shard at `path` when its marker names as many; else None."""
        try:
            with self.fs.open_input_stream(path + MARKER) as stream:
                rows = json.loads(stream.read())["rows"]
            with self.fs.open_input_file(path) as file:
                held = pq.ParquetFile(file).metadata.num_rows
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return rows if rows == held else None

    def uncommitted(self) -> list[str]:
        """Shards (and half-written files) that no marker commits: a killed run's last."""
        committed = {shard.path for shard in self.shards()}
        committed |= {path + MARKER for path in committed}
        return [path for path in self._files() if path not in committed]

    def clear_uncommitted(self) -> int:
        """Delete what `uncommitted` lists; how many files."""
        paths = self.uncommitted()
        for path in paths:
            self.fs.delete_file(path)
        return len(paths)

    def dataset(self) -> pads.Dataset | None:
        """The committed rows as one pyarrow dataset; None when there are none."""
        paths = [shard.path for shard in self.shards()]
        # The code's schema, not the first shard's: a shard written before a column was
        # added reads it as null, and never hides it from the others.
        return pads.dataset(paths, schema=SCHEMA, format="parquet",
                            filesystem=self.fs) if paths else None

    def written(self) -> dict[str, str]:
        """source -> key of every committed row (the last one where a source's content
        changed between runs), "" for a file never read (over the byte limit, unreadable):
        what `--resume` need not score again."""
        data = self.dataset()
        if data is None:
            return {}
        found: dict[str, str] = {}
        for batch in data.to_batches(columns=["source", "key"]):
            found.update((source, key or "") for source, key in zip(
                batch.column("source").to_pylist(), batch.column("key").to_pylist()))
        return found
