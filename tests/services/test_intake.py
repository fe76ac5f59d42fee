"""Uploads onto the worklist (app/services/intake.py): each file's place on it, files
refused as busy left off, and a DICOM whose UIDs break the rules listed as its own study."""

from __future__ import annotations

import io

import pydicom
import pytest

from app.contract.errors import NotAnImageError
from app.errors import ServerBusyError
from app.services import intake
from app.services.pipeline import FileResult
from tests.builders.dicom import dicom_bytes
from tests.builders.images import jpeg_bytes, xray_like


def _outcomes(monkeypatch, *errors):
    """score_films answers each file with the error given (None: not scored either, which
    is enough here: the film is listed, unscored)."""
    def score_films(scorer, files, thumbnails=False, budget_seconds=None, display=False):
        return [FileResult(n, name, None, errors[n]) for n, (name, _) in enumerate(files)]

    monkeypatch.setattr(intake, "score_films", score_films)


def test_each_file_is_told_where_it_is_and_busy_ones_are_left_off(store, monkeypatch):
    _outcomes(monkeypatch, NotAnImageError(), ServerBusyError(), NotAnImageError())
    files = [("a", jpeg_bytes(seed=1)), ("b", jpeg_bytes(seed=2)), ("c", jpeg_bytes(seed=1))]
    upload = intake.store_uploads(store, None, files)
    first, busy, again = upload.files
    assert (busy.entry_id, busy.film_id) == (None, None)
    assert (first.entry_id, first.film_id) == (again.entry_id, again.film_id)  # same bytes
    assert [e.id for e in upload.entries] == [first.entry_id]
    assert store.entries().total == 1


def test_an_upload_refused_as_busy_throughout_stores_nothing(store, monkeypatch):
    _outcomes(monkeypatch, ServerBusyError(), ServerBusyError())
    with pytest.raises(ServerBusyError):
        intake.store_uploads(store, None, [("a", b"x"), ("b", b"y")])
    assert store.entries().total == 0


def test_a_dicom_with_an_overlong_uid_is_its_own_study(store, monkeypatch):
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(xray_like())))
    buffer = io.BytesIO()
    with pytest.warns(UserWarning, match="exceeds the maximum length"):
        ds.StudyInstanceUID = "1.2." + "3" * 70  # over DICOM's 64 characters
        ds.save_as(buffer)
    _outcomes(monkeypatch, NotAnImageError())
    with pytest.warns(UserWarning, match="exceeds the maximum length"):  # pydicom reading it
        (entry,) = intake.store_uploads(store, None, [("a", buffer.getvalue())]).entries
    assert entry.study_instance_uid.startswith("2.25.")
