"""Version numbering of exported models, and the per-file test predictions beside them."""

from pathlib import Path

import numpy as np

from training.data import Split
from training.release import next_version, read_predictions, write_predictions


def test_next_version_is_one_more_than_the_highest_numbered_folder(tmp_path):
    assert next_version(tmp_path / "new") == 1
    for name in ("1", "3", "notes", "10"):
        (tmp_path / "m" / name).mkdir(parents=True)
    assert next_version(tmp_path / "m") == 11


def test_predictions_file_round_trips_labels_and_calibrated_probabilities(tmp_path):
    paths = (Path("/d/test/NORMAL/a.jpeg"), Path("/d/test/PNEUMONIA/b.jpeg"))
    split = Split(paths=paths, labels=np.array([0, 1]), patients=("a", "b"))
    calibrated, raw = np.array([0.125, 0.9]), np.array([0.2, 0.95])
    write_predictions(tmp_path / "p.csv", split, calibrated, raw)
    assert (tmp_path / "p.csv").read_text().splitlines()[1].startswith("test/NORMAL/a.jpeg,")
    labels, probabilities = read_predictions(tmp_path / "p.csv")
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_array_equal(probabilities, calibrated)  # repr: exact
