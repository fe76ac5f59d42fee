"""Uniform borders cropped before the resize (app/contract/borders.py), and the preprocessing
version that decides it (app/contract/preprocessing.py, version 3): on made films with black,
white and grey borders, the crop lands within 2 px of the border's edge; a film without one,
a blank film and a border too wide to be one are left as they are; models of versions 1 and
2 get exactly their old input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.contract.borders import MAX_SHARE, SEARCH_SIDE, Box, crop_borders
from app.contract.preprocessing import (
    PREPROCESSING_VERSION,
    SERVES_PREPROCESSING_VERSIONS,
    crops_borders,
    decode,
    load_model_input,
    model_film,
    to_model_input,
)
from tests.builders.borders import (
    SIDES,
    bordered,
    chest_with_dark_lungs,
    jpeg_round_trip,
    off_by,
    widths_of,
)
from tests.builders.images import encode, xray_like


@pytest.mark.parametrize("value", [0, 255, 140], ids=["black", "white", "grey"])
@pytest.mark.parametrize("share", [0.02, 0.04, 0.10])
@pytest.mark.parametrize("sides", [("top",), ("left",), ("left", "right"), ("bottom", "right"),
                                   SIDES], ids="+".join)
def test_crop_borders_finds_a_border_within_2_px(value, share, sides):
    film = xray_like(400, 360, seed=3)
    pixels, truth = bordered(film, value, **widths_of(share, sides, 400, 360))
    cropped, box = crop_borders(pixels)
    assert off_by(box, truth) <= 2, (box, truth)
    np.testing.assert_array_equal(cropped, pixels[box.top:box.bottom, box.left:box.right])


@pytest.mark.parametrize("quality", [75, 90])
@pytest.mark.parametrize("value", [0, 255, 140, 40], ids=["black", "white", "grey", "dark"])
def test_crop_borders_of_a_jpeg_film_lands_within_2_px_despite_ringing(value, quality):
    """JPEG's 8x8 blocks ring at the film's edge over the strip's last lines."""
    film = xray_like(400, 360, seed=3)
    pixels, truth = bordered(film, value, top=20, left=36, bottom=13, right=28)
    _, box = crop_borders(jpeg_round_trip(pixels, quality))
    assert off_by(box, truth) <= 2, (box, truth)


def test_a_noisy_collimation_frame_with_dust_is_cropped():
    """A flat bright frame is never quite flat: scatter noise and a few specks in it."""
    rng = np.random.default_rng(5)
    film = xray_like(400, 360, seed=3)
    pixels, truth = bordered(film, 0, top=40, left=36, bottom=40, right=36)
    frame = np.ones(pixels.shape, dtype=bool)
    frame[truth.top:truth.bottom, truth.left:truth.right] = False
    noisy = np.clip(200 + rng.normal(0, 2.5, pixels.shape), 0, 255).astype(np.uint8)
    pixels[frame] = noisy[frame]
    specks = rng.integers(0, pixels.shape[1], 6)
    pixels[5, specks] = 0  # dust on one line of the frame
    _, box = crop_borders(pixels)
    assert off_by(box, truth) <= 2, (box, truth)


def test_borders_of_two_colours_are_both_cropped():
    """A white strip on top runs across the black one on the left until it is gone."""
    film = xray_like(400, 360, seed=3)
    inner, _ = bordered(film, 0, left=30)
    pixels, _ = bordered(inner, 255, top=20)
    _, box = crop_borders(pixels)
    assert off_by(box, Box(20, 30, 420, 390)) <= 2, box


@pytest.mark.parametrize("film", [xray_like(400, 360, seed=3), chest_with_dark_lungs()],
                         ids=["noisy", "dark-lungs-at-the-edges"])
def test_a_film_without_a_border_is_left_as_it_is(film):
    cropped, box = crop_borders(film)
    assert box == Box(0, 0, *film.shape)
    assert np.shares_memory(cropped, film) and cropped.shape == film.shape
    # and its model input is version 2's, bit for bit
    np.testing.assert_array_equal(to_model_input(film, (64, 64), 3, version="3"),
                                  to_model_input(film, (64, 64), 3, version="2"))


def test_a_dark_lung_field_beside_a_border_is_not_cropped():
    film = chest_with_dark_lungs()
    pixels, truth = bordered(film, 0, left=10, right=10)
    _, box = crop_borders(pixels)
    assert off_by(box, truth) <= 2, (box, truth)


@pytest.mark.parametrize("value", [0, 90, 255])
def test_a_uniform_film_is_not_cropped(value):
    pixels = np.full((300, 240), value, dtype=np.uint8)
    assert crop_borders(pixels)[1] == Box(0, 0, 300, 240)


