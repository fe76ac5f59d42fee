"""The report.json schema: the committed report validates, and every protocol's write goes
through one validating function that keeps the other protocols' fields."""

import json

import pytest
from pydantic import ValidationError

from app.contract.report import REPORT_FILE, Report, read_report, write_report_sections
from tests.servers import REPO, heavy_imports

COMMITTED = REPO / "models" / REPORT_FILE


def _committed() -> dict:
    return json.loads(COMMITTED.read_text())


def test_committed_report_validates_and_round_trips(tmp_path):
    report = read_report(COMMITTED.parent)
    assert [e.number for e in report.experiments] == [1, 2, 3, 4, 5, 6, 7]
    assert report.exported_model.experiment == report.trust.experiment == 5
    assert report.study_protocol and report.ablation and report.stronger_models
    (tmp_path / REPORT_FILE).write_text(report.to_json())
    assert read_report(tmp_path) == report
    assert json.loads(report.to_json()) == _committed()  # as written: no nulls, same dates


def test_importing_the_report_schema_pulls_in_no_heavy_stack():
    assert heavy_imports("app.contract.report", {
        "fastapi", "starlette", "tensorflow", "keras", "sklearn", "matplotlib",
        "training"}) == []


def test_writing_a_section_keeps_the_others(tmp_path):
    committed = _committed()
    write_report_sections(tmp_path, {"study_protocol": committed["study_protocol"]})
    write_report_sections(tmp_path, {"stronger_models": committed["stronger_models"]})
    report = read_report(tmp_path)
    assert report.experiments is None  # no full-data run yet
    assert report.study_protocol == read_report(COMMITTED.parent).study_protocol
    assert report.stronger_models.experiments[0].number == 8


def test_none_removes_a_section(tmp_path):
    (tmp_path / REPORT_FILE).write_text(COMMITTED.read_text())
    report = write_report_sections(tmp_path, {"exported_model": None, "trust": None})
    assert report.exported_model is None and report.trust is None
    assert "trust" not in json.loads((tmp_path / REPORT_FILE).read_text())
    assert report.study_protocol is not None


@pytest.mark.parametrize(("sections", "problem"), [
    ({"experiments": ["kept"]}, "experiments"),  # not an experiment, and no full run
    ({"stronger_models": {"seeds": [1]}}, "stronger_models"),
    ({"unknown_section": {}}, "unknown_section"),
])
def test_an_invalid_report_is_never_written(tmp_path, sections, problem):
    (tmp_path / REPORT_FILE).write_text(COMMITTED.read_text())
    with pytest.raises(ValidationError, match=problem):
        write_report_sections(tmp_path, sections)
    assert (tmp_path / REPORT_FILE).read_text() == COMMITTED.read_text()
    assert [p.name for p in tmp_path.iterdir()] == [REPORT_FILE]  # no partial file left


def test_the_full_run_fields_come_together():
    committed = _committed()
    with pytest.raises(ValidationError, match="come together"):
        Report.model_validate({k: committed[k] for k in ("created", "experiments")})


def test_a_nan_in_a_history_is_written_as_null_and_read_back(tmp_path):
    committed = _committed()
    committed["experiments"][0]["history"]["loss"][0] = float("nan")
    report = write_report_sections(tmp_path, committed)
    assert report.experiments[0].history["loss"][0] is None
