"""The border crop in serving (app/services/film.py, pipeline.py): a job carries its model
card's preprocessing version; from version 3 the model input, the film shown under the
heatmap and the thumbnail are the film without its borders, the same input training gives
(training/data.py); a version 1 or 2 model gets what it always got."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.services.decode_pool import DecodePool
from app.services.film import FilmJob, display_size, prepare_film
from app.services.pipeline import score_film
from tests.builders.borders import bordered, off_by
from tests.builders.images import encode, xray_like
from tests.dicom.nodes import stand_in_scorer
from training.data import list_split, load_arrays

SIZE = (64, 64)
FILM = xray_like(400, 360, seed=3)
WIDTHS = {"top": 12, "left": 14, "right": 7}  # 2-4% of a side: the thin edge


def _png(pixels: np.ndarray) -> bytes:
    return encode(Image.fromarray(pixels), "PNG")


def _prepare(data: bytes, version: str, **options):
    return prepare_film(FilmJob(data, SIZE, 3, None, 50_000_000,
                                preprocessing_version=version, **options))


def test_a_version_3_job_scores_shows_and_thumbnails_the_film_without_its_border():
    pixels, _ = bordered(FILM, 0, **WIDTHS)
    film = _prepare(_png(pixels), "3", keep_pixels=True, thumbnail=True)
    plain = _prepare(_png(FILM), "3", keep_pixels=True, thumbnail=True)
    np.testing.assert_array_equal(film.model_input, plain.model_input)
    np.testing.assert_array_equal(film.pixels, display_size(FILM))  # under the heatmap
    assert film.thumbnail == plain.thumbnail
    assert film.facts.borders_cropped == (12, 14, 0, 7)
    assert (film.facts.width, film.facts.height) == (pixels.shape[1], pixels.shape[0])


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_version_1_or_2_job_is_prepared_as_before(version):
    pixels, _ = bordered(FILM, 0, **WIDTHS)
    film = _prepare(_png(pixels), version, keep_pixels=True)
    before = np.asarray(Image.fromarray(pixels).resize(SIZE[::-1], Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(film.model_input, np.repeat(before[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(film.pixels, display_size(pixels))
    assert film.facts.borders_cropped == (0, 0, 0, 0)


def test_a_decode_worker_sends_back_the_cropped_film_and_its_crop():
    """What a worker process returns passes its restricted unpickler, crop and all."""
    pixels, _ = bordered(FILM, 0, **WIDTHS)
    job = FilmJob(_png(pixels), SIZE, 3, None, 50_000_000, keep_pixels=True,
                  preprocessing_version="3")
    pool = DecodePool(1, timeout=30)
    try:
        pooled = pool.prepare(job)
    finally:
        pool.close()
    inline = prepare_film(job)
    assert pooled.facts == inline.facts and pooled.facts.borders_cropped == (12, 14, 0, 7)
    np.testing.assert_array_equal(pooled.pixels, inline.pixels)
    np.testing.assert_array_equal(pooled.model_input, inline.model_input)


def test_a_crop_of_a_film_decoded_at_half_size_is_told_in_the_files_pixels():
    """A film far larger than the input is decoded at half size (preprocessing version 2);
    the crop is found there and reported in the file's own pixels."""
    pixels, truth = bordered(xray_like(1100, 1000, seed=2), 255, left=60, bottom=40)
    film = _prepare(encode(Image.fromarray(pixels), "JPEG", quality=90), "3")
    top, left, bottom, right = film.facts.borders_cropped
    assert off_by((top, left, bottom, right), (0, 60, 40, 0)) <= 4  # 2 px of the half size
    assert film.facts.width == pixels.shape[1]


@pytest.mark.parametrize("version", ["2", "3"])
def test_training_and_serving_give_the_same_input(tmp_path: Path, version):
    """training/data.py's arrays and the app's prepared film of the same bytes: one function."""
    folder = tmp_path / "test" / "PNEUMONIA"
    folder.mkdir(parents=True)
    (tmp_path / "test" / "NORMAL").mkdir()
    pixels, _ = bordered(FILM, 0, **WIDTHS)
    data = encode(Image.fromarray(pixels), "JPEG", quality=90)
    (folder / "person1_bacteria_1.jpeg").write_bytes(data)
    trained = load_arrays(list_split(tmp_path, "test"), SIZE, 3, cache_dir=tmp_path / "cache",
                          version=version)
    np.testing.assert_array_equal(trained[0], _prepare(data, version).model_input)


def test_the_training_cache_is_kept_apart_by_version(tmp_path: Path):
    folder = tmp_path / "test" / "NORMAL"
    folder.mkdir(parents=True)
    (tmp_path / "test" / "PNEUMONIA").mkdir()
    (folder / "IM-0001-0001.png").write_bytes(_png(bordered(FILM, 255, top=30)[0]))
    split, cache = list_split(tmp_path, "test"), tmp_path / "cache"
    old = load_arrays(split, SIZE, 1, cache_dir=cache, version="2")
    new = load_arrays(split, SIZE, 1, cache_dir=cache)  # this code's version, 3
    assert len(list(cache.iterdir())) == 2 and not np.array_equal(old, new)


def _scorer_of_version(version: str):
    scorer = stand_in_scorer()
    card = scorer.model.card
    scorer.model.card = card.model_copy(update={"input": card.input.model_copy(
        update={"preprocessing_version": version})})
    return scorer


def test_a_scorers_job_carries_its_cards_preprocessing_version():
    committed = stand_in_scorer()
    assert committed.job(b"x").preprocessing_version == \
        committed.model.card.input.preprocessing_version
    assert _scorer_of_version("3").job(b"x").preprocessing_version == "3"


@pytest.mark.parametrize(("version", "shown"), [("3", FILM), ("1", bordered(FILM, 0, **WIDTHS)[0])])
def test_the_film_under_the_heatmap_is_the_film_the_model_saw(version, shown):
    """The heat map is made on the model input and stretched over the whole display film
    (pipeline.draw_heatmap, the secondary capture's burn-in): so that film is the cropped one
    for a version 3 model, and the whole film for the models before."""
    pixels, _ = bordered(FILM, 0, **WIDTHS)
    scorer = _scorer_of_version(version)
    prediction = score_film(scorer, _png(pixels), explain=True, display=True)
    np.testing.assert_array_equal(prediction.display.film, display_size(shown))
    heatmap = score_film(scorer, _png(pixels), explain=True).heatmap
    assert (heatmap.height, heatmap.width) == display_size(shown).shape
