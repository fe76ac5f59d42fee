"""The model card schema, and the contract package's promise to stay light."""

import json
import shutil
from pathlib import Path

import pytest

from app.contract.card import CARD_FILE, CardError, ModelCard, read_card
from app.contract.preprocessing import SERVES_PREPROCESSING_VERSIONS
from tests.servers import REPO, heavy_imports

COMMITTED = REPO / "models" / "pneumonia" / "1"


def test_importing_the_contract_pulls_in_no_heavy_stack():
    assert heavy_imports("app.contract.card, app.contract.preprocessing", {
        "fastapi", "starlette", "tensorflow", "keras", "sklearn", "matplotlib"}) == []


def test_no_app_module_imports_training():
    offenders = [str(path.relative_to(REPO)) for path in (REPO / "app").rglob("*.py")
                 if any(line.lstrip().startswith(("import training", "from training"))
                        for line in path.read_text().splitlines())]
    assert offenders == []


def test_committed_card_validates_and_round_trips(tmp_path):
    card = read_card(COMMITTED)
    assert card.input_size == (64, 64) and card.channels == 3
    assert card.input.preprocessing_version in SERVES_PREPROCESSING_VERSIONS
    assert card.label_for(0.7, 0.5) == "PNEUMONIA" and card.label_for(0.2, 0.5) == "NORMAL"
    card.write(tmp_path)
    assert read_card(tmp_path) == card


def _card_dict() -> dict:
    return json.loads((COMMITTED / CARD_FILE).read_text())


def _write(tmp_path: Path, card: dict) -> Path:
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    return tmp_path


def test_card_with_other_preprocessing_version_is_refused(tmp_path):
    card = _card_dict()
    card["input"]["preprocessing_version"] = "0-other"
    with pytest.raises(CardError) as error:
        read_card(_write(tmp_path, card))
    assert error.value.field == "input.preprocessing_version"


@pytest.mark.parametrize(("change", "field"), [
    (lambda c: c.pop("threshold"), "threshold"),
    (lambda c: c["input"].pop("channels"), "input.channels"),
    (lambda c: c.update(threshold=1.5), "threshold"),
    (lambda c: c.update(positive_class="COVID"), "(whole card)"),
    (lambda c: c["input"].update(channels=3, color_mode="grayscale"), "input"),
    (lambda c: c.update(unexpected="field"), "unexpected"),
    (lambda c: c.update(explanation={"method": "occlusion", "patch": 16, "stride": 4,
                                     "coarse_stride": 10, "note": ""}), "explanation"),
], ids=["missing-threshold", "missing-channels", "threshold-out-of-range",
        "unknown-positive-class", "mode-vs-channels", "unknown-field", "coarse-off-the-grid"])
def test_invalid_card_is_refused_naming_the_field(tmp_path, change, field):
    card = _card_dict()
    change(card)
    with pytest.raises(CardError) as error:
        read_card(_write(tmp_path, card))
    assert error.value.field == field
    assert field in str(error.value)


def test_card_schema_is_the_one_training_writes():
    # Training builds a ModelCard object, so a field it forgets fails there, not in the app.
    required = {name for name, f in ModelCard.model_fields.items() if f.is_required()}
    assert {"input", "threshold", "threshold_method", "metrics", "data", "intended_use",
            "disclaimer", "limitations", "code_version", "class_names"} <= required


def copy_committed_model(tmp_path: Path, edit=None) -> Path:
    """A models folder holding a copy of the committed model, its card optionally edited."""
    target = tmp_path / "models" / "pneumonia" / "1"
    shutil.copytree(COMMITTED, target)
    if edit is not None:
        card = _card_dict()
        edit(card)
        _write(target, card)
    return tmp_path / "models"
