"""The loader and the patient-grouped split on the real dataset (fails if it is missing)."""

import pytest

from training import defaults
from training.data import list_split, split_train_validation

pytestmark = pytest.mark.realdata


def test_real_dataset_counts_and_grouped_split(data_dir):
    train, test = list_split(data_dir, "train"), list_split(data_dir, "test")
    assert train.counts() == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert test.counts() == {"NORMAL": 234, "PNEUMONIA": 390}
    fit, val = split_train_validation(train, defaults.VAL_FRACTION, defaults.SEED)
    assert not set(fit.patients) & set(val.patients)
    assert 0.08 < len(val) / len(train) < 0.12
    for name in ("NORMAL", "PNEUMONIA"):
        share_val = val.counts()[name] / len(val)
        share_train = train.counts()[name] / len(train)
        assert abs(share_val - share_train) < 0.03
