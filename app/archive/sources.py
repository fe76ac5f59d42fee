"""What an archive run scores: its SRC arguments turned into files (`list_sources`), and a
file's bytes read back where it lies (`read_source`).

A SRC is a folder (every file under it, hidden files and folders skipped, as the folder
command's `find_files`), a glob (`exports/**/*.dcm`), a file list (a `.txt`, `.lst` or
`.list` file: one path or URI a line, relative paths from the list's folder, `#` comments),
one film, or a URI that pyarrow's filesystems read (`s3://bucket/prefix/`,
`gs://...`, `file:///...`; credentials from the usual environment). `include` patterns
(fnmatch) keep a file whose name or whole path matches one of them.

A file is named in the results (`source`) as it was listed: a local path or a URI. An
archive whose folder names carry patients' names carries them into `source` too: export
with opaque names, or list the files under opaque links.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

LIST_SUFFIXES = (".txt", ".lst", ".list")
_GLOB = frozenset("*?[")
# Schemes whose URI names a bucket where others name a host: the bucket starts the path.
_BUCKETED = ("s3", "gs", "gcs")


class SourceError(ValueError):
    """A SRC that names nothing to score (absent, unreadable); the message says which."""


@dataclass(frozen=True)
class Listed:
    """One file to score: where it lies (a path or a URI) and its size in bytes."""

    source: str
    size: int


def list_sources(sources: Sequence[str], include: Sequence[str] = (),
                 exclude: str | None = None) -> list[Listed]:
    """Every file the SRCs name, each once (the first time it is named), in the order given
    and sorted within a folder; files under `exclude` (the run's own output folder, when it
    lies inside a SRC) left out. Raises SourceError for a SRC that names nothing."""
    skip = None if exclude is None or "://" in exclude else os.path.abspath(exclude) + os.sep
    seen: set[str] = set()
    found = []
    for listed in _each(sources):
        if listed.source in seen or (skip and os.path.abspath(listed.source).startswith(skip)):
            continue
        if include and not _included(listed.source, include):
            continue
        seen.add(listed.source)
        found.append(listed)
    return found


def _included(source: str, include: Sequence[str]) -> bool:
    name = source.rstrip("/").rpartition("/")[2]
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(source, p) for p in include)


def _each(sources: Iterable[str]) -> Iterator[Listed]:
    for source in sources:
        if "://" in source:
            yield from _remote(source)
        elif _GLOB & set(source):
            matches = sorted(glob.glob(source, recursive=True))
            if not matches:
                raise SourceError(f"{source}: no file matches")
            for match in matches:
                yield from _local(match, listing=False)
        else:
            yield from _local(source, listing=True)


def _local(source: str, listing: bool) -> Iterator[Listed]:
    path = Path(source)
    if path.is_dir():
        for folder, folders, files in os.walk(path):
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    file = os.path.join(folder, name)
                    yield Listed(file, _size(file))
    elif path.is_file():
        if listing and path.suffix.lower() in LIST_SUFFIXES:
            yield from _file_list(path)
        else:
            yield Listed(str(path), path.stat().st_size)
    else:
        raise SourceError(f"{source}: no such file or folder")


def _size(file: str) -> int:
    """`file`'s size in bytes. Raises SourceError for a link that leads nowhere or in a
    circle, or a file this user may not read the size of."""
    try:
        return os.stat(file).st_size
    except OSError as exc:
        raise SourceError(f"{file}: cannot be read ({exc.strerror or exc})") from None


def _file_list(path: Path) -> Iterator[Listed]:
    """The files a list names; a line may itself be a folder, a glob or a URI."""
    lines = (line.strip() for line in path.read_text().splitlines())
    named = [line if "://" in line or os.path.isabs(line) else str(path.parent / line)
             for line in lines if line and not line.startswith("#")]
    for source in named:  # a list names films, never further lists
        if "://" in source or _GLOB & set(source):
            yield from _each([source])
        else:
            yield from _local(source, listing=False)


def _remote(uri: str) -> Iterator[Listed]:
    scheme = urlsplit(uri).scheme
    fs, path = filesystem(uri)
    path = path.rstrip("/") or "/"
    pattern = None
    if _GLOB & set(path):
        cut = min(path.index(c) for c in _GLOB if c in path)
        pattern, path = path, path[:cut].rpartition("/")[0]
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise SourceError(f"{uri}: not found")
    infos = [info] if info.type == pafs.FileType.File else sorted(
        fs.get_file_info(pafs.FileSelector(path, recursive=True)), key=lambda i: i.path)
    for item in infos:
        if item.type != pafs.FileType.File or (pattern and not fnmatch.fnmatch(item.path,
                                                                                pattern)):
            continue
        relative = item.path[len(path):]
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        yield Listed(_uri(scheme, uri, item.path), item.size)


def _uri(scheme: str, given: str, path: str) -> str:
    """The URI of `path` on the filesystem of `given`: `s3://bucket/key`, `file:///x`."""
    if scheme in _BUCKETED or scheme == "file":
        return f"{scheme}://{path}" if scheme != "file" else f"file://{path}"
    return f"{scheme}://{urlsplit(given).netloc}{path}"


@lru_cache(maxsize=16)
def _filesystem(scheme: str, netloc: str) -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(f"{scheme}://{netloc}/")[0]


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path on it) of a URI; one filesystem per scheme and host (or
    bucket), made once per process: an S3 client is costly to make."""
    parts = urlsplit(uri)
    path = parts.netloc + parts.path if parts.scheme in _BUCKETED else parts.path
    return _filesystem(parts.scheme, parts.netloc), path


def read_source(source: str, limit: int) -> bytes:
    """A file's bytes, at most `limit` + 1 of them (the caller refuses one over `limit`
    that grew since it was listed). Raises OSError (pyarrow's errors are OSErrors)."""
    if "://" not in source:
        with open(source, "rb") as file:
            return file.read(limit + 1)
    fs, path = filesystem(source)
    with fs.open_input_stream(path) as stream:
        return stream.read(limit + 1)
