"""The local validation's schema (validation.json): written and read by the same code, refused
with a clear message when missing or invalid, and light to import."""

from __future__ import annotations

import json

import pytest

from app.archive.validate import ValidateRequest, gather, measure
from app.contract.card import read_card
from app.contract.validation import (
    VALIDATION_FILE,
    FilmCounts,
    Validation,
    ValidationFileError,
    read_validation,
)
from tests.builders.validation import made_site
from tests.servers import REPO, heavy_imports


@pytest.fixture(scope="module")
def validation() -> Validation:
    labels, rows = made_site(n=60)
    card = read_card(REPO / "models" / "pneumonia" / "3")
    return measure(labels, gather(labels, rows), card, 0.95,
                   ValidateRequest("labels.csv", "out", seed=3), 2.0)


def test_a_validation_round_trips_through_its_file(tmp_path, validation):
    path = validation.write(tmp_path)
    assert path == tmp_path / VALIDATION_FILE
    assert read_validation(path) == validation == read_validation(tmp_path)
    written = json.loads(path.read_text())
    assert written["schema_version"] == 1 and written["created_at"].endswith("+00:00")
    assert written["model"] == {"name": "pneumonia", "version": 3,
                                "threshold": validation.model.threshold}


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValidationFileError, match=f"{tmp_path}/{VALIDATION_FILE}: cannot be "
                                                  "read"):
        read_validation(tmp_path)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.update(surprise=1), "surprise"),
    (lambda d: d["films"].update(used=d["films"]["used"] + 1), "films"),
    (lambda d: d.update(schema_version=2), "schema_version"),
    (lambda d: d.update(created_at="2026-01-01T00:00:00"), "created_at"),
    (lambda d: d["site_operating_point"]["sensitivity"].update(low=2), "site_operating_point"),
])
def test_an_invalid_file_is_refused_naming_the_field(tmp_path, validation, edit, field):
    data = json.loads(validation.model_dump_json())
    edit(data)
    (tmp_path / VALIDATION_FILE).write_text(json.dumps(data))
    with pytest.raises(ValidationFileError) as caught:
        read_validation(tmp_path)
    assert f"field '{field}" in str(caught.value) and VALIDATION_FILE in str(caught.value)


def test_film_counts_must_add_up():
    with pytest.raises(ValueError, match="listed 9 != used"):
        FilmCounts(listed=9, used=5, refused=1, not_assessable=1, positives=3, negatives=2,
                   refused_by_reason={}, not_assessable_by_reason={})


def test_importing_the_schema_pulls_in_no_heavy_stack():
    assert heavy_imports("app.contract.validation", {
        "fastapi", "tensorflow", "sklearn", "matplotlib", "ray", "scipy"}) == []
