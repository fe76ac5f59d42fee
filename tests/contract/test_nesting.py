"""app/contract/nesting.py: a data set's sequence depth counted from its bytes, without the
recursion pydicom reads them with, in each encoding a sequence can take."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from app.contract.nesting import NestingTooDeepError, check_file_nesting, check_nesting
from tests.builders.dicom import MAX_NESTING, file_bytes, nested, study_film
from tests.builders.images import xray_like


def _sequence(depth: int) -> Dataset:
    """A data set whose private sequence nests `depth` levels, built with pydicom."""
    inner = Dataset()
    inner.add_new(0x00091010, "LO", "leaf")
    for _ in range(depth):
        outer = Dataset()
        outer.add_new(0x00090010, "LO", "PRIV")
        outer.add_new(0x00091001, "SQ", [inner])
        inner = outer
    return inner


def _written(ds: Dataset, implicit: bool, little: bool = True) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = little, implicit
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize(("implicit", "little"), [(False, True), (True, True), (False, False)],
                         ids=["explicit", "implicit", "explicit-big-endian"])
def test_nesting_to_the_limit_passes_and_one_more_is_refused(implicit, little):
    check_nesting(_written(_sequence(MAX_NESTING), implicit, little), implicit=implicit,
                  little=little)
    with pytest.raises(NestingTooDeepError):
        check_nesting(_written(_sequence(MAX_NESTING + 1), implicit, little),
                      implicit=implicit, little=little)


@pytest.mark.parametrize("delimited", [True, False], ids=["undefined", "defined"])
def test_a_part10_file_nested_past_the_limit_is_refused(delimited):
    film = study_film(xray_like(64, 64))
    check_file_nesting(nested(film, MAX_NESTING, delimited=delimited))
    with pytest.raises(NestingTooDeepError):
        check_file_nesting(nested(film, MAX_NESTING + 1, delimited=delimited))


def test_an_unknown_sequence_as_un_of_undefined_length_is_counted():
    """PS3.5 6.2.2: a sequence written as UN of undefined length holds implicit VR items."""
    def level(inner: bytes, explicit: bool) -> bytes:
        vr = b"UN\0\0" if explicit else b""  # inside, implicit VR: tag and length only
        return (struct.pack("<HH", 0x0009, 0x1001) + vr + b"\xff" * 4
                + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + inner
                + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
                + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))

    inner = b""
    for _ in range(MAX_NESTING):
        inner = level(inner, explicit=False)
    check_nesting(level(b"", explicit=True))
    with pytest.raises(NestingTooDeepError):
        check_nesting(level(inner, explicit=True))


def test_the_pydicom_reader_fails_where_the_limit_protects_it():
    """Why the limit exists: 200 delimited levels exhaust pydicom's recursion."""
    deep = nested(study_film(xray_like(64, 64)), 200)
    with pytest.raises(RecursionError):
        pydicom.dcmread(io.BytesIO(deep))
    with pytest.raises(NestingTooDeepError):
        check_file_nesting(deep)


def test_encapsulated_pixels_and_ordinary_films_pass():
    for options in ({}, {"syntax": "jpeg-baseline"}, {"syntax": "rle"}):
        check_file_nesting(file_bytes(study_film(xray_like(64, 64), **options)))


def test_bytes_that_are_not_part10_are_left_to_pydicom():
    check_file_nesting(b"not dicom at all" * 20)
    check_nesting(b"\x01\x02\x03")  # cut short: nothing to say
