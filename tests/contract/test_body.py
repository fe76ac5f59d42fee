"""The patient's body from the film itself, and the share of a heatmap outside it
(app/contract/body.py), on made films: a bright body ellipse on dark air with dark lungs
inside it (tests/builders/images.py `chest_on_air`)."""

from __future__ import annotations

import numpy as np
import pytest

from app.contract.body import body_mask, heatmap_warning, mostly_outside, outside_share
from tests.builders.images import body_ellipse
from tests.builders.images import chest_on_air as chest


def test_body_mask_keeps_the_lungs_inside_and_the_air_outside():
    film, body, lungs = chest()
    mask = body_mask(film)
    assert mask.shape == film.shape and mask.dtype == bool
    assert mask[lungs].mean() == 1.0  # the lungs are dark, but enclosed by the body
    # The air is outside: all of it but the body's edge, which the mask, found on a film
    # reduced to about 128 px and blurred, widens by a few px (so a map on the skin line
    # counts as inside, the cautious side).
    assert not mask[~body_ellipse(*film.shape, grow=5)].any()
    assert mask[body].all()


def test_body_mask_leaves_a_marker_in_the_air_outside():
    film, _, _ = chest(marker=True)
    assert not body_mask(film)[10:26, 8:20].any()


@pytest.mark.parametrize("shape", [(224, 224), (300, 180), (97, 131), (1000, 800)])
def test_body_mask_has_the_films_shape_at_any_size(shape):
    film, body, _ = chest(*shape)
    mask = body_mask(film)
    assert mask.shape == shape
    assert (mask == body).mean() > 0.95


def test_body_mask_reads_an_rgb_film_as_its_grey():
    film, _, _ = chest()
    assert np.array_equal(body_mask(np.repeat(film[:, :, None], 3, axis=2)), body_mask(film))


def test_a_film_the_body_fills_is_all_body():
    film = np.random.default_rng(1).normal(150, 10, (128, 128)).clip(0, 255).astype(np.uint8)
    film[40:80, 30:60] = 40  # a lung-dark region that never reaches the edge
    assert body_mask(film).all()


def test_body_mask_refuses_what_is_not_a_film():
    with pytest.raises(ValueError):
        body_mask(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError):
        body_mask(np.zeros((0, 5), np.uint8))


def test_a_map_all_outside_the_body_is_about_one_and_all_inside_about_zero():
    film, body, lungs = chest()
    mask = body_mask(film)
    # A map at the model input's size (64 px), the mask at the film's (224 px).
    small_body = chest(64, 64)[1]
    outside = np.where(small_body, 0.0, 1.0)
    inside = np.where(chest(64, 64)[2], 1.0, 0.0)  # on the lungs
    assert outside_share(outside, mask) > 0.95
    assert outside_share(inside, mask) < 0.01
    half = np.zeros((64, 64))
    half[0:8, 0:8] = 1  # the air of a corner
    half[28:36, 28:36] = 1  # the mediastinum
    assert outside_share(half, mask) == pytest.approx(0.5, abs=0.05)


def test_a_map_of_zeros_points_nowhere():
    assert outside_share(np.zeros((8, 8)), np.ones((16, 16), bool)) == 0.0


@pytest.mark.parametrize("heat", [-np.ones((4, 4)), np.full((4, 4), np.nan), np.ones((4,))])
def test_outside_share_refuses_heat_that_is_no_map(heat):
    with pytest.raises(ValueError):
        outside_share(heat, np.ones((4, 4), bool))


@pytest.mark.parametrize(("share", "warned"), [(0.5, False), (0.51, True), (0.97, True),
                                               (0.1, False)])
def test_the_warning_comes_with_a_map_mostly_outside(share, warned):
    assert mostly_outside(share) is warned
    text = heatmap_warning(share)
    assert (text is not None) is warned
    if warned:
        assert text == (f"The heatmap points mostly outside the body ({round(share * 100)}% of "
                        "it): it does not show what the model read in the lungs.")
