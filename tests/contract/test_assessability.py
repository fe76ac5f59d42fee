"""The polarity/rotation detector and the contrast check (app/contract/assessability.py), on
the committed detector and dataset films."""

import numpy as np
import pytest

from app.contract.assessability import (
    ORIENTATIONS,
    OrientationDetector,
    contrast_reasons,
    orient,
    thumbnail,
)
from tests.builders import films as fb
from tests.servers import REPO

DETECTOR_DIR = REPO / "models" / "pneumonia" / "2"


@pytest.fixture(scope="module")
def detector() -> OrientationDetector:
    found = OrientationDetector.read(DETECTOR_DIR)
    assert found is not None
    return found


@pytest.mark.realdata
def test_upright_films_pass_and_their_rotated_and_inverted_copies_are_caught(detector,
                                                                            data_dir):
    films = sorted((data_dir / "test").glob("*/*.jpeg"))[::25]
    for path in films:
        thumb = thumbnail(fb.gray_of(path))
        assert detector.judge_thumbnail(thumb).reasons == (), path.name
        for turns, inverted in ORIENTATIONS[1:]:
            verdict = detector.judge_thumbnail(orient(thumb, turns, inverted))
            expected = (("inverted",) if inverted else ()) + (("rotated",) if turns else ())
            assert verdict.reasons == expected, (path.name, turns, inverted)


@pytest.mark.realdata
def test_full_size_samples_pass(detector, samples_dir):
    for path in sorted(samples_dir.glob("*.jpeg")):
        assert detector.judge(fb.gray_of(path)).reasons == (), path.name


def test_the_committed_detector_states_its_measured_rates(detector):
    assert detector.measured["upright_pass_rate"] >= 0.99
    assert min(detector.measured["caught"].values()) >= 0.99


def test_a_detector_file_round_trips_and_a_bad_one_is_refused(detector, tmp_path):
    detector.write(tmp_path)
    again = OrientationDetector.read(tmp_path)
    assert np.array_equal(again.weights, detector.weights) and again.margin == detector.margin
    (tmp_path / "assessability.json").write_text('{"thumbnail": 16, "weights": [1], '
                                                 '"bias": 0, "margin": 0}')
    with pytest.raises(ValueError):
        OrientationDetector.read(tmp_path)
    assert OrientationDetector.read(tmp_path / "absent") is None


@pytest.mark.parametrize(("pixels", "reasons"), [
    (np.full((300, 300), 128, np.uint8), ("no_contrast",)),
    (np.where(np.arange(300)[:, None] % 2 == 0, 0, 255).repeat(300, 1).astype(np.uint8),
     ("no_contrast",)),
    (np.linspace(0, 255, 300 * 300).reshape(300, 300).astype(np.uint8), ()),
], ids=["blank", "black-and-white", "grey-ramp"])
def test_contrast(pixels, reasons):
    assert contrast_reasons(pixels) == reasons
