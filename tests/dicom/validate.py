"""The node's results checked by the tools a PACS administrator would use: dicom3tools'
dciodvfy (the IOD's modules, attributes and values) and dcmtk's dsrdump (the SR's content
tree). `problems` returns what they say that is ours to fix: every error, and every warning
but four kinds, which are left out and only these:
- dciodvfy's "Unrecognized defined term <99PNEUTRIAGE> for value 1 of attribute <Coding
  Scheme Designator>", when the object identifies that scheme in its Coding Scheme
  Identification Sequence: PS3.16 Section 8 allows private schemes ("99" prefix), and
  dciodvfy warns about every designator outside its own list whether it is identified or
  not (checked: the warning stays with the sequence present);
- a dciodvfy warning about an attribute that dciodvfy also flags in the source film itself
  (given as `source`), or that the source left empty: the source's own attribute, which
  the results carry as the standard allows for a value that is missing or invalid there
  (a Laterality left empty, unknown, where the source named no body part or one that is
  not a term; a name that dciodvfy calls a "Retired Person Name form"); never invented;
- dciodvfy's "Missing attribute or value that would be needed to build DICOMDIR - X" for a
  Type 2 element whose invalid value the results carry empty (the caller names them,
  `blanked`: the header's repairs), as the issue asks ("invalid Type 2 values blanked");
- dsrdump's "The VR checker does not support this Specific Character Set: X" and "Reading
  unknown/unsupported SpecificCharacterSet (X)", where X is the source's own Specific
  Character Set, a term PS3.3 C.12.1.1.2 defines (`ISO_IR 192`, `\\ISO 2022 IR 87`): dcmtk
  3.6.7 checks values in ASCII and Latin-1 only, and says so.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset
from pydicom.charset import python_encoding
from pydicom.datadict import DicomDictionary, tag_for_keyword

from tests.builders.dicom import file_bytes

_PRIVATE = re.compile(r"^Warning - Unrecognized defined term <(99[A-Z0-9_]+)> for value 1 of "
                      r"attribute <Coding Scheme Designator>$")
_CHARSET = re.compile(r"^W: (?:The VR checker does not support this Specific Character Set: "
                      r"(.*)|Reading unknown/unsupported SpecificCharacterSet \((.*)\))$")
# How dciodvfy names an attribute in its lines: (0x0008,0x0030) TM Study Time,
# Element=<PatientID>, attribute <Body Part Examined>, ... DICOMDIR - Study Time.
_TAG = re.compile(r"\(0x([0-9a-f]{4}),0x([0-9a-f]{4})\)")
_KEYWORD = re.compile(r"Element=<([^>]+)>")
_DICOMDIR = re.compile(r"^Warning - Missing attribute or value that would be needed to "
                       r"build DICOMDIR - (.+)$")
_NAME = (re.compile(r"attribute <([^>]+)>"), _DICOMDIR)
_BY_NAME = {entry[2]: tag for tag, entry in DicomDictionary.items()}


def _dciodvfy(path: Path) -> list[str]:
    # Its lines may quote a value's bytes in any character set.
    check = subprocess.run(["dciodvfy", str(path)], capture_output=True, encoding="utf-8",
                           errors="replace", timeout=60)
    return check.stderr.splitlines()


def _tags(line: str) -> set[int]:
    """The attributes a line of dciodvfy's is about."""
    tags = {int(group + element, 16) for group, element in _TAG.findall(line)}
    tags |= {tag for keyword in _KEYWORD.findall(line)
             if (tag := tag_for_keyword(keyword)) is not None}
    for pattern in _NAME:
        tags |= {_BY_NAME[name.strip()] for name in pattern.findall(line)
                 if name.strip() in _BY_NAME}
    return tags


def _empty_in(source: bytes) -> set[int]:
    """The source's elements that hold nothing but padding (a Type 2 element it left
    empty, which dciodvfy does not flag there when its padding is a NUL)."""
    header = pydicom.dcmread(io.BytesIO(source), stop_before_pixels=True, force=True)
    empty = set()
    for tag in list(header.keys()):
        value = header.get_item(tag).value
        if isinstance(value, bytes | bytearray) \
                and not bytes(value).replace(b"\x00", b"").strip():
            empty.add(int(tag))
    return empty


def _identified(ds: Dataset) -> set[str]:
    return {str(item.CodingSchemeDesignator)
            for item in ds.get("CodingSchemeIdentificationSequence", [])}


def _standard_charset(line: str, ds: Dataset) -> bool:
    """dcmtk saying it cannot check the object's own (standard) character set."""
    match = _CHARSET.match(line)
    if match is None or "SpecificCharacterSet" not in ds:
        return False
    terms = ds.SpecificCharacterSet
    terms = [terms] if isinstance(terms, str) else list(terms)
    named = match.group(1) if match.group(1) is not None else match.group(2)
    return named.strip() == "\\".join(terms) and all(term in python_encoding for term in terms)


def problems(ds: Dataset, source: bytes | None = None,
             blanked: Iterable[str] = ()) -> list[str]:
    """What dciodvfy and (for an SR) dsrdump say of `ds` that is ours to fix; `source`: the
    film's Part 10 bytes, whose own flagged attributes are the source's; `blanked`: the
    keywords of the source's Type 2 elements the results carry empty because their values
    were invalid (app/dicom/header.py's repairs), whose DICOMDIR warning is the source's."""
    for tool in ("dciodvfy", "dsrdump"):
        if shutil.which(tool) is None:  # dicom3tools, dcmtk: `make system-packages`
            pytest.fail(f"{tool} not found: `make system-packages` installs it")
    found = []
    with tempfile.TemporaryDirectory() as folder:
        theirs: set[int] = set()
        if source is not None:
            (Path(folder) / "source.dcm").write_bytes(source)
            for line in _dciodvfy(Path(folder) / "source.dcm"):
                theirs |= _tags(line)
            theirs |= _empty_in(source)
        path = Path(folder) / "result.dcm"
        path.write_bytes(file_bytes(ds))
        for line in _dciodvfy(path):
            if not line.startswith(("Error", "Warning")):
                continue
            private = _PRIVATE.match(line)
            if private and private.group(1) in _identified(ds):
                continue
            named = _tags(line)
            if line.startswith("Warning") and named and named <= theirs:
                continue
            if _DICOMDIR.match(line) and named and named <= {
                    tag_for_keyword(keyword) for keyword in blanked}:
                continue
            found.append(f"dciodvfy: {line}")
        if str(ds.SOPClassUID).startswith("1.2.840.10008.5.1.4.1.1.88."):
            dump = subprocess.run(["dsrdump", str(path)], capture_output=True,
                                  encoding="utf-8", errors="replace", timeout=60)
            if dump.returncode != 0:
                found.append(f"dsrdump: exit {dump.returncode}")
            found += [f"dsrdump: {line}" for line in dump.stderr.splitlines()
                      if line.strip() and not _standard_charset(line, ds)]
    return found
