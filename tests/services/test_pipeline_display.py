"""score_film's `display` (app/services/pipeline.py): a door that draws its own picture of the
result (the DICOM node's secondary capture) gets the film and its heat map as arrays, and no
PNG; the other doors get what they always got, and no pixels are kept for them."""

from __future__ import annotations

import numpy as np
import pytest

from app.services.film import HEATMAP_SIZE
from app.services.pipeline import score_film
from tests.builders.images import jpeg_bytes, png_bytes
from tests.dicom.nodes import stand_in_scorer


def test_a_plain_prediction_keeps_no_pixels():
    prediction = score_film(stand_in_scorer(), jpeg_bytes(300, 260))
    assert prediction.display is None and prediction.heatmap is None


def test_an_explained_prediction_for_http_has_png_layers_and_no_arrays():
    prediction = score_film(stand_in_scorer(), jpeg_bytes(300, 260), explain=True)
    assert prediction.heatmap is not None and prediction.display is None
    assert prediction.heatmap.film.startswith("data:image/png;base64,")


def test_a_prediction_for_display_has_the_film_and_heat_map_as_arrays():
    scorer = stand_in_scorer()
    prediction = score_film(scorer, png_bytes(900, 700), explain=True, display=True)
    assert prediction.heatmap is None  # no PNG made for a door that draws its own
    display = prediction.display
    assert display.film.dtype == np.uint8 and display.film.ndim == 2
    height, width = display.film.shape
    assert max(height, width) <= HEATMAP_SIZE and height / width == pytest.approx(9 / 7, 0.01)
    assert display.heat.shape == scorer.model.card.input_size
    assert display.heat.min() >= 0 and display.heat.max() <= 1


@pytest.mark.parametrize("explain", [False, True])
def test_a_prediction_for_display_without_a_heat_map_still_has_the_film(explain):
    scorer = stand_in_scorer(can_explain=False)
    prediction = score_film(scorer, jpeg_bytes(300, 260), explain=explain, display=True)
    assert prediction.display.heat is None and prediction.display.film.shape == (300, 260)


def test_display_pixels_take_no_part_in_comparing_or_printing_predictions():
    import dataclasses

    shown = score_film(stand_in_scorer(), jpeg_bytes(300, 260), display=True)
    assert shown == dataclasses.replace(shown, display=None)
    assert "display" not in repr(shown)


def test_a_heat_map_carries_its_share_outside_the_body_for_every_door():
    from PIL import Image

    from app.contract.body import film_outside_share, heatmap_warning
    from tests.builders.images import chest_on_air, encode

    film = encode(Image.fromarray(chest_on_air()[0]), "PNG")
    shown = score_film(stand_in_scorer(), film, explain=True, display=True).display
    assert shown.outside_body == film_outside_share(shown.film, shown.heat)
    assert 0 < shown.outside_body < 1  # the stand-in's map rises to the right, over air too
    assert shown.heat_warning == heatmap_warning(shown.outside_body)
    drawn = score_film(stand_in_scorer(), film, explain=True).heatmap
    assert drawn.outside_body == pytest.approx(shown.outside_body)
    assert drawn.warning == heatmap_warning(drawn.outside_body)
