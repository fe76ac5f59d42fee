import numpy as np
import pytest

from tests.builders.images import make_dataset_tree
from training.data import (
    list_split,
    load_arrays,
    patient_id,
    split_train_validation,
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_dataset_tree(tmp_path_factory.mktemp("xray"), {
        "train": {"NORMAL": 40, "PNEUMONIA": 80},
        "test": {"NORMAL": 6, "PNEUMONIA": 8},
    })


@pytest.mark.parametrize(("name", "patient"), [
    ("person123_bacteria_456.jpeg", "person123"),
    ("person7_virus_13.jpeg", "person7"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("IM-0629-0001-0002.jpeg", "IM-0629"),
    ("NORMAL2-IM-1258-0001.jpeg", "NORMAL2-IM-1258"),
    ("odd_name.png", "odd_name"),
])
def test_patient_id_from_file_name(tmp_path, name, patient):
    assert patient_id(tmp_path / name) == patient


def test_list_split_reads_both_classes_in_order(tree):
    train = list_split(tree, "train")
    assert train.counts() == {"NORMAL": 40, "PNEUMONIA": 80}
    assert list(train.labels[:40]) == [0] * 40 and list(train.labels[40:]) == [1] * 80


def test_list_split_missing_folder_raises(tree):
    with pytest.raises(FileNotFoundError):
        list_split(tree, "val")


def test_split_train_validation_keeps_patients_apart_and_stratifies(tree):
    train = list_split(tree, "train")
    fit, val = split_train_validation(train, val_fraction=0.1, seed=3)
    assert len(fit) + len(val) == len(train)
    assert not set(fit.patients) & set(val.patients)
    assert set(fit.paths).isdisjoint(val.paths)
    counts = val.counts()
    assert counts["NORMAL"] > 0 and counts["PNEUMONIA"] > 0
    assert 0.05 < len(val) / len(train) < 0.2
    share = counts["PNEUMONIA"] / len(val)
    assert abs(share - 80 / 120) < 0.15


def test_split_train_validation_is_seeded(tree):
    train = list_split(tree, "train")
    first = split_train_validation(train, 0.1, seed=1)[1].paths
    assert split_train_validation(train, 0.1, seed=1)[1].paths == first
    assert split_train_validation(train, 0.1, seed=2)[1].paths != first


def test_load_arrays_decodes_and_caches(tree, tmp_path):
    test = list_split(tree, "test")
    arrays = load_arrays(test, (64, 64), 3, cache_dir=tmp_path)
    assert arrays.shape == (14, 64, 64, 3) and arrays.dtype == np.uint8
    assert len(list(tmp_path.glob("*.npz"))) == 1
    np.testing.assert_array_equal(load_arrays(test, (64, 64), 3, cache_dir=tmp_path), arrays)
    # A different input shape is a different cache entry, never a stale hit.
    assert load_arrays(test, (32, 32), 1, cache_dir=tmp_path).shape == (14, 32, 32, 1)
