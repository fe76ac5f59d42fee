"""The robustness suite (training/robustness.py): flips at the operating point, by direction,
ROC AUC beside the clean one, the same perturbed films for every model, the heatmap's share
outside the body, and the command that writes robustness.json, the card's section and the
report's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from app.contract.card import read_card
from app.contract.report import read_report, write_report_sections
from app.contract.robustness import ROBUSTNESS_FILE, ModelRobustness, Perturbed, Robustness
from tests.builders.images import make_dataset_tree
from tests.servers import REPO
from training import augment
from training.cli import main
from training.data import load_parts
from training.robustness import heatmap_truth, measure

SIDE = 24
THREE = (0.2, 0.5, 0.8)


def films_of(means: list[float]) -> list[np.ndarray]:
    """Flat films whose grey is `means` * 255: the fake model below reads them back."""
    return [np.full((SIDE, SIDE), round(m * 255), np.uint8) for m in means]


def as_input(film: np.ndarray) -> np.ndarray:
    return film[:, :, None]


def brightness(images: np.ndarray) -> np.ndarray:
    """A fake model: P(positive) is the input's mean grey over 255."""
    return images.reshape(len(images), -1).mean(axis=1) / 255


def nothing(film, rng, strength):
    return film


def invert(film, rng, strength):
    return 255 - film


def brighten(film, rng, strength):
    """+strength * 0.25 of the range: 0.2 -> +0.05, 0.5 -> +0.125, 0.8 -> +0.2."""
    return np.clip(film.astype(int) + round(strength * 0.25 * 255), 0, 255).astype(np.uint8)


def noise(film, rng, strength):
    return np.clip(film + rng.normal(0, 40 * strength, film.shape), 0, 255).astype(np.uint8)


def _measure(means, labels, families, threshold=0.5, **kwargs) -> Robustness:
    return measure(brightness, films_of(means), np.asarray(labels), threshold, as_input,
                   families=families, strengths={name: THREE for name in families},
                   **kwargs)


def test_a_family_that_changes_nothing_flips_nothing_and_one_that_inverts_flips_all():
    means, labels = [0.1, 0.3, 0.4, 0.6, 0.7, 0.9], [0, 0, 0, 1, 1, 1]
    table = _measure(means, labels, {"nothing": nothing, "invert": invert})
    assert [row.flip_rate for row in table.families["nothing"]] == [0, 0, 0]
    assert [row.flip_rate for row in table.families["invert"]] == [1, 1, 1]
    middle = table.families["invert"][1]
    assert (middle.flips_to_flagged, middle.flips_to_not_flagged) == (3, 3)
    assert table.robust_to == ["nothing"] and table.not_robust_to == ["invert"]


def test_flips_are_counted_at_the_threshold_in_their_direction():
    # Grey levels; brightening adds 13 / 32 / 51 levels. At the threshold 128: 115 reaches it
    # exactly at the low strength (p >= threshold is flagged), 102 from the middle on, 76
    # never (127 at most); 128 is flagged clean and stays so.
    grey, labels = [76, 102, 115, 128, 179], [0, 0, 1, 1, 1]
    means = [g / 255 for g in grey]
    rows = _measure(means, labels, {"brighten": brighten}, threshold=128 / 255
                    ).families["brighten"]
    assert [(r.flips_to_flagged, r.flips_to_not_flagged) for r in rows] == [(1, 0), (2, 0),
                                                                            (2, 0)]
    assert [r.flip_rate for r in rows] == [0.2, 0.4, 0.4]
    assert [r.strength for r in rows] == list(THREE)
    # The same films at another operating point flip elsewhere, and the other way round.
    high = _measure(means, labels, {"brighten": brighten}, threshold=200 / 255)
    assert [r.flips_to_flagged for r in high.families["brighten"]] == [0, 1, 1]  # 179
    assert high.clean_flagged == 0 and high.threshold == 200 / 255
    darker = _measure(means, labels, {"invert": invert}, threshold=128 / 255)
    assert darker.families["invert"][0].flips_to_not_flagged == 2  # 128 and 179


def test_roc_auc_beside_the_clean_one():
    means, labels = [0.1, 0.3, 0.6, 0.9], [0, 0, 1, 1]
    table = _measure(means, labels, {"nothing": nothing, "invert": invert})
    assert table.clean_roc_auc == 1.0
    assert table.families["nothing"][1].roc_auc == 1.0
    assert table.families["invert"][1].roc_auc == 0.0  # every ranking reversed
    assert _measure(means, [1, 1, 1, 1], {"nothing": nothing}).clean_roc_auc is None


def test_every_model_sees_the_same_perturbed_films_for_a_seed():
    seen: dict[str, list[np.ndarray]] = {"old": [], "new": []}

    def recorder(name):
        def predict(images):
            seen[name].append(images.copy())
            return brightness(images)
        return predict

    films, labels = films_of([0.2, 0.4, 0.6, 0.8]), np.array([0, 0, 1, 1])
    for name in seen:
        measure(recorder(name), films, labels, 0.5, as_input, families={"noise": noise},
                strengths={"noise": THREE}, seed=7)
    assert len(seen["old"]) == 4  # the clean films, then one call per strength
    for old, new in zip(seen["old"], seen["new"]):
        assert np.array_equal(old, new)
    assert not np.array_equal(seen["old"][2], seen["old"][0])  # really perturbed
    other: list[np.ndarray] = []
    measure(lambda x: (other.append(x.copy()), brightness(x))[1], films, labels, 0.5,
            as_input, families={"noise": noise}, strengths={"noise": THREE}, seed=8)
    assert not np.array_equal(other[2], seen["old"][2])


