import numpy as np
import pytest
import tensorflow as tf

from tests.builders.images import make_dataset_tree
from training.experiments import EXPERIMENTS
from training.export import VersionExistsError, export_saved_model


@pytest.mark.slow
def test_saved_model_serving_default_matches_keras_model(tmp_path):
    model = EXPERIMENTS[5].build((64, 64, 3))
    # Train one step so the weights are not just the initialiser's.
    model.compile(optimizer="adam", loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 64, 64, 3)).astype(np.float32)
    model.fit(x, rng.integers(0, 2, (16, 1)).astype(np.float32), epochs=1, verbose=0)

    version_dir = export_saved_model(model, tmp_path / "pneumonia" / "1")
    serving = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    exported = serving(images=tf.constant(x))["probability"].numpy()
    expected = model.predict(x, verbose=0).reshape(-1)
    assert exported.shape == (16,)
    assert np.max(np.abs(exported - expected)) < 1e-5


def test_export_writes_saved_model_layout(tmp_path):
    version_dir = export_saved_model(EXPERIMENTS[5].build((64, 64, 3)), tmp_path / "m" / "3")
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables").is_dir()


def test_export_never_replaces_a_version_unless_forced(tmp_path):
    model = EXPERIMENTS[5].build((64, 64, 3))
    version_dir = export_saved_model(model, tmp_path / "m" / "1")
    marker = version_dir / "model_card.json"
    marker.write_text("{}")
    with pytest.raises(VersionExistsError):
        export_saved_model(model, version_dir)
    assert marker.read_text() == "{}"
    export_saved_model(model, version_dir, force=True)
    assert not marker.exists() and (version_dir / "saved_model.pb").is_file()


def test_helpers_tree_is_a_valid_dataset(tmp_path):
    root = make_dataset_tree(tmp_path, {"train": {"NORMAL": 2, "PNEUMONIA": 2}})
    assert len(list(root.glob("train/*/*.jpeg"))) == 4
