"""The decode step without Ray: every file's failure is its row's error; a file written
before is passed on unscored."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from app.archive.stages import (
    FAILED,
    UNREADABLE,
    Decoding,
    ScoreFilms,
    Scoring,
    prepare_file,
)
from app.contract.card import read_card
from app.contract.errors import FileTooLargeError, TooManyPixelsError
from app.contract.site import OperatingPoint
from app.services.pipeline import film_job
from app.services.saved_model import find_model, read_checks
from tests.builders.corpus import jpeg_cut_with_end_marker
from tests.builders.images import jpeg_bytes
from tests.servers import REPO


@pytest.fixture(scope="module")
def decoding() -> Decoding:
    path = find_model(REPO / "models", "pneumonia")
    card = read_card(path)
    guard, detector = read_checks(path, card)
    return Decoding(film_job(card, guard, detector, 50_000_000, b""), 1 << 20)


def _file(tmp_path: Path, data: bytes) -> tuple[str, int]:
    path = tmp_path / "film"
    path.write_bytes(data)
    return str(path), len(data)


def test_a_film_is_prepared_with_its_key(tmp_path, decoding):
    prepared = prepare_file(*_file(tmp_path, jpeg_bytes(300, 260)), None, decoding)
    assert prepared.error is None and prepared.film is not None
    assert prepared.film.model_input.shape == (*decoding.job.size, decoding.job.channels)
    assert prepared.identity.key.startswith("2.25.")


def test_a_file_over_the_byte_limit_is_never_read(tmp_path, decoding):
    missing = str(tmp_path / "gone")  # reading it would fail: it is not read at all
    prepared = prepare_file(missing, decoding.max_bytes + 1, None, decoding)
    assert prepared.error[0] == FileTooLargeError.code and prepared.identity is None


def test_a_film_over_the_pixel_limit_is_its_rows_error(tmp_path, decoding):
    small = replace(decoding, job=replace(decoding.job, max_pixels=10_000))
    prepared = prepare_file(*_file(tmp_path, jpeg_bytes(300, 260)), None, small)
    assert prepared.error[0] == TooManyPixelsError.code and prepared.film is None


@pytest.mark.parametrize(("data", "code"), [(None, UNREADABLE),
                                            (b"just text\n", "not_an_image"),
                                            (b"damaged", "corrupt_image")])
def test_a_file_that_cannot_be_scored_is_its_rows_error(tmp_path, decoding, data, code):
    if data is None:
        source, size = str(tmp_path / "missing"), 10
    else:
        source, size = _file(tmp_path, data if data != b"damaged"
                             else jpeg_cut_with_end_marker(jpeg_bytes(300, 260)))
    prepared = prepare_file(source, size, None, decoding)
    assert prepared.error[0] == code and prepared.film is None and code != FAILED


def test_a_file_written_before_is_passed_on_unscored_unless_its_bytes_changed(
        tmp_path, decoding):
    source, size = _file(tmp_path, jpeg_bytes(300, 260))
    key = prepare_file(source, size, None, decoding).identity.key
    assert prepare_file(source, size, key, decoding).resumed
    assert prepare_file(source, size, "", decoding).resumed  # written unread
    changed = prepare_file(*_file(tmp_path, jpeg_bytes(300, 260, seed=1)), key, decoding)
    assert not changed.resumed and changed.film is not None


def test_the_settings_threshold_and_ages_are_the_default_models_alone():
    """The catalog's rule, which the archive's actors apply (catalog.model_terms)."""
    from app.services.catalog import model_terms
    from tests.servers import settings_for_tests

    settings = settings_for_tests(threshold=0.3, intended_age_years=(0, 18))
    assert model_terms(settings, None) == model_terms(settings, settings.model_name) == (
        0.3, (0.0, 18.0))
    assert model_terms(settings, "pneumonia_compact") == (None, None)


@pytest.mark.parametrize("point", [None, OperatingPoint(0.3, "site", 624, date(2026, 12, 6)),
                                   OperatingPoint(0.42, "setting")])
def test_each_row_names_the_operating_point_it_was_judged_at(tmp_path, decoding, point):
    """The scoring step (one actor's, without Ray) writes each row's threshold and where it
    comes from: the card's (no point given), the site's adopted validation, or the setting."""
    card = read_card(find_model(REPO / "models", "pneumonia"))
    films = [prepare_file(*_file(tmp_path, jpeg_bytes(300, 260, seed=seed)), None, decoding)
             for seed in range(2)]
    broken = prepare_file(*_file(tmp_path, b"just text\n"), None, decoding)
    step = ScoreFilms(Scoring(str(REPO / "models"), card.name, card.version, point, None,
                              50_000_000, "run"))
    found = step({"prepared": np.array([*films, broken], dtype=object)}).to_pylist()
    expected = point or OperatingPoint(card.threshold)
    assert [(r["threshold"], r["operating_point"]) for r in found[:2]] == \
        [(expected.threshold, expected.source)] * 2
    assert found[2]["error"] == "not_an_image" and found[2]["operating_point"] is None
