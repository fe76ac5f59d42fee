"""Redraw the confusion matrices a report.json names, from its own counts.

    python -m training redraw --from-report models/report.json

Nothing is retrained or predicted: the counts already in report.json are drawn again.

For a change of the figures' layout (training/figures.py): the PNGs named by the report are
written again at the paths it names, with the titles the protocols give them. The ROC and
training curves are not redrawn here: the ROC curves need every model's test probabilities,
which only the exported models keep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.contract.report import read_report
from training import figures
from training.stronger import best_run


def redraw_confusion_matrices(report_path: Path) -> list[Path]:
    """Every confusion matrix the report at `report_path` names, drawn from its own counts:
    each full-data experiment's test matrix (threshold 0.5), and each stronger model's at the
    operating point of the seed the protocol drew (`best_run`). Returns the PNGs written,
    under the report's folder. Raises FileNotFoundError or pydantic's ValidationError (a
    ValueError) for a missing or invalid report."""
    report_path = Path(report_path)
    report = read_report(report_path)
    out = report_path.parent if report_path.is_file() else report_path
    written = []
    if report.experiments and report.figures:
        for experiment in report.experiments:
            path = report.figures.confusion_matrices.get(str(experiment.number))
            if path is not None:
                written.append(figures.confusion_matrix_figure(
                    experiment.metrics["test"].confusion_matrix,
                    figures.full_confusion_title(experiment.number, experiment.name),
                    out / path))
    for experiment in report.stronger_models.experiments if report.stronger_models else []:
        run = best_run([r.model_dump() for r in experiment.runs])
        written.append(figures.confusion_matrix_figure(
            run["metrics"]["confusion_matrix"],
            figures.stronger_confusion_title(experiment.number, run["seed"], run["threshold"]),
            out / experiment.figures.confusion_matrix))
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `python -m training redraw`."""
    parser.add_argument("--from-report", type=Path, required=True, metavar="REPORT",
                        help="report.json (or the folder holding it), e.g. models/report.json")


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    for path in redraw_confusion_matrices(args.from_report):
        print(path)
    return 0


if __name__ == "__main__":  # the form before `python -m training redraw`
    from training.command import run_alone

    sys.exit(run_alone(sys.modules[__name__]))
