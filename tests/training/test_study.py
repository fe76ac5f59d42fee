"""The study protocol: its subset, its one augmented draw, its models 1 and 2, a smoke run."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.contract.report import read_report
from tests.builders.images import make_dataset_tree
from tests.servers import REPO
from training import train as train_module
from training.data import Arrays, Split, list_split
from training.experiments import STUDY_EXPERIMENTS
from training.study import ABLATION_STEPS, draw_subset
from training.train import FULL_RECIPE, STUDY_RECIPE, class_weights_for, train_experiment

INPUT = (64, 64, 3)


def _kaggle_like_train() -> Split:
    labels = np.asarray([0] * 1341 + [1] * 3875, dtype=np.int64)
    paths = tuple(Path(f"train/{'NP'[y]}/{i}.jpeg") for i, y in enumerate(labels))
    return Split(paths=paths, labels=labels, patients=tuple(str(p) for p in paths))


def test_study_subset_has_exactly_84_normal_and_1134_pneumonia_and_is_seeded():
    train = _kaggle_like_train()
    subset = draw_subset(train, (84, 1134), seed=42)
    assert subset.counts() == {"NORMAL": 84, "PNEUMONIA": 1134}
    assert len(set(subset.paths)) == 1218 and set(subset.paths) <= set(train.paths)
    assert draw_subset(train, (84, 1134), seed=42).paths == subset.paths
    assert draw_subset(train, (84, 1134), seed=43).paths != subset.paths


@pytest.mark.realdata
def test_study_subset_of_the_real_train_split(data_dir):
    subset = draw_subset(list_split(data_dir, "train"), (84, 1134), seed=42)
    assert subset.counts() == {"NORMAL": 84, "PNEUMONIA": 1134}


def _arrays(n: int = 24) -> Arrays:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    return Arrays(x, y, x[:0], y[:0], x[:4], y[:4])


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [STUDY_RECIPE, FULL_RECIPE],
                         ids=["study-draws-once", "full-draws-every-epoch"])
def test_augmentation_is_drawn_once_under_the_study_recipe(monkeypatch, recipe):
    calls = []
    real = train_module.random_affine

    def counting(images, rng):
        calls.append(len(images))
        return real(images, rng)

    monkeypatch.setattr(train_module, "random_affine", counting)
    trained = train_experiment(STUDY_EXPERIMENTS[5], _arrays(), seed=1, epochs=3,
                               log=lambda _: None, recipe=recipe)
    if recipe.fresh_augmentation:  # batch by batch; Keras may ask for a few extra batches
        assert trained.augmented_once is None
        assert max(calls) <= STUDY_EXPERIMENTS[5].batch_size and sum(calls) >= 3 * 24
    else:  # the whole training part, once
        assert calls == [24] and trained.augmented_once.shape == (24, 64, 64, 3)


@pytest.mark.slow
def test_study_recipe_uses_raw_pixels_and_hand_written_class_weights():
    model = train_experiment(STUDY_EXPERIMENTS[5], _arrays(), seed=1, epochs=1,
                             log=lambda _: None, recipe=STUDY_RECIPE).model
    assert "Rescaling" not in [type(layer).__name__ for layer in model.layers]
    labels = np.asarray([0] * 84 + [1] * 1134)
    assert class_weights_for(STUDY_EXPERIMENTS[5], STUDY_RECIPE, labels) == {0: 13.0, 1: 1.0}
    assert class_weights_for(STUDY_EXPERIMENTS[1], STUDY_RECIPE, labels) is None
    balanced = class_weights_for(STUDY_EXPERIMENTS[5], FULL_RECIPE, labels)
    assert balanced[0] == pytest.approx(1218 / (2 * 84))


# Hand-computed on 64x64x3 = 12,288 inputs:
#   model 1: 12288*16+16 + 16*8+8 + 8*6+6 + 6+1                      = 196,821
#   model 2: 12288*64+64 + 64*32+32 + 32*16+16 + 16*8+8 + 8+1        = 789,249
@pytest.mark.parametrize(("number", "units", "params", "recipe"), [
    (1, [16, 8, 6, 1], 196_821, ("rmsprop", 10, 15, False)),
    (2, [64, 32, 16, 8, 1], 789_249, ("rmsprop", 20, 15, True)),
])
def test_study_models_1_and_2_are_the_notebooks(number, units, params, recipe):
    experiment = STUDY_EXPERIMENTS[number]
    model = experiment.build(INPUT, rescale=False)
    dense = [layer.units for layer in model.layers if type(layer).__name__ == "Dense"]
    assert dense == units and model.count_params() == params
    assert (experiment.optimizer, experiment.batch_size, experiment.epochs,
            experiment.class_weights) == recipe


def test_ablation_moves_from_the_study_to_the_full_protocol_one_change_at_a_time():
    recipes = [recipe for _, recipe in ABLATION_STEPS]
    assert recipes[0] == STUDY_RECIPE
    fields = ("subset", "rescale", "fresh_augmentation", "class_weights", "validation")
    for before, after in zip(recipes, recipes[1:]):
        changed = [f for f in fields if getattr(before, f) != getattr(after, f)]
        assert len(changed) == 1, changed
    assert {f: getattr(recipes[-1], f) for f in fields} == \
        {f: getattr(FULL_RECIPE, f) for f in fields}


@pytest.mark.slow
def test_study_protocol_smoke_run_adds_to_the_report(tmp_path):
    data = make_dataset_tree(tmp_path / "data", {
        "train": {"NORMAL": 12, "PNEUMONIA": 20}, "test": {"NORMAL": 6, "PNEUMONIA": 6}})
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(REPO / "models" / "report.json", out / "report.json")
    before = json.loads((out / "report.json").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "training", "--protocol", "study", "--data-dir", str(data),
         "--experiments", "1,2,5", "--out", str(out), "--max-epochs", "1", "--seeds", "2",
         "--ablation-seeds", "1", "--study-counts", "5,10",
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "=== study protocol, model 5, seed 43 (6/6)" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["experiments"] == before["experiments"]  # the full-data run's fields stay
    assert report["stronger_models"] == before["stronger_models"]
    assert read_report(out).study_protocol.seeds == [42, 43]  # valid against the schema
    study = report["study_protocol"]
    assert [e["number"] for e in study["experiments"]] == [1, 2, 5]
    model5 = study["experiments"][2]
    assert [r["seed"] for r in model5["runs"]] == [42, 43]
    assert {"mean", "sd", "min", "max"} <= model5["summary"]["accuracy"].keys()
    assert model5["runs"][0]["train_images"] == 15
    assert model5["published"]["test_accuracy"] == 0.79
    ablation = report["ablation"]
    assert len(ablation["steps"]) == 6 and ablation["seeds"] == [42]
    assert ablation["steps"][0]["runs"] == [model5["runs"][0]]  # reused, not retrained
    assert not (out / "pneumonia").exists()  # the study protocol exports nothing
