"""The drift reference and its population stability index (app/contract/drift.py)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from app.contract.drift import PSI_THRESHOLD, STATISTICS, Bins, DriftReference
from app.contract.guard import InputGuard
from tests.servers import REPO

MODELS = REPO / "models"


def test_bins_of_validation_values_are_deciles_with_a_tenth_each():
    values = np.random.default_rng(0).normal(size=1000)
    bins = Bins.of(values)
    assert len(bins.edges) == 9 and sum(bins.counts) == 1000
    assert all(abs(count - 100) <= 1 for count in bins.counts)


def test_psi_of_the_same_distribution_stays_under_the_threshold():
    rng = np.random.default_rng(1)
    bins = Bins.of(rng.normal(size=522))
    assert bins.psi(rng.normal(size=500)) < 0.1


@pytest.mark.parametrize(("shift", "scale"), [(1.0, 1.0), (0.0, 0.3), (-1.5, 2.0)])
def test_psi_of_a_shifted_or_squeezed_distribution_crosses_the_threshold(shift, scale):
    rng = np.random.default_rng(2)
    bins = Bins.of(rng.normal(size=522))
    assert bins.psi(rng.normal(shift, scale, size=500)) > PSI_THRESHOLD


def test_psi_counts_every_window_value_once_and_no_window_is_nan():
    bins = Bins(edges=[0.5], counts=[10, 10])
    assert bins.psi(np.array([0.5, 0.5])) > 0  # an edge value falls in the bin above
    assert bins.psi(np.array([0.1, 0.9])) == pytest.approx(0.0)
    assert np.isnan(bins.psi(np.array([])))


def test_tied_quantiles_are_merged_so_no_bin_is_empty_by_construction():
    values = np.r_[np.zeros(600), np.linspace(0.1, 1, 400)]
    bins = Bins.of(values)
    assert bins.edges == sorted(set(bins.edges)) and min(bins.counts) > 0


def test_a_reference_refuses_mismatched_counts_and_unknown_statistics():
    with pytest.raises(ValidationError):
        Bins(edges=[0.2, 0.1], counts=[1, 1, 1])
    with pytest.raises(ValidationError):
        Bins(edges=[0.5], counts=[1])
    with pytest.raises(ValidationError):
        DriftReference(split="validation", films=2,
                       statistics={"score": Bins(edges=[], counts=[2]),
                                   "age": Bins(edges=[], counts=[2])})


def test_reference_round_trips_through_its_file(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    reference = DriftReference.of(rng.random(40), images, None)
    assert set(reference.statistics) == {"score", "brightness", "contrast"}
    reference.write(tmp_path)
    assert DriftReference.read(tmp_path) == reference
    assert DriftReference.read(tmp_path / "none") is None


@pytest.mark.parametrize("version_dir", ["pneumonia/2", "pneumonia_compact/1", "pneumonia/1"])
def test_every_committed_model_has_a_reference_on_its_validation_split(version_dir):
    folder = MODELS / version_dir
    reference = DriftReference.read(folder)
    assert reference is not None and reference.split == "validation"
    assert reference.films == 522  # the cards' validation split: 134 + 388 films
    expected = set(STATISTICS) if InputGuard.read(folder) else set(STATISTICS) - {
        "guard_distance"}
    assert set(reference.statistics) == expected
    for bins in reference.statistics.values():
        assert sum(bins.counts) == reference.films