def test_a_family_without_strengths_is_refused():
    with pytest.raises(KeyError, match="noise"):
        measure(brightness, films_of([0.2, 0.8]), np.array([0, 1]), 0.5, as_input,
                families={"noise": noise}, strengths={})


def test_a_summary_that_disagrees_with_the_table_is_refused():
    row = Perturbed(strength=0.5, flip_rate=0.03, flips_to_flagged=3, flips_to_not_flagged=0,
                    roc_auc=0.9)
    fields = dict(measured_on="v", films=100, positives=50, threshold=0.5, seed=1,
                  clean_roc_auc=0.9, clean_flagged=50, families={"text": [row, row, row]})
    assert Robustness.of(**fields).not_robust_to == ["text"]  # 3% > 2% at the middle
    with pytest.raises(ValueError, match="disagree"):
        Robustness(**fields, robust_to=["text"], not_robust_to=[])


def test_heatmap_truth_is_the_share_of_each_map_outside_the_body():
    # Films: a bright body in the middle columns, air at the sides.
    film = np.full((SIDE * 4, SIDE * 4), 10, np.uint8)
    film[:, 24:72] = 180
    films = [film] * 6
    in_air = np.zeros((SIDE, SIDE), np.float32)
    in_air[:, :4] = 1  # the left strip of air
    on_body = np.zeros((SIDE, SIDE), np.float32)
    on_body[:, 10:14] = 1

    def explain(images):
        maps = [in_air if i % 3 == 0 else on_body for i in range(len(images))]
        return np.zeros(len(images)), np.stack(maps)

    truth = heatmap_truth(explain, films, lambda f: f[::4, ::4, None], count=None, chunk=3)
    assert truth.films == 6 and truth.drawn_from == 6
    assert truth.mostly_outside == pytest.approx(2 / 6)  # films 0 and 3 (i % 3 == 0)
    assert truth.outside_median == pytest.approx(0.0)
    sampled = heatmap_truth(explain, films, lambda f: f[::4, ::4, None], count=4, seed=3)
    assert sampled.films == 4 and sampled.drawn_from == 6 and sampled.seed == 3


# --- the command, on a copy of the served model 5 and a made dataset --------------------------


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """`python -m training robustness` on a copy of models/pneumonia/2, whose card is made
    to name the made dataset's validation split, with two stand-in families."""
    root = tmp_path_factory.mktemp("robustness")
    data = make_dataset_tree(root / "data", {
        "train": {"NORMAL": 20, "PNEUMONIA": 20}, "test": {"NORMAL": 2, "PNEUMONIA": 2}})
    model_dir = root / "models"
    version = model_dir / "pneumonia" / "2"
    shutil.copytree(REPO / "models" / "pneumonia" / "2", version)
    shutil.copy(REPO / "models" / "report.json", model_dir / "report.json")
    # An earlier section: another model's entry (kept) and a stale one of this model.
    stale = Robustness.of({"text": [Perturbed(strength=s, flip_rate=0.5, flips_to_flagged=1,
                                              flips_to_not_flagged=1, roc_auc=0.5)
                                    for s in THREE]},
                          measured_on="before", films=2, positives=1, threshold=0.5, seed=1,
                          clean_roc_auc=0.5, clean_flagged=1)
    write_report_sections(model_dir, {"robustness": {
        "created": "2026-01-01T00:00:00+00:00", "command": "before", "code_version": "x",
        "wall_seconds": 1.0, "models": [
            ModelRobustness(**stale.model_dump(), name=name, version=version).model_dump()
            for name, version in (("other", 1), ("pneumonia", 2))]}})
    card = json.loads((version / "model_card.json").read_text())
    card["data"]["counts"]["validation"] = load_parts(data, 0.1, 42)["val"].counts()
    (version / "model_card.json").write_text(json.dumps(card))
    patch = pytest.MonkeyPatch()
    patch.setattr(augment, "FAMILIES", {"nothing": nothing, "invert": invert}, raising=False)
    patch.setattr(augment, "STRENGTHS", {"nothing": THREE, "invert": THREE}, raising=False)
    try:
        code = main(["robustness", "--data-dir", str(data), "--model-dir", str(model_dir),
                     "--models", "pneumonia/2", "--heatmap-films", "3",
                     "--cache-dir", str(root / "cache")])
    finally:
        patch.undo()
    assert code == 0
    return version


def test_the_command_writes_robustness_json_that_the_typed_model_reads_back(measured):
    table = Robustness.read(measured)
    raw = json.loads((measured / ROBUSTNESS_FILE).read_text())
    assert Robustness.model_validate(raw) == table
    assert list(table.families) == ["nothing", "invert"] and table.films == 4
    assert [r.flip_rate for r in table.families["nothing"]] == [0, 0, 0]
    assert table.heatmap is not None and table.heatmap.films == 3
    assert table.threshold == read_card(measured).threshold


def test_the_command_points_the_card_at_it_and_adds_the_reports_section(measured):
    card = read_card(measured)
    assert card.robustness is not None and card.robustness.file == ROBUSTNESS_FILE
    assert card.robustness.robust_to == Robustness.read(measured).robust_to
    section = read_report(measured.parent.parent).robustness
    assert section.command.startswith("python -m training robustness")
    # Measured again, the model's entry is replaced; another model's is kept.
    other, ours = section.models
    assert (other.name, other.version, other.measured_on) == ("other", 1, "before")
    assert (ours.name, ours.version) == ("pneumonia", 2)
    assert Robustness(**ours.model_dump(exclude={"name", "version"})) == Robustness.read(measured)
