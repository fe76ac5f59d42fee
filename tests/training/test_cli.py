"""Smoke run of the real CLI: all seven experiments on a tiny generated dataset."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from app.contract.card import read_card
from app.contract.drift import DriftReference
from app.contract.report import read_report
from app.services.saved_model import find_model
from tests.helpers import make_dataset_tree
from training.__main__ import parse_args


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    data = make_dataset_tree(root / "data", {
        "train": {"NORMAL": 24, "PNEUMONIA": 24}, "test": {"NORMAL": 8, "PNEUMONIA": 8}})
    out = root / "out"
    result = subprocess.run(
        [sys.executable, "-m", "training", "--data-dir", str(data), "--experiments", "all",
         "--out", str(out), "--max-epochs", "1", "--cache-dir", str(root / "cache")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout, data


@pytest.mark.slow
def test_cli_runs_all_seven_experiments_and_shows_progress(smoke_run):
    _, stdout, _ = smoke_run
    for number in range(1, 8):
        assert f"=== experiment {number} ({number}/7)" in stdout
        assert f"[{number} " in stdout and "epoch 1/1" in stdout
    assert "images/s" in stdout and "wall time" in stdout


@pytest.mark.slow
def test_cli_writes_report_with_metrics_and_study_numbers(smoke_run):
    out, _, _ = smoke_run
    report = json.loads((out / "report.json").read_text())
    assert read_report(out).exported_model.experiment == 5  # valid against the schema
    assert [e["number"] for e in report["experiments"]] == [1, 2, 3, 4, 5, 6, 7]
    for e in report["experiments"]:
        test = e["metrics"]["test"]
        for key in ("accuracy", "error", "precision", "recall", "specificity", "f1", "roc_auc",
                    "confusion_matrix", "threshold"):
            assert key in test
        assert sum(map(sum, test["confusion_matrix"])) == 16
        assert e["parameters"] > 0 and e["train_seconds"] >= 0
        assert len(e["history"]["loss"]) == 1
        assert "test_accuracy" in e["study"]
    assert report["dataset"]["counts"]["test"] == {"NORMAL": 8, "PNEUMONIA": 8}
    assert "Kermany" in report["dataset"]["credit"]
    assert "on the fly" in report["augmentation"]
    for path in [*report["figures"]["confusion_matrices"].values(), report["figures"]["roc"],
                 report["figures"]["training_curves"]]:
        assert (out / path).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_cli_exports_model_5_with_a_card_the_app_can_read(smoke_run):
    out, _, _ = smoke_run
    version_dir = find_model(out, "pneumonia")
    assert version_dir.name == "1"  # a fresh models folder starts at version 1
    card = read_card(version_dir)  # validates the schema and the preprocessing version
    assert card.input_size == (64, 64) and card.channels == 3
    assert card.class_names == ("NORMAL", "PNEUMONIA") and card.positive_class == "PNEUMONIA"
    op = card.operating_point  # chosen on validation for the target sensitivity
    assert card.threshold == op.threshold and op.validation.sensitivity >= 0.95
    assert "test split played no part" in card.threshold_method
    assert card.calibration.method == "temperature" and card.calibration.inside_model
    assert card.explanation.patch == 16 and (version_dir / "input_guard.json").is_file()
    assert card.explanation.coarse_stride and card.explanation.refine  # the app's search
    drift = DriftReference.read(version_dir)  # what the app's drift gauges compare with
    assert drift is not None and drift.films == sum(card.data.counts["validation"].values())
    assert {"validation", "test"} <= card.metrics.keys()
    assert "not a diagnosis" in card.intended_use.lower() and card.disclaimer
    assert card.limitations and card.code_version
    assert card.training.experiment == 5 and card.training.protocol == "full"
    signatures = tf.saved_model.load(str(version_dir)).signatures
    probs = signatures["serving_default"](images=tf.zeros((2, 64, 64, 3)))["probability"]
    assert probs.shape == (2,) and np.all((probs.numpy() >= 0) & (probs.numpy() <= 1))
    heat = signatures["explain"](images=tf.zeros((2, 64, 64, 3)))["heatmap"]
    assert heat.shape == (2, 64, 64)
    assert {"operating_point", "calibration", "figure"} <= json.loads(
        (out / "report.json").read_text())["trust"].keys()
    assert (version_dir / "test_predictions.csv").read_text().count("\n") == 17


@pytest.mark.slow
def test_cli_second_export_goes_to_version_2_and_leaves_version_1_untouched(smoke_run,
                                                                            tmp_path):
    out, _, data = smoke_run
    first = out / "pneumonia" / "1"
    before = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    args = [sys.executable, "-m", "training", "--data-dir", str(data), "--experiments", "5",
            "--out", str(out), "--max-epochs", "1", "--cache-dir", str(tmp_path)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_card(out / "pneumonia" / "2").version == 2
    after = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert after == before
    # Naming an existing version is refused before any training, unless forced.
    refused = subprocess.run([*args, "--model-version", "1"], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "never overwritten" in refused.stderr
    assert "epoch" not in refused.stdout


def test_cli_requires_a_data_dir(monkeypatch):
    monkeypatch.delenv("PNEUMONIA_DATA_DIR", raising=False)
    with pytest.raises(SystemExit):
        parse_args([])
