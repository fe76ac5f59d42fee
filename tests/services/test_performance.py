"""Live performance from reads (app/services/performance.py): the 2 x 2 table and its figures
against a computation written here from the definitions, studies the model could not judge
and indeterminate reads counted apart, the card's figures beside them, and the verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest
from scipy.stats import binomtest

from app.contract.card import read_card
from app.services.performance import CardShelf, measure, reference_of
from app.store import Finding, WorklistStore
from tests.servers import REPO
from tests.store.factories import film

CARD = read_card(REPO / "models" / "pneumonia" / "2")
OP = CARD.threshold


def _wilson(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def _read(store: WorklistStore, uid: str, probability: float | None, finding: str,
          **fields) -> None:
    (entry,) = store.add_films([film(uid, probability=probability, threshold=OP,
                                     model_version=str(CARD.version), **fields)])
    store.set_read(entry.id, finding, "dr.grey")


# (probability, read): flagged when the probability reaches the card's operating point.
CASES = ([(0.9, "pneumonia")] * 9 + [(0.05, "pneumonia")] * 3 + [(0.8, "no_pneumonia")] * 4
         + [(0.02, "no_pneumonia")] * 11 + [(0.7, "indeterminate")] * 2
         + [(0.01, "indeterminate")])


def _expected(cases: list[tuple[float, str]]) -> dict[str, tuple[int, int]]:
    """(successes, total) of each figure, straight from the definitions."""
    flagged = [(p >= OP, read) for p, read in cases]
    tp = sum(f and r == "pneumonia" for f, r in flagged)
    fn = sum(not f and r == "pneumonia" for f, r in flagged)
    fp = sum(f and r == "no_pneumonia" for f, r in flagged)
    tn = sum(not f and r == "no_pneumonia" for f, r in flagged)
    return {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp),
            "ppv": (tp, tp + fp), "npv": (tn, tn + fn),
            "flagged_rate": (sum(f for f, _ in flagged), len(flagged))}


def test_figures_are_the_definitions_with_wilson_intervals(worklist: WorklistStore) -> None:
    for n, (probability, finding) in enumerate(CASES):
        _read(worklist, f"P{n}", probability, finding)
    _read(worklist, "X1", None, "pneumonia", assessable=False, reasons=("rotated",),
          flagged=None)
    [model] = measure(worklist, CardShelf(REPO / "models").card).models
    assert (model.model, model.version) == (CARD.name, str(CARD.version))
    assert (model.reads, model.judged, model.indeterminate, model.not_assessable) == (
        len(CASES) + 1, 27, 3, 1)
    for name, (k, total) in _expected(CASES).items():
        figure = model.figures[name]
        assert (figure.successes, figure.total) == (k, total), name
        assert figure.value == pytest.approx(k / total)
        assert (figure.low, figure.high) == pytest.approx(_wilson(k, total), abs=1e-4), name


def test_the_card_is_the_reference_and_the_verdict_compares_its_intervals(
        worklist: WorklistStore) -> None:
    reference = reference_of(CARD)
    (tn, fp), (fn, tp) = CARD.metrics["test"].confusion_matrix
    assert (reference.figures["sensitivity"].successes, reference.figures["sensitivity"].total
            ) == (tp, tp + fn)
    assert reference.threshold == CARD.metrics["test"].threshold == OP
    # 14 of 20 pneumonias flagged: sensitivity 0.70, its interval (0.48, 0.85) wholly below
    # the card's (0.950, 0.984).
    cases = [(0.9, "pneumonia")] * 14 + [(0.01, "pneumonia")] * 6 + [(0.01, "no_pneumonia")] * 10
    for n, (probability, finding) in enumerate(cases):
        _read(worklist, f"B{n}", probability, finding)
    [model] = measure(worklist, CardShelf(REPO / "models").card).models
    assert model.figures["sensitivity"].high < reference.figures["sensitivity"].low
    assert (model.verdict, model.below) == ("below", ("sensitivity",))


def test_a_few_good_reads_are_consistent(worklist: WorklistStore) -> None:
    for n, (probability, finding) in enumerate([(0.9, "pneumonia"), (0.01, "no_pneumonia")]):
        _read(worklist, f"C{n}", probability, finding)
    [model] = measure(worklist, CardShelf(REPO / "models").card).models
    assert model.verdict == "consistent" and model.below == ()


def test_another_operating_point_is_not_compared(worklist: WorklistStore) -> None:
    (entry,) = worklist.add_films([film("T", probability=0.9, threshold=0.5,
                                        model_version=str(CARD.version))])
    worklist.set_read(entry.id, Finding.PNEUMONIA, "dr.grey")
    [model] = measure(worklist, CardShelf(REPO / "models").card).models
    assert model.verdict == "not_comparable"


def test_a_version_without_a_card_has_no_reference(worklist: WorklistStore) -> None:
    for version in ("999", "../../etc"):
        (entry,) = worklist.add_films([film(f"V{len(version)}", probability=0.9,
                                            model_version=version)])
        worklist.set_read(entry.id, "pneumonia", "dr.grey")
    models = measure(worklist, CardShelf(REPO / "models").card).models
    assert {m.verdict for m in models} == {"no_reference"}


def test_the_window_is_the_last_reads_since_a_moment(tmp_path) -> None:
    from app.store import upgrade
    from tests.store.conftest import Clock
    from tests.store.factories import T0

    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    clock = Clock(T0)
    store = WorklistStore(url, clock=clock)
    try:
        for n in range(6):
            clock.advance(days=1)
            _read(store, f"D{n}", 0.9 if n % 2 else 0.01, "pneumonia")
        shelf = CardShelf(REPO / "models").card
        assert measure(store, shelf, last=4).models[0].figures["sensitivity"].total == 4
        since = measure(store, shelf, since=T0 + timedelta(days=5)).models[0]
        assert since.figures["sensitivity"].total == 2
    finally:
        store.close()
