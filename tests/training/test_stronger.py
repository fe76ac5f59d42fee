"""The stronger protocol (models beyond the study, over seeds): its report and its export."""

import json
import subprocess
import sys

import numpy as np
import pytest

from app.contract.card import read_card
from app.contract.report import read_report
from app.services.saved_model import ServedModel, find_model
from tests.builders.images import make_dataset_tree

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stronger_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stronger")
    data = make_dataset_tree(root / "data", {
        "train": {"NORMAL": 24, "PNEUMONIA": 24}, "test": {"NORMAL": 8, "PNEUMONIA": 8}})
    out, cache = root / "out", root / "cache"
    common = ["--data-dir", str(data), "--out", str(out), "--max-epochs", "1",
              "--cache-dir", str(cache)]
    # Model 5 first, as the full protocol exports it: the stronger report compares with it.
    full = subprocess.run([sys.executable, "-m", "training", "--experiments", "5", *common],
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    result = subprocess.run([sys.executable, "-m", "training", "--protocol", "stronger",
                             "--seeds", "2", *common], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_stronger_protocol_reports_every_seed_and_their_spread(stronger_run):
    out, stdout = stronger_run
    assert "=== experiment 8, seed 42 (1/2)" in stdout and "seed 43 (2/2)" in stdout
    report = json.loads((out / "report.json").read_text())
    assert read_report(out).stronger_models.seeds == [42, 43]  # valid against the schema
    assert [e["number"] for e in report["experiments"]] == [5]  # the full run's, kept
    section = report["stronger_models"]
    assert section["seeds"] == [42, 43]
    (entry,) = section["experiments"]
    assert [r["seed"] for r in entry["runs"]] == [42, 43]
    for key in ("roc_auc", "accuracy", "recall", "specificity"):
        values = [r["metrics"][key] for r in entry["runs"]]
        assert entry["summary"][key]["mean"] == pytest.approx(np.mean(values))
        assert entry["summary"][key]["sd"] == pytest.approx(np.std(values, ddof=1))
    for run in entry["runs"]:
        assert sum(map(sum, run["metrics"]["confusion_matrix"])) == 16
        assert 0 <= run["threshold"] <= 1 and run["validation_roc_auc"] is not None
    assert section["baseline"]["number"] == 5 and section["reference"]["roc_auc"] == 0.968
    for path in entry["figures"].values():
        assert (out / path).read_bytes()[:4] == b"\x89PNG"


def test_stronger_protocol_exports_the_best_validation_seed_beside_model_5(stronger_run):
    out, _ = stronger_run
    entry = json.loads((out / "report.json").read_text())["stronger_models"]["experiments"][0]
    best = max(entry["runs"], key=lambda r: r["validation_roc_auc"])
    assert entry["exported"]["seed"] == best["seed"]
    path = find_model(out, "pneumonia_compact")
    assert path == out / "pneumonia_compact" / "1"
    assert find_model(out, "pneumonia") == out / "pneumonia" / "1"  # untouched, its own name
    card = read_card(path)
    assert card.name == "pneumonia_compact" and card.training.protocol == "stronger"
    assert card.training.seed == best["seed"] and card.threshold == pytest.approx(
        best["threshold"])
    assert "histogram equalisation" in card.input.scaling
    model = ServedModel(path)
    films = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    probabilities, heatmaps = model.explain(films)
    np.testing.assert_allclose(probabilities, model.predict(films), atol=1e-6)
    assert heatmaps.shape == (2, 64, 64)
