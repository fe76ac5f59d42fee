"""The training CLI (training/cli.py): its commands and the older forms that still work, and
a smoke run of all seven experiments on a tiny generated dataset."""

import json
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app.contract.card import read_card
from app.contract.drift import DriftReference
from app.contract.report import read_report
from app.services.saved_model import find_model
from tests.builders.images import make_dataset_tree
from training import assessability, drift_reference, redraw, robustness, run
from training.cli import main, parse_args
from training.command import alone_parser, run_alone


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
    assert card.intended_population.age_years == (1.0, 6.0)  # the gate's population
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


def test_cli_requires_a_data_dir(monkeypatch, capsys):
    monkeypatch.delenv("PNEUMONIA_DATA_DIR", raising=False)
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "python -m training run: error: --data-dir is required" in capsys.readouterr().err


# Each command with flags it parses, as (command, module, flags).
COMMANDS = [
    ("run", run, ["--data-dir", "data", "--experiments", "5", "--max-epochs", "1",
                  "--out", "out", "--model-version", "3", "--no-export"]),
    ("assessability", assessability, ["--data-dir", "data", "--out", "models/pneumonia/2",
                                      "--out", "models/pneumonia_compact/1"]),
    ("drift-reference", drift_reference, ["--data-dir", "data", "models/pneumonia/2"]),
    ("redraw", redraw, ["--from-report", "models/report.json"]),
    ("robustness", robustness, ["--data-dir", "data", "--models", "pneumonia/2,pneumonia/3",
                                "--heatmap-films", "100"]),
]
OLD_MODULES = {"assessability": "training.assessability",
               "drift-reference": "training.drift_reference", "redraw": "training.redraw"}


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_cli_help_lists_every_command(capsys):
    for argv in (["--help"], ["-h"]):
        out = _help(argv, capsys)
        assert out.startswith("usage: python -m training [-h] COMMAND")
        for command, _, _ in COMMANDS:
            assert f"\n    {command} " in out or f"\n    {command}\n" in out


@pytest.mark.parametrize("command", [c for c, _, _ in COMMANDS])
def test_cli_command_help_names_the_command(command, capsys):
    out = _help([command, "--help"], capsys)
    assert out.startswith(f"usage: python -m training {command} [-h]")
    assert f"python -m training {command} " in out  # the module's docstring, its example


@pytest.mark.parametrize(("command", "flags"), [(c, f) for c, _, f in COMMANDS])
def test_cli_command_parses_its_modules_flags(command, flags):
    args = parse_args([command, *flags])
    assert args.command == command
    assert "--data-dir" not in flags or args.data_dir == Path("data")


def test_cli_flags_with_no_command_are_the_run_command(monkeypatch):
    flags = COMMANDS[0][2]
    alias = parse_args(flags)
    assert alias.command == "run"
    assert alias == parse_args(["run", *flags])
    monkeypatch.setenv("PNEUMONIA_DATA_DIR", "data")
    assert parse_args([]) == parse_args(["run"])  # `python -m training` alone runs too


def test_cli_alias_runs_the_experiments_from_the_package_entry_point(monkeypatch, tmp_path):
    """`python -m training --data-dir ...`, as the Makefile and README type it, reaches the
    run command with the command line as typed (the report records it)."""
    calls = []
    monkeypatch.setattr(run, "main", lambda args, parser: calls.append((args, parser)) or 0)
    flags = ["--data-dir", str(tmp_path), "--experiments", "1-3"]
    monkeypatch.setattr(sys, "argv", ["python -m training", *flags])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("training", run_name="__main__", alter_sys=True)
    assert exited.value.code == 0
    [(args, parser)] = calls
    assert args.command == "run" and args.data_dir == tmp_path and args.experiments == "1-3"
    assert parser.prog == "python -m training run"
    assert args.command_line == "python -m training " + " ".join(flags)


@pytest.mark.parametrize(("command", "module", "flags"),
                         [c for c in COMMANDS if c[0] in OLD_MODULES])
def test_cli_old_module_form_parses_as_its_command(command, module, flags, capsys):
    parser = alone_parser(module)
    assert parser.prog == f"python -m {OLD_MODULES[command]}"
    assert parser.parse_args(flags) == parse_args([command, *flags])
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: python -m {OLD_MODULES[command]} [-h]")


@pytest.mark.parametrize(("command", "module", "flags"),
                         [c for c in COMMANDS if c[0] in OLD_MODULES])
def test_cli_old_module_form_runs_its_command(command, module, flags, monkeypatch):
    calls = []
    monkeypatch.setattr(module, "main", lambda args, parser: calls.append((args, parser)) or 0)
    assert run_alone(module, flags) == 0
    [(args, parser)] = calls
    assert parser.prog == f"python -m {OLD_MODULES[command]}"
    assert args.command_line == f"python -m {OLD_MODULES[command]} {shlex.join(flags)}"
    del args.command_line
    assert args == parse_args([command, *flags])


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy re-runs it
@pytest.mark.parametrize("command", OLD_MODULES)
def test_cli_old_module_entry_point_is_its_command_alone(command, monkeypatch, capsys):
    """`python -m training.redraw --help` and the like: the module's own entry point."""
    monkeypatch.setattr(sys, "argv", [OLD_MODULES[command], "--help"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module(OLD_MODULES[command], run_name="__main__", alter_sys=True)
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m {OLD_MODULES[command]} [-h]")
    assert f"python -m training {command} " in out  # the docstring's new form
