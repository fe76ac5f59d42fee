"""app/contract/identifiers.py: a deflated DICOM's facts read from the start of its data set
only, so a deflate bomb never inflates in the server."""

from __future__ import annotations

import io
import tracemalloc
import zlib

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from app.contract.identifiers import instance_facts, read_header
from tests.builders.dicom import file_bytes, study_film
from tests.builders.images import xray_like

MIB = 1 << 20


def _deflated(ds: pydicom.Dataset, zeros_mib: int = 0) -> bytes:
    """`ds` as a Part 10 file in the deflated transfer syntax; with `zeros_mib`, a private
    OB element of that many MiB of zeros after its UIDs (group 0029), before its pixels."""
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    pixels = pydicom.Dataset()
    pixels.PixelData = ds.PixelData
    pixels["PixelData"].VR = "OB"
    del ds.PixelData
    parts = [_encoded(ds)]
    if zeros_mib:
        parts += [b"\x29\x00\x10\x00LO\x04\x00BOMB",
                  b"\x29\x00\x10\x10OB\0\0" + (zeros_mib * MIB).to_bytes(4, "little")]
        parts += [bytes(MIB)] * zeros_mib
    parts.append(_encoded(pixels))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return head.getvalue() + b"".join(deflate.compress(p) for p in parts) + deflate.flush()


def _encoded(ds: pydicom.Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def test_a_deflated_film_has_the_facts_of_the_same_film_uncompressed():
    ds = study_film(xray_like())
    plain = instance_facts(file_bytes(ds))
    assert plain is not None
    assert instance_facts(_deflated(ds)) == plain
    # pydicom reads the file we wrote as the same data set.
    assert pydicom.dcmread(io.BytesIO(_deflated(study_film(xray_like())))).Rows == 96


def test_a_deflate_bomb_is_never_inflated_for_its_facts():
    """64 MiB of zeros deflated to about 64 KB after the UIDs: the facts are read from the
    first MiB inflated; the whole data set would take 64 MiB."""
    ds = study_film(xray_like())
    bomb = _deflated(ds, zeros_mib=64)
    assert len(bomb) < MIB
    tracemalloc.start()
    try:
        facts = instance_facts(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert facts is not None and facts.study_instance_uid == ds.StudyInstanceUID
    assert peak < 8 * MIB


def test_read_header_of_a_deflate_bomb_reads_its_first_mib_only():
    """The DICOM node's header read (app/dicom/ingest.py `Received`) is the upload's."""
    ds = study_film(xray_like())
    bomb = _deflated(ds, zeros_mib=64)
    tracemalloc.start()
    try:
        header = read_header(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert header is not None and header.SOPInstanceUID == ds.SOPInstanceUID
    assert "PixelData" not in header
    assert peak < 8 * MIB
