"""Fitting and exporting the polarity/rotation detector (training/assessability.py), on a
small part of the real dataset."""

import json
import shutil

import pytest

from app.contract.assessability import DETECTOR_FILE, OrientationDetector
from app.contract.card import read_card
from tests.servers import REPO
from training.assessability import export, fit, measure, thumbnails
from training.data import list_split

pytestmark = pytest.mark.realdata


def test_fitted_on_training_films_it_passes_upright_and_catches_copies_of_test_films(
        data_dir, tmp_path):
    train = thumbnails(list(list_split(data_dir, "train").paths)[::40])
    test = thumbnails(list(list_split(data_dir, "test").paths)[::20])
    detector = fit(train)
    measured = measure(detector, test)
    assert measured["films"] == len(test)
    assert measured["upright_pass_rate"] >= 0.9
    assert set(measured["caught"]) == {"rotated_90", "rotated_180", "rotated_270", "inverted",
                                       "inverted_90", "inverted_180", "inverted_270"}
    assert min(measured["caught"].values()) >= 0.9

    folder = tmp_path / "pneumonia" / "2"
    folder.mkdir(parents=True)
    shutil.copy(REPO / "models" / "pneumonia" / "2" / "model_card.json", folder)
    detector = OrientationDetector(detector.weights, detector.bias, detector.margin, measured)
    export(detector, folder, data_dir)
    card = read_card(folder)
    assert card.assessability.file == DETECTOR_FILE
    assert card.assessability.upright_pass_rate == measured["upright_pass_rate"]
    assert json.loads((folder / DETECTOR_FILE).read_text())["measured"] == measured
    assert OrientationDetector.read(folder) is not None