def test_a_border_wider_than_the_most_a_side_may_lose_is_left_for_the_guard():
    """45% of the width is no thin border (a small film on a large canvas): left whole, for
    the input guard, which holds such films back; a thin border on another side still goes."""
    film = xray_like(400, 220, seed=3)
    wide = round(0.45 * 400)
    assert wide > MAX_SHARE * (220 + wide)
    pixels, _ = bordered(film, 0, left=wide)
    assert crop_borders(pixels)[1] == Box(0, 0, 400, 220 + wide)
    both, _ = bordered(pixels, 255, top=16)
    assert off_by(crop_borders(both)[1], Box(16, 0, 416, 220 + wide)) <= 2


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (1, 50), (50, 1), (3, 3, 3)])
def test_the_crop_never_leaves_an_empty_film(shape):
    cropped, _ = crop_borders(np.zeros(shape, dtype=np.uint8))
    assert cropped.size > 0


def test_an_rgb_film_is_cropped_as_its_grey():
    film = xray_like(400, 360, seed=3)
    grey, truth = bordered(film, 0, left=14, bottom=9)
    colour = np.repeat(grey[:, :, None], 3, axis=2)
    cropped, box = crop_borders(colour)
    assert box == crop_borders(grey)[1] and off_by(box, truth) <= 2
    assert cropped.shape == (box.bottom - box.top, box.right - box.left, 3)


def test_a_border_of_a_clinic_size_film_is_found_within_one_search_block():
    """A film over SEARCH_SIDE is searched reduced (so that its whole and half-size decodes
    are cut alike): its border is found to within one block, 6 px of 2,900 here, a tenth of
    one pixel of the 64 px input."""
    film = xray_like(2900, 2400, seed=4)
    pixels, truth = bordered(film, 0, top=60, left=70, bottom=40, right=90)
    assert off_by(crop_borders(pixels)[1], truth) <= -(-2900 // SEARCH_SIDE)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["NORMAL/IM-0099-0001.jpeg", "NORMAL/NORMAL2-IM-0313-0001.jpeg",
                                  "NORMAL/NORMAL2-IM-0336-0001.jpeg"])
def test_a_large_jpeg_and_its_half_size_decode_are_cut_alike(data_dir, name):
    """preprocessing.decode reads a large JPEG at half size (its DCT scaling, a smoother
    edge): the crop must land where the whole decode's does. Test films with black strips,
    enlarged to a clinic's 1,024 px: searched whole, these were cut 7 px further in at half
    size."""
    film = Image.open(data_dir / "test" / name).convert("L")
    data = encode(film.resize((1024, 1024), Image.Resampling.BICUBIC), "JPEG", quality=92)
    whole, half = decode(data).pixels, decode(data, target=(64, 64)).pixels
    assert half.shape[0] * 2 == whole.shape[0]  # the half-size path was taken
    whole_box, half_box = crop_borders(whole)[1], crop_borders(half)[1]
    assert whole_box.left > 0  # there is a strip to cut
    assert all(abs(a - 2 * b) <= 2 for a, b in zip(whole_box, half_box)), (whole_box, half_box)


@pytest.mark.parametrize("pixels", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8),
                                    np.zeros(4, np.uint8)], ids=["float", "rgba", "1-d"])
def test_crop_borders_refuses_what_is_not_a_film(pixels):
    with pytest.raises(ValueError):
        crop_borders(pixels)


# --- the preprocessing version decides ---------------------------------------------------

def test_this_code_crops_and_serves_the_models_of_every_version_before():
    assert PREPROCESSING_VERSION == "3" and crops_borders(PREPROCESSING_VERSION)
    assert SERVES_PREPROCESSING_VERSIONS == ("1", "2", "3")
    assert not crops_borders("1") and not crops_borders("2")
    with pytest.raises(ValueError):
        crops_borders("999")


def test_version_3_input_of_a_bordered_film_is_the_films_own_input():
    film = xray_like(400, 360, seed=3)
    pixels, _ = bordered(film, 0, left=14, right=7)  # 2-4% of the width, the edge
    np.testing.assert_array_equal(to_model_input(pixels, (64, 64), 3, version="3"),
                                  to_model_input(film, (64, 64), 3, version="3"))


@pytest.mark.parametrize("version", ["1", "2"])
def test_versions_1_and_2_get_the_whole_film_as_before(version):
    """Their models were trained on whole films: bit for bit the resize they had."""
    film = xray_like(400, 360, seed=3)
    pixels, _ = bordered(film, 0, left=14, top=20)
    before = np.asarray(Image.fromarray(pixels).resize((64, 64), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(to_model_input(pixels, (64, 64), 1, version=version),
                                  before[:, :, None])
    assert model_film(pixels, version)[1] == Box(0, 0, *pixels.shape)


def test_load_model_input_crops_by_the_version_it_is_given():
    film = xray_like(400, 360, seed=3)
    pixels, _ = bordered(film, 255, top=12, bottom=12)
    data, plain = encode(Image.fromarray(pixels), "PNG"), encode(Image.fromarray(film), "PNG")
    np.testing.assert_array_equal(load_model_input(data, (64, 64), 3),  # this code's: 3
                                  load_model_input(plain, (64, 64), 3, version="2"))
    np.testing.assert_array_equal(load_model_input(data, (64, 64), 3, version="2"),
                                  to_model_input(pixels, (64, 64), 3, version="1"))
