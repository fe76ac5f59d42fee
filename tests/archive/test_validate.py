"""`pneumonia-triage validate`: the figures against their references (scikit-learn's AUC, the
Wilson formula written out here, brute force), the labels file's errors, the report, and a
run of the archive engine on real test-split films."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from app.archive.sources import list_sources
from app.archive.validate import REPORT_FILE, Made, ValidateRequest, gather, measure
from app.archive.validate_figures import (
    TABLE_TARGETS,
    bootstrap_auc,
    figures,
    rank_auc,
    subgroup_facet,
    threshold_for,
)
from app.archive.validate_labels import LabelsError, read_labels
from app.archive.validation_report import write_report
from app.cli import main
from app.contract.card import read_card
from app.contract.validation import ConfidentError, read_validation
from tests.archive.harness import EMBEDDED, IDENTIFIERS, archive_env, rows, short_dir
from tests.builders.corpus import jpeg_cut_with_end_marker
from tests.builders.dicom import file_bytes, study_film
from tests.builders.films import gray_of
from tests.builders.images import jpeg_bytes
from tests.builders.validation import WEAK_WARD, made_site
from tests.servers import REPO

CARD = read_card(REPO / "models" / "pneumonia" / "3")


def made(seed: int = 7, **site) -> Made:
    labels, rows = made_site(**site)
    outcome = gather(labels, rows)
    request = ValidateRequest("labels.csv", "out", seed=seed)
    return Made(measure(labels, outcome, CARD, 0.9, request, 1.0), outcome, {})


def used_arrays(**site) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of the used films, read from the rows directly."""
    labels, rows = made_site(**site)
    used = [(film.label, rows[film.source]["probability"]) for film in labels.films
            if rows[film.source]["probability"] is not None]
    return np.array([y for y, _ in used]), np.array([p for _, p in used])


