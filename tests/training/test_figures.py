"""The report's figures (training/figures.py) and their redraw from report.json
(training/redraw.py): nothing drawn is cut off at the figure's edge."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from app.contract.report import read_report
from tests.servers import REPO
from training.cli import main
from training.figures import confusion_matrix_figure, stronger_confusion_title
from training.redraw import redraw_confusion_matrices
from training.stronger import best_run


def _ink_at_the_edge(path) -> int:
    """Pixels of the PNG's outermost 2 px frame that are not the white background: text or
    lines that run into the edge were cut off there."""
    pixels = np.asarray(Image.open(path).convert("L"))
    frame = np.concatenate([pixels[:2].ravel(), pixels[-2:].ravel(),
                            pixels[:, :2].ravel(), pixels[:, -2:].ravel()])
    return int((frame < 200).sum())


@pytest.mark.parametrize("title", [
    "Model 1 (dense), test",
    stronger_confusion_title(8, 44, 0.9642189588105958),  # the committed one that was cut off
    "Model 12 (a_much_longer_experiment_name), test, threshold 0.123",
])
def test_a_confusion_matrix_figure_keeps_its_title_inside(tmp_path, title):
    path = confusion_matrix_figure([[180, 54], [9, 381]], title, tmp_path / "matrix.png")
    assert Image.open(path).size == (360, 320)
    assert _ink_at_the_edge(path) == 0


def test_the_figure_redraw_draws_every_confusion_matrix_from_the_reports_counts(tmp_path,
                                                                                capsys):
    shutil.copy(REPO / "models" / "report.json", tmp_path / "report.json")
    report = read_report(tmp_path / "report.json")
    # The command's entry point (python -m training redraw), on a copy of the committed report.
    main(["redraw", "--from-report", str(tmp_path / "report.json")])
    named = [*report.figures.confusion_matrices.values(),
             *(e.figures.confusion_matrix for e in report.stronger_models.experiments)]
    assert sorted(capsys.readouterr().out.split()) == sorted(str(tmp_path / p) for p in named)
    for path in named:
        assert Image.open(tmp_path / path).size == (360, 320)
        assert _ink_at_the_edge(tmp_path / path) == 0
    # Nothing was recomputed: the report is byte for byte the committed one.
    assert (tmp_path / "report.json").read_bytes() == (REPO / "models" / "report.json").read_bytes()


def test_the_figure_redraw_draws_the_seed_the_stronger_protocol_exported():
    report = json.loads((REPO / "models" / "report.json").read_text())
    for entry in report["stronger_models"]["experiments"]:
        assert best_run(entry["runs"])["seed"] == entry["exported"]["seed"]


def test_the_figure_redraw_refuses_a_report_that_is_not_one(tmp_path):
    (tmp_path / "report.json").write_text('{"experiments": "nope"}')
    with pytest.raises(ValueError):
        redraw_confusion_matrices(tmp_path / "report.json")
