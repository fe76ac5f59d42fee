"""app/contract/identifiers.py: a deflated DICOM's facts read from the start of its data set
only, so a deflate bomb never inflates in the server."""

from __future__ import annotations

import io
import tracemalloc
import zlib

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from app.contract.identifiers import (
    InstanceFacts,
    InvalidUidError,
    instance_facts,
    patient_key,
    pixel_hash,
    read_header,
    read_header_at,
)
from tests.builders.dicom import PATIENT_ID, file_bytes, study_film
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


# --- UIDs and keys (issue 27) ----------------------------------------------------------------


@pytest.mark.parametrize(("keyword", "value", "problem"), [
    ("StudyInstanceUID", "1.2." + "3" * 70, "over 64 characters"),
    ("SOPInstanceUID", "1.2.3.abc", "not digits and dots"),
    ("SeriesInstanceUID", "1.2..3", "not digits and dots"),
    ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.1 x", "not digits and dots"),
])
def test_an_invalid_uid_is_refused_by_name(keyword, value, problem):
    film = study_film(xray_like(64, 64))
    setattr(film, keyword, value)
    with pytest.raises(InvalidUidError) as raised:
        InstanceFacts.of(film)
    assert raised.value.missing == keyword and raised.value.problem == problem
    assert raised.value.comment == f"invalid {keyword}: {problem}"
    assert len(raised.value.comment) <= 64


def test_a_uid_of_64_characters_with_a_leading_zero_is_taken():
    film = study_film(xray_like(64, 64))
    film.StudyInstanceUID = "1.2.03." + "4" * 57
    assert InstanceFacts.of(film).study_instance_uid == film.StudyInstanceUID


def test_the_patient_key_is_salted_and_keeps_nothing_of_the_patient():
    film = study_film(xray_like(64, 64))
    key = patient_key(film, b"secret-one")
    assert len(key) == 64 and PATIENT_ID not in key
    assert patient_key(film, b"secret-one") == key
    assert patient_key(film, b"secret-two") != key  # the salt matters
    film.IssuerOfPatientID = "HOSPITAL-B"
    assert patient_key(film, b"secret-one") != key  # the issuer is part of the patient
    film.PatientID, film.IssuerOfPatientID = PATIENT_ID + "  ", None
    assert patient_key(film, b"secret-one") == key  # DICOM's padding is not


def test_the_pixel_hash_is_of_the_pixels_not_the_header():
    film = study_film(xray_like(64, 64))
    data = file_bytes(film)
    header, at = read_header_at(data)
    assert "PixelData" not in header and data[at:at + 4] == b"\xe0\x7f\x10\x00"
    renamed = study_film(xray_like(64, 64))
    renamed.SOPInstanceUID, renamed.PatientName = film.SOPInstanceUID, "Other^Name"
    other = file_bytes(renamed)
    assert pixel_hash(other, read_header_at(other)[1]) == pixel_hash(data, at)
    renamed.PixelData = xray_like(64, 64, seed=5).tobytes()
    changed = file_bytes(renamed)
    assert pixel_hash(changed, read_header_at(changed)[1]) != pixel_hash(data, at)
    del renamed.PixelData
    bare = file_bytes(renamed)
    assert pixel_hash(bare, read_header_at(bare)[1]) is None


def test_patients_without_a_patient_id_are_told_apart_by_their_names():
    """Patient ID is Type 2 (present, may be empty): two patients without one in one study
    must not share a key (they were merged), and the same patient keeps one, whichever
    device wrote the name (case, empty components) and whatever else it filled in."""
    one, two = study_film(xray_like(64, 64)), study_film(xray_like(64, 64))
    for film, name in ((one, "ONE^A"), (two, "TWO^B")):
        film.PatientID, film.PatientName = "", name
    assert patient_key(one, b"s") != patient_key(two, b"s")
    for same in ("ONE^A", "one^a", "ONE^A^^^", "ONE^A=^", " ONE ^ A "):
        two.PatientName = same
        assert patient_key(one, b"s") == patient_key(two, b"s"), same
    two.PatientBirthDate, two.PatientSex = "19700101", ""
    assert patient_key(one, b"s") == patient_key(two, b"s")
    one.PatientID, two.PatientID, two.PatientName = "SAME-ID", "SAME-ID", "TWO^B"
    assert patient_key(one, b"s") == patient_key(two, b"s")  # with an ID, the ID decides


def test_patient_ids_that_do_not_decode_are_told_apart_by_their_bytes():
    """Under ISO_IR 192 (UTF-8) the bytes FF and FE both decode to U+FFFD: two such Patient
    IDs read as the same text and were one patient."""
    keys = []
    for first in (b"\xff", b"\xfe"):
        film = study_film(xray_like(64, 64))
        film.SpecificCharacterSet, film.PatientID = "ISO_IR 192", "X123AB"
        data = file_bytes(film).replace(b"X123AB", first + b"123AB")
        keys.append(patient_key(read_header(data), b"s"))
    assert keys[0] != keys[1]