def wilson_reference(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927), eq. for the 95% score interval, z = 1.96, written out."""
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def test_the_auc_is_scikit_learns_on_the_same_scores():
    y, p = used_arrays()
    assert abs(made().validation.auc.value - roc_auc_score(y, p)) < 1e-9


def test_the_bootstrap_interval_contains_the_auc_and_is_reproducible_with_its_seed():
    first, again, other = made(seed=7), made(seed=7), made(seed=8)
    auc = first.validation.auc
    assert auc.low <= auc.value <= auc.high and auc.low < auc.high
    assert (auc.draws, auc.seed, auc.skipped_draws) == (2000, 7, 0)
    assert again.validation.auc == auc
    assert (other.validation.auc.low, other.validation.auc.high) != (auc.low, auc.high)


def test_each_bootstrap_draws_auc_is_scikit_learns_ties_included():
    y, p = used_arrays()
    p = np.round(p, 1)  # many ties
    draws = np.random.default_rng(3).integers(0, len(y), (20, len(y)))
    expected = [roc_auc_score(y[d], p[d]) for d in draws]
    assert np.allclose(rank_auc(y[draws], p[draws]), expected, atol=1e-12, rtol=0)


def test_a_draw_with_one_label_only_is_skipped_and_counted():
    y, p = np.array([1, 0]), np.array([0.9, 0.1])
    assert np.isnan(rank_auc(y[None, [0, 0]], p[None, [0, 0]])).all()
    found = bootstrap_auc(y, p, seed=1, draws=200)
    assert 40 < found.skipped_draws < 160  # half of the draws of two films hold one label


def test_the_figures_at_the_cards_threshold_match_the_wilson_formula():
    y, p = used_arrays()
    flagged = p >= CARD.threshold
    counts = {"sensitivity": (flagged & (y == 1), y == 1),
              "specificity": (~flagged & (y == 0), y == 0),
              "ppv": (flagged & (y == 1), flagged), "npv": (~flagged & (y == 0), ~flagged)}
    point = made().validation.card_operating_point
    for name, (hits, of) in counts.items():
        found = getattr(point, name)
        assert (found.successes, found.total) == (hits.sum(), of.sum()), name
        assert (found.low, found.high) == pytest.approx(wilson_reference(hits.sum(), of.sum()),
                                                        abs=1e-12), name


def test_each_figure_has_a_verdict_against_the_cards_interval():
    point = made().validation.card_operating_point
    assert {(f.split, f.figure) for f in point.card} == {
        (split, figure) for split in ("validation", "test")
        for figure in ("sensitivity", "specificity", "ppv", "npv")}
    for found in point.card:
        expected = ("below" if found.site_value < found.card.low else "above"
                    if found.site_value > found.card.high else "inside")
        assert found.verdict == expected
    # The card's test sensitivity (377 of 390) against a site that misses ward B's pneumonia.
    test_sensitivity = next(f for f in point.card if (f.split, f.figure) == ("test",
                                                                            "sensitivity"))
    assert (test_sensitivity.card.successes, test_sensitivity.card.total) == (377, 390)
    assert test_sensitivity.verdict == "below"


def test_the_site_operating_point_is_the_highest_threshold_reaching_the_target():
    y, p = used_arrays()
    for target in TABLE_TARGETS:
        reaching = [t for t in np.unique(p) if np.mean(p[y == 1] >= t) >= target]
        assert threshold_for(y, p, target) == max(reaching), target
    v = made().validation
    assert v.site_operating_point.target_sensitivity == 0.9
    assert v.site_operating_point.sensitivity.value >= 0.9
    assert [row.target_sensitivity for row in v.sensitivity_table] == list(TABLE_TARGETS)


def test_subgroup_counts_add_up_to_the_used_films():
    v = made().validation
    facets = {facet.facet: facet.subgroups for facet in v.subgroups}
    assert set(facets) == {"equipment", "view_position", "age_band", "sex", "body_part",
                           "pixel_spacing_band", "file_kind", "subgroup:ward"}
    for name, groups in facets.items():
        assert sum(g.n for g in groups) == v.films.used, name
        assert sum(g.positives for g in groups) == v.films.positives, name
        assert all(g.n == g.positives + g.negatives for g in groups), name
    assert {g.value for g in facets["equipment"]} == {"Acme X1", "Acme X2", "unknown"}
    assert {g.value for g in facets["age_band"]} == {"1 to 5 years", "6 to 11 years",
                                                     "unknown"}
    assert {g.value for g in facets["file_kind"]} == {"DICOM", "JPEG"}


def test_a_subgroup_whose_interval_lies_below_the_whole_sets_is_flagged():
    v = made().validation
    wards = {g.value: g for f in v.subgroups if f.facet == "subgroup:ward"
             for g in f.subgroups}
    whole = v.card_operating_point.sensitivity
    assert wards[WEAK_WARD].below == ["sensitivity"]
    assert wards[WEAK_WARD].sensitivity.high < whole.low
    assert wards["A"].below == []


def test_a_small_subgroup_below_the_whole_set_but_with_overlapping_intervals_is_not_flagged():
    # 200 pneumonia films, 180 found (0.90, interval 0.85-0.94); the small ward finds 3 of 5
    # (0.60, interval 0.23-0.88): lower, yet its interval overlaps the whole set's.
    y = np.ones(205, dtype=int)
    p = np.r_[np.full(180, 0.9), np.full(20, 0.1), np.full(3, 0.9), np.full(2, 0.1)]
    ward = ["big"] * 200 + ["small"] * 5
    whole = figures(y, p, 0.5)
    found = {g.value: g for g in subgroup_facet("subgroup:ward", ward, y, p, 0.5,
                                                whole).subgroups}
    assert found["small"].sensitivity.value < whole.sensitivity.low < found[
        "small"].sensitivity.high
    assert found["small"].below == [] and found["small"].auc is None


def test_refused_and_unjudged_films_are_counted_by_reason_and_left_out():
    v = made(refused=3, unjudged=2).validation
    assert (v.films.listed, v.films.used, v.films.refused, v.films.not_assessable) == (
        165, 160, 3, 2)
    assert v.films.refused_by_reason == {"unreadable_image": 3}
    assert v.films.not_assessable_by_reason == {"rotated": 2}


def test_calibration_is_measured_in_ten_bins():
    y, p = used_arrays()
    calibration = made().validation.calibration
    assert len(calibration.bins) == 10 and sum(b.n for b in calibration.bins) == len(y)
    index = np.minimum((p * 10).astype(int), 9)
    ece = sum(np.mean(index == k) * abs(y[index == k].mean() - p[index == k].mean())
              for k in range(10) if (index == k).any())
    assert calibration.ece == pytest.approx(ece, abs=1e-12)
    assert calibration.brier == pytest.approx(np.mean((p - y) ** 2), abs=1e-12)


def test_the_confident_errors_are_the_most_confident_ones_named_by_their_line():
    v = made().validation
    y, p = used_arrays()
    wrong = sorted(p[(y == 0) & (p >= CARD.threshold)], reverse=True)
    positives = [e for e in v.confident_errors if e.kind == "false_positive"]
    assert [e.probability for e in positives] == wrong[:len(positives)]
    assert all(e.line is not None and e.line >= 2 for e in v.confident_errors)


def test_the_json_round_trips(tmp_path):
    v = made().validation
    v.write(tmp_path)
    assert read_validation(tmp_path) == v


def test_the_report_stands_alone(tmp_path):
    found = made()
    path = write_report(tmp_path / REPORT_FILE, found.validation, found.outcome.y,
                        found.outcome.p, {}, CARD)
    html = path.read_text()
    v = found.validation
    assert html.count("data:image/png;base64,") >= 2  # the ROC curve and reliability
    assert "http://" not in html and "https://" not in html and "<link" not in html
    summary = html[html.index('id="summary"'):html.index("</section>")]
    assert f"{v.films.used} used" in summary and f"ROC AUC {v.auc.value:.3f}" in summary
    assert "worse than the card says" in summary  # ward B's misses: sensitivity below
    assert f"Subgroup:ward {WEAK_WARD}" in summary or f"subgroup:ward {WEAK_WARD}" in summary


def test_the_report_names_an_error_by_its_line_or_its_file_with_no_uid(tmp_path):
    found = made()
    uid = "1.2.826.0.1.3680043.8.498.777"
    errors = [ConfidentError(kind="false_positive", line=None, source=f"NORMAL/{uid}.dcm",
                             label="NORMAL", probability=0.99),
              ConfidentError(kind="false_negative", line=41, source="films/x.jpeg",
                             label="PNEUMONIA", probability=0.01)]
    v = found.validation.model_copy(update={"confident_errors": errors})
    html = write_report(tmp_path / REPORT_FILE, v, found.outcome.y, found.outcome.p,
                        {1: "data:image/png;base64,AAAA"}, CARD).read_text()
    assert uid not in html and "NORMAL/[UID].dcm" in html
    assert "line 41" in html and "films/x.jpeg" not in html
    assert html.count('<img alt="film"') == 1


# --- the labels file ----------------------------------------------------------------------


def _labels(tmp_path: Path, text: str) -> Path:
    for name in ("a.jpeg", "b.jpeg", "c d.jpeg", "f[1].jpeg"):
        (tmp_path / name).write_bytes(b"film")
    (tmp_path / "sub").mkdir(exist_ok=True)
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, says", [
    ("source,label\na.jpeg,1\nmissing.jpeg,0\n", "line 3: 'missing.jpeg' is no file"),
    ("source,label\na.jpeg,1\nb.jpeg,maybe\n", "line 3: label 'maybe' is none of"),
    ("source,label\na.jpeg,1\nb.jpeg,\n", "line 3: label '' is none of"),
    ("source,label\na.jpeg,1\n\nb.jpeg,0\n./a.jpeg,0\n", "line 5: './a.jpeg' is named twice "
                                                         "(first on line 2)"),
    ("source,label\nsub,1\n", "line 2: 'sub' is no file (a folder"),
    ("source,label\na.jpeg,1,extra\n", "line 2: 3 cells where the header names 2"),
    ("file,label\na.jpeg,1\n", "line 1: the header names file, label"),
    ("source,label,ward\na.jpeg,1,x\n", "line 1: unknown column(s) ward"),
    ("source,label\n", "no labelled film in it"),
])
def test_a_labels_file_error_names_the_line(tmp_path, text, says):
    path = _labels(tmp_path, text)
    with pytest.raises(LabelsError) as caught:
        read_labels(str(path))
    assert says in str(caught.value) and str(path) in str(caught.value)


def test_a_labels_file_names_films_as_the_archive_lists_them(tmp_path):
    path = _labels(tmp_path, "source,label,subgroup:ward\na.jpeg,Pneumonia,W1\n"
                             "c d.jpeg,NORMAL,\nf[1].jpeg,0,W2\n" + f"{tmp_path}/b.jpeg,1,W1\n")
    labels = read_labels(str(path))
    assert [(f.source, f.line, f.label, f.subgroups["subgroup:ward"])
            for f in labels.films] == [(f"{tmp_path}/a.jpeg", 2, 1, "W1"),
                                       (f"{tmp_path}/c d.jpeg", 3, 0, "unknown"),
                                       (f"{tmp_path}/f[1].jpeg", 4, 0, "W2"),
                                       (f"{tmp_path}/b.jpeg", 5, 1, "W1")]
    assert [item.source for item in list_sources(labels.sources)] == [
        film.source for film in labels.films]


def test_a_labels_folder_needs_both_subfolders(tmp_path):
    (tmp_path / "normal").mkdir()
    (tmp_path / "normal" / "a.jpeg").write_bytes(b"film")
    with pytest.raises(LabelsError, match="PNEUMONIA/ missing"):
        read_labels(str(tmp_path))
    (tmp_path / "PNEUMONIA").mkdir()
    (tmp_path / "PNEUMONIA" / "b.png").write_bytes(b"film")
    (tmp_path / "PNEUMONIA" / ".hidden").write_bytes(b"x")
    labels = read_labels(str(tmp_path))
    assert [(Path(f.source).name, f.label, f.line) for f in labels.films] == [
        ("a.jpeg", 0, None), ("b.png", 1, None)]


def test_a_labels_file_error_exits_2_and_scores_nothing(tmp_path, capsys):
    path = _labels(tmp_path, "source,label\na.jpeg,1\nb.jpeg,2\n")
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--labels", str(path), "--out", str(tmp_path / "out")])
    assert exited.value.code == 2
    assert "line 3: label '2' is none of 1, 0, pneumonia, normal" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["0", "1.5"])
def test_a_target_sensitivity_out_of_range_exits_2_and_scores_nothing(tmp_path, capsys,
                                                                      target):
    path = _labels(tmp_path, "source,label\na.jpeg,1\nb.jpeg,0\n")
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--labels", str(path), "--out", str(tmp_path / "out"),
              "--target-sensitivity", target])
    assert exited.value.code == 2
    assert f"--target-sensitivity {float(target)} is not above 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- a run of the engine on real films ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_validate_scores_real_films_and_writes_the_json_and_the_report(tmp_path, data_dir):
    """16 test-split films (8 of each label; 2 of them as DICOMs with the equipment in their
    headers, a patient's identity too), a film the model cannot judge, a damaged one."""
    films = tmp_path / "films"
    films.mkdir()
    lines = ["source,label,subgroup:ward"]
    for label in ("NORMAL", "PNEUMONIA"):
        for i, path in enumerate(sorted((data_dir / "test" / label).glob("*.jpeg"))[:8]):
            if i < 1:
                ds = study_film(gray_of(path))
                ds.Manufacturer, ds.ManufacturerModelName = "Acme", "CR-1"
                ds.ImagerPixelSpacing = [0.15, 0.15]
                name = f"{label}-{i}.dcm"
                (films / name).write_bytes(file_bytes(ds))
            else:
                name = f"{label}-{i}.jpeg"
                shutil.copy(path, films / name)
            lines.append(f"films/{name},{label.lower()},{'east' if i % 2 else 'west'}")
    (films / "blob.jpeg").write_bytes(jpeg_bytes(300, 260))
    first = sorted((data_dir / "test" / "NORMAL").glob("*.jpeg"))[0]
    (films / "damaged.jpeg").write_bytes(jpeg_cut_with_end_marker(first.read_bytes()))
    lines += ["films/blob.jpeg,0,west", "films/damaged.jpeg,1,east"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    out, ray_dir = tmp_path / "out", short_dir("ray-val-")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app", "validate", "--labels", str(tmp_path / "labels.csv"),
             "--out", str(out), "--seed", "11", *EMBEDDED], cwd=REPO,
            env=archive_env(ray_dir), capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    v = read_validation(out)
    assert (v.films.listed, v.films.used, v.films.refused, v.films.not_assessable) == (
        18, 16, 1, 1), v.films
    scored = {row["source"]: row for row in rows(out / "scores")}
    labels = read_labels(str(tmp_path / "labels.csv"))
    used = [(f.label, scored[f.source]["probability"]) for f in labels.films
            if scored[f.source]["probability"] is not None]
    y, p = np.array([a for a, _ in used]), np.array([b for _, b in used])
    assert abs(v.auc.value - roc_auc_score(y, p)) < 1e-9
    assert v.auc.low <= v.auc.value <= v.auc.high and v.auc.seed == 11
    for facet in v.subgroups:
        assert sum(g.n for g in facet.subgroups) == 16, facet.facet
    equipment = {g.value: g.n for f in v.subgroups if f.facet == "equipment"
                 for g in f.subgroups}
    assert equipment == {"Acme CR-1": 2, "unknown": 14}
    assert f"ROC AUC {v.auc.value:.3f}" in result.stdout
    html = (out / REPORT_FILE).read_text()
    text = html + (out / "validation.json").read_text()
    for identifier in IDENTIFIERS:
        assert identifier not in text
    assert json.loads((out / "validation.json").read_text())["schema_version"] == 1
    assert html.count('<img alt="film"') == len(v.confident_errors)


# --- red team (issue 30): hostile labels and headers ---------------------------------------


def test_a_labels_file_of_one_label_only_is_refused_before_anything_is_scored(tmp_path):
    # Found only after scoring otherwise: hours on a large archive, for nothing.
    path = _labels(tmp_path, "source,label\na.jpeg,1\nb.jpeg,pneumonia\n")
    with pytest.raises(LabelsError, match="every film is labelled pneumonia"):
        read_labels(str(path))


def test_a_quoted_source_with_a_line_break_names_that_file_not_another(tmp_path):
    # Split into lines first, "a<newline>.jpeg" read as "a.jpeg": another film's label.
    path = _labels(tmp_path, 'source,label\n"a\n.jpeg",1\nb.jpeg,0\n')
    with pytest.raises(LabelsError, match=r"'a\\n.jpeg' is no file"):
        read_labels(str(path))
    path.write_bytes(b"source,label\r\na.jpeg,1\r\n\r\nb.jpeg,0\r\n")
    assert [(Path(f.source).name, f.line) for f in read_labels(str(path)).films] == [
        ("a.jpeg", 2), ("b.jpeg", 4)]


def test_the_report_runs_no_script_from_the_labels_or_the_headers(tmp_path):
    found = made()
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    v = found.validation
    facets = [facet.model_copy(update={"facet": f"subgroup:{hostile}", "subgroups": [
        group.model_copy(update={"value": hostile}) for group in facet.subgroups]})
        for facet in v.subgroups]
    errors = [ConfidentError(kind="false_positive", line=None, source=f"NORMAL/{hostile}.dcm",
                             label="NORMAL", probability=0.99)]
    v = v.model_copy(update={"subgroups": facets, "confident_errors": errors,
                             "run": v.run.model_copy(update={"labels": hostile})})
    html = write_report(tmp_path / REPORT_FILE, v, found.outcome.y, found.outcome.p, {},
                        CARD).read_text()
    assert "<script" not in html and "onerror=alert" not in html.replace(
        "&lt;img src=x onerror=alert", "")
    # Opened from the folder or an e-mail, no server sends a policy: the page carries its own.
    assert ('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:\">") in html


def test_a_labels_folder_with_a_link_loop_is_a_labels_error(tmp_path):
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpeg").write_bytes(b"film")
    (tmp_path / "NORMAL" / "l1").symlink_to(tmp_path / "NORMAL" / "l2")
    (tmp_path / "NORMAL" / "l2").symlink_to(tmp_path / "NORMAL" / "l1")
    with pytest.raises(LabelsError, match="NORMAL.*cannot be listed"):
        read_labels(str(tmp_path))
