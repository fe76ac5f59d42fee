"""A heatmap that points mostly outside the patient's body says so with it (issue 28, item
5): in the API's answer and on the page, beside the map; a map on the body says nothing.
The network is a stand-in whose map is known; the film a made chest on air."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.contract.body import heatmap_warning
from app.services.catalog import ModelCatalog
from app.web.main import create_app
from tests.builders.images import chest_on_air, encode
from tests.dicom.nodes import StandInModel
from tests.servers import settings_for_tests


class MapModel(StandInModel):
    """The committed card, a fixed probability, and a heat map over the given columns of
    the model input (fractions of its width)."""

    def __init__(self, columns: tuple[float, float]) -> None:
        super().__init__(probability=0.9)
        self.columns = columns
        self.robustness = None

    def explain(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = self.card.input_size
        heat = np.zeros((len(images), height, width), np.float32)
        heat[:, :, round(self.columns[0] * width):round(self.columns[1] * width)] = 1
        return self.predict(images), heat


AIR = (0.0, 0.1)  # the strip of air at the film's left (the body starts at 14%)
BODY = (0.4, 0.6)  # the middle of the chest
FILM = encode(Image.fromarray(chest_on_air()[0]), "PNG")


def _client(columns: tuple[float, float]) -> TestClient:
    model = MapModel(columns)
    catalog = ModelCatalog()
    catalog.models, catalog.default = {model.card.name: model}, model
    return TestClient(create_app(settings_for_tests(decode_workers=0), catalog=catalog))


@pytest.mark.parametrize(("columns", "warned"), [(AIR, True), (BODY, False)])
def test_the_api_says_when_the_heatmap_points_outside_the_body(columns, warned):
    with _client(columns) as client:
        heatmap = client.post("/predict?explain=true",
                              files={"file": ("chest.png", FILM)}).json()["heatmap"]
    if warned:
        assert heatmap["outside_body"] > 0.95
        assert heatmap["warning"] == heatmap_warning(heatmap["outside_body"])
        assert heatmap["warning"].startswith("The heatmap points mostly outside the body (")
    else:
        assert heatmap["outside_body"] < 0.1 and heatmap["warning"] is None  # the neck's air


@pytest.mark.parametrize(("columns", "warned"), [(AIR, True), (BODY, False)])
def test_the_page_shows_the_warning_with_the_map(columns, warned):
    with _client(columns) as client:
        page = client.post("/?explain=true", files={"files": ("chest.png", FILM)}).text
    start = page.index('id="heat-warning"')
    tag = page[start:page.index("</p>", start)]
    assert ("hidden" not in tag.split(">", 1)[0]) is warned
    assert ("points mostly outside the body" in tag) is warned
    assert page.index('id="heat-overlay"') < start < page.index('id="heat-legend"')
