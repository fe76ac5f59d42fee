"""`--protocol real-films`: films augmented at their own resolution and prepared as the app
prepares them, the served models retrained and exported as new versions beside the old."""

import json
import subprocess
import sys

import numpy as np
import pytest

from app.contract.card import read_card
from app.contract.preprocessing import PREPROCESSING_VERSION, decode, load_model_input
from app.contract.report import read_report
from app.services.saved_model import ServedModel, find_model
from tests.builders.images import make_dataset_tree
from training.data import list_split
from training.films import FilmBatches, load_films, model_input


def _identity(film, rng):
    return film


def test_batches_prepare_each_film_as_the_app_does(tmp_path):
    data = make_dataset_tree(tmp_path / "data", {"train": {"NORMAL": 3, "PNEUMONIA": 2}})
    split = list_split(data, "train")
    films = load_films(split)
    assert films.dtype == np.uint8 and films.ndim == 3 and len(films) == 5
    batches = FilmBatches(films, split.labels, 2, _identity, (16, 16), 3, seed=0)
    images, labels = batches[0]
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.float32
    # Unaugmented, a film's batch image is the app's model input for its file, byte for byte.
    order = batches._epoch[1][:2]
    for image, i in zip(images, order):
        expected = load_model_input(split.paths[i].read_bytes(), (16, 16), 3)
        assert np.array_equal(image.astype(np.uint8), expected)
        assert labels[list(order).index(i)] == split.labels[i]


def test_batches_draw_the_same_augmentation_for_the_same_epoch_and_batch(tmp_path):
    data = make_dataset_tree(tmp_path / "data", {"train": {"NORMAL": 3, "PNEUMONIA": 3}})
    split = list_split(data, "train")
    films = load_films(split)

    def noisy(film, rng):
        return np.clip(film + rng.integers(0, 40, film.shape), 0, 255).astype(np.uint8)

    one = FilmBatches(films, split.labels, 3, noisy, (16, 16), 1, seed=7)
    two = FilmBatches(films, split.labels, 3, noisy, (16, 16), 1, seed=7)
    assert np.array_equal(one[1][0], two[1][0])
    first = one[0][0]
    one.on_epoch_end()
    assert not np.array_equal(first, one[0][0])  # a new order and a new draw each epoch


def test_films_are_cached_and_read_back(tmp_path):
    data = make_dataset_tree(tmp_path / "data", {"train": {"NORMAL": 2, "PNEUMONIA": 2}})
    split = list_split(data, "train")
    films = load_films(split, tmp_path / "cache")
    assert list((tmp_path / "cache").glob("films-*.npz"))
    assert np.array_equal(load_films(split, tmp_path / "cache"), films)


def test_model_input_is_the_app_s_for_a_decoded_film(tmp_path):
    data = make_dataset_tree(tmp_path / "data", {"train": {"NORMAL": 1, "PNEUMONIA": 1}})
    path = list_split(data, "train").paths[0]
    pixels = decode(path.read_bytes()).pixels
    grey = pixels if pixels.ndim == 2 else pixels[..., 0]
    assert np.array_equal(model_input(grey, (16, 16), 3),
                          load_model_input(path.read_bytes(), (16, 16), 3))


@pytest.mark.slow
def test_real_films_protocol_exports_new_versions_beside_the_old(tmp_path):
    data = make_dataset_tree(tmp_path / "data", {
        "train": {"NORMAL": 24, "PNEUMONIA": 24}, "test": {"NORMAL": 8, "PNEUMONIA": 8}})
    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ["--data-dir", str(data), "--out", str(out), "--max-epochs", "1",
              "--cache-dir", str(cache)]
    full = subprocess.run([sys.executable, "-m", "training", "--experiments", "5", *common],
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    result = subprocess.run([sys.executable, "-m", "training", "--protocol", "real-films",
                             *common], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "=== experiment 5 on real-film augmentations" in result.stdout
    section = read_report(out).real_film_models
    assert [m.number for m in section.models] == [5, 8]
    five, eight = section.models
    assert five.previous.version == 1 and five.retrained.version == 2
    assert eight.previous is None and eight.retrained.version == 1
    card = read_card(out / "pneumonia" / "2")
    assert card.input.preprocessing_version == PREPROCESSING_VERSION
    assert card.training.protocol == "real-films"
    assert "retrained on real-film augmentations" in card.description
    assert read_card(out / "pneumonia" / "1").training.protocol == "full"  # kept as it was
    for name, version in (("pneumonia", 2), ("pneumonia_compact", 1)):
        folder = out / name / str(version)
        assert (folder / "test_predictions.csv").read_text().count("\n") == 17
        assert (folder / "drift_reference.json").is_file()
        model = ServedModel(find_model(out, name, version))
        assert model.predict(np.zeros((1, 64, 64, 3), np.float32)).shape == (1,)
    report = json.loads((out / "report.json").read_text())
    assert [e["number"] for e in report["experiments"]] == [5]  # the full run's, kept
    # A second run of model 5 alone, with other probabilities, replaces model 5's entry and
    # keeps model 8's.
    again = subprocess.run([sys.executable, "-m", "training", "--protocol", "real-films",
                            "--experiments", "5", "--augment-probabilities", "geometry=0.8",
                            *common], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    five, eight_kept = read_report(out).real_film_models.models
    assert five.retrained.version == 3 and five.probabilities["geometry"] == 0.8
    assert "geometry 0.8" in five.augmentation and "--experiments 5" in five.command
    assert eight_kept == eight


def test_augment_probabilities_change_only_the_families_named():
    from training.augment import DEFAULT_PROBABILITIES, describe_real_films
    from training.cli import parse_args

    args = parse_args(["run", "--protocol", "real-films", "--data-dir", "d",
                       "--augment-probabilities", "geometry=0.8, contrast=0.6"])
    assert args.augment_probabilities == {**DEFAULT_PROBABILITIES, "geometry": 0.8,
                                          "contrast": 0.6}
    assert "geometry 0.8" in describe_real_films(args.augment_probabilities)
    for wrong in ("curves=0.5", "geometry=1.5", "geometry"):
        with pytest.raises(SystemExit):
            parse_args(["run", "--protocol", "real-films", "--data-dir", "d",
                        "--augment-probabilities", wrong])
