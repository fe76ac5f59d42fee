"""The LABELS argument of `pneumonia-triage validate`: the site's labelled films, read and
checked whole before a film is scored.

LABELS is either

- a CSV file with a header row naming `source` and `label`, and optionally `subgroup:NAME`
  columns (the site's own strata: ward, referral route, ...). `source` is a path relative to
  the CSV's folder, an absolute path, or a URI the archive sources read (s3://, gs://,
  file://); `label` is 1/0 or pneumonia/normal, in any case. Blank lines are skipped.
- a folder with a `NORMAL/` and a `PNEUMONIA/` subfolder (the Kaggle layout), every file
  under each listed as the archive lists a folder (hidden files skipped).

A line naming nothing, a folder rather than a file, a film named twice, a label that is not
one of those, or a column that is not one of those is a LabelsError naming the line, and so is
a file of one label only; nothing is scored then.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.archive.sources import SourceError, list_sources

SUBGROUP_PREFIX = "subgroup:"
FOLDERS = ("NORMAL", "PNEUMONIA")  # index = label, as the card's CLASS_NAMES
_LABELS = {"0": 0, "normal": 0, "1": 1, "pneumonia": 1}


class LabelsError(ValueError):
    """A labels file that cannot be used as it is; the message names the file and line."""


@dataclass(frozen=True)
class Labelled:
    """One labelled film: `source` as the archive lists it (its row's `source`), `given` as
    the labels file wrote it, its `line` there (None in the folder form), its label (1:
    pneumonia, 0: normal) and the site's own strata (column name -> value)."""

    source: str
    given: str
    line: int | None
    label: int
    subgroups: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Labels:
    films: list[Labelled]
    kind: Literal["csv", "folder"]
    subgroup_columns: list[str]

    @property
    def sources(self) -> tuple[str, ...]:
        """The films as SRC arguments of an archive run: each names exactly its film (a
        local path's glob characters escaped, so it is not read as a pattern)."""
        return tuple(film.source if "://" in film.source else glob.escape(film.source)
                     for film in self.films)


def read_labels(labels: str) -> Labels:
    """The labelled films of LABELS (a CSV file or a NORMAL/PNEUMONIA folder); raises
    LabelsError naming the line (or folder) at fault."""
    path = Path(labels)
    if path.is_dir():
        return _folder(path)
    if not path.is_file():
        raise LabelsError(f"{labels}: no such labels file or folder")
    return _csv(path)


def _folder(root: Path) -> Labels:
    children = {child.name.upper(): child for child in root.iterdir() if child.is_dir()}
    missing = [name for name in FOLDERS if name not in children]
    if missing:
        raise LabelsError(f"{root}: a labels folder holds a NORMAL/ and a PNEUMONIA/ "
                          f"subfolder; {' and '.join(m + '/' for m in missing)} missing")
    films = []
    for label, name in enumerate(FOLDERS):
        try:
            listed_films = list_sources([glob.escape(str(children[name]))])
        except (SourceError, OSError) as exc:  # a link loop, a file gone while listed
            raise LabelsError(f"{children[name]}: cannot be listed ({exc})") from None
        for listed in listed_films:
            films.append(Labelled(listed.source, os.path.relpath(listed.source, root), None,
                                  label))
        if not any(film.label == label for film in films):
            raise LabelsError(f"{children[name]}: no film in it")
    return Labels(films, "folder", [])


def _csv(path: Path) -> Labels:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    # The csv module's own line ends (newline=""): a quoted line break stays in its cell.
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    columns = _columns(path, header)
    films: list[Labelled] = []
    first_line: dict[str, int] = {}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        where = f"{path} line {line}"
        if len(cells) != len(header):
            raise LabelsError(f"{where}: {len(cells)} cells where the header names "
                              f"{len(header)}")
        values = dict(zip(header, (cell.strip() for cell in cells), strict=True))
        label = _LABELS.get(values["label"].lower())
        if label is None:
            raise LabelsError(f"{where}: label {values['label']!r} is none of 1, 0, "
                              "pneumonia, normal")
        source = _source(values["source"], path.parent, where)
        if source in first_line:
            raise LabelsError(f"{where}: {values['source']!r} is named twice (first on line "
                              f"{first_line[source]})")
        first_line[source] = line
        films.append(Labelled(source, values["source"], line, label,
                              {name: values[name] or "unknown" for name in columns}))
    if not films:
        raise LabelsError(f"{path}: no labelled film in it")
    if len({film.label for film in films}) == 1:  # known now, not after the scoring
        raise LabelsError(f"{path}: every film is labelled {FOLDERS[films[0].label].lower()}; "
                          "a validation needs films of both labels")
    return Labels(films, "csv", columns)


def _columns(path: Path, header: Sequence[str]) -> list[str]:
    """The subgroup columns of a header; LabelsError for a missing, unknown or twice-named
    column."""
    if "source" not in header or "label" not in header:
        raise LabelsError(f"{path} line 1: the header names {', '.join(header) or 'nothing'}; "
                          "a labels file's header names source and label (and optionally "
                          f"{SUBGROUP_PREFIX}NAME columns)")
    if len(set(header)) != len(header):
        raise LabelsError(f"{path} line 1: a column is named twice")
    unknown = [name for name in header if name not in ("source", "label")
               and not (name.startswith(SUBGROUP_PREFIX) and len(name) > len(SUBGROUP_PREFIX))]
    if unknown:
        raise LabelsError(f"{path} line 1: unknown column(s) {', '.join(unknown)}; besides "
                          f"source and label only {SUBGROUP_PREFIX}NAME columns are read")
    return [name for name in header if name.startswith(SUBGROUP_PREFIX)]


def _source(given: str, folder: Path, where: str) -> str:
    """The film a line names, as the archive lists it; LabelsError when it names no file or
    more than one."""
    if not given:
        raise LabelsError(f"{where}: no source")
    if "://" in given:
        name = given
    else:
        name = os.path.normpath(given if os.path.isabs(given) else folder / given)
        if not os.path.isfile(name):
            raise LabelsError(f"{where}: {given!r} is no file "
                              f"({'a folder' if os.path.isdir(name) else 'not found'} at "
                              f"{name})")
        name = glob.escape(name)
    try:
        listed = list_sources([name])
    except (SourceError, OSError) as exc:
        raise LabelsError(f"{where}: {given!r} cannot be read ({exc})") from None
    if len(listed) != 1:
        raise LabelsError(f"{where}: {given!r} names {len(listed)} files, not one film")
    return listed[0].source
