"""The triage decision and score (app/services/triage.py): the number a person reads agrees
with the flag for every model, whatever its operating point."""

import numpy as np
import pytest

from app.contract.triage_score import score_text, triage_score
from app.services.film import ImageFacts
from app.services.pipeline import Prediction
from app.services.triage import Decision, decision, summary_text

FACTS = ImageFacts(224, 224, "JPEG", "L", None)

OPERATING_POINTS = [0.5, 0.17551017509667238, 0.9642189588105958, 0.01, 0.999]


@pytest.mark.parametrize("op", OPERATING_POINTS)
def test_the_score_is_at_least_50_exactly_when_the_film_is_flagged(op):
    for p in np.unique(np.concatenate([np.linspace(0, 1, 2001), [op, np.nextafter(op, 0)]])):
        flagged = p >= op  # ModelCard.label_for's rule
        score = triage_score(float(p), op)
        assert (score >= 0.5) == flagged, (p, op, score)
        assert (int(score_text(score)) >= 50) == flagged, (p, op, score_text(score))


@pytest.mark.parametrize("op", OPERATING_POINTS)
def test_the_score_keeps_the_probability_order_and_spans_0_to_1(op):
    p = np.linspace(0, 1, 501)
    scores = [triage_score(float(x), op) for x in p]
    assert all(a <= b for a, b in zip(scores, scores[1:]))
    assert scores[0] == 0 and scores[-1] == 1 and triage_score(op, op) == 0.5


def test_the_compact_model_s_51_percent_reads_as_a_low_score_not_flagged():
    # The film: 51.1% under an operating point of 96.4% is far below it.
    score = triage_score(0.511, 0.9642189588105958)
    assert score_text(score) == "26" and decision(True, False) is Decision.NOT_FLAGGED


def test_the_text_is_cut_toward_the_flag_and_never_shows_certainty():
    assert score_text(0.49999) == "49" and score_text(0.5) == "50"
    assert score_text(1.0) == "99" and score_text(0.0) == "0"


def test_a_film_that_is_not_assessable_needs_a_human_look_whatever_its_flag():
    assert decision(False, True) is Decision.NEEDS_HUMAN_LOOK
    assert Decision.FLAGGED.text == "flagged for priority read"
    assert Decision.NOT_FLAGGED.text == "not flagged"
    assert Decision.NEEDS_HUMAN_LOOK.text == "needs a human look"


def test_out_of_range_numbers_are_refused():
    with pytest.raises(ValueError):
        triage_score(1.2, 0.5)


def test_the_summary_reads_right():
    assert summary_text(5, 2, 1, 0, 3) == "5 files: 2 scored, 1 flagged; 3 not scored."
    assert summary_text(3, 1, 0, 1, 1) == ("3 files: 1 scored, 0 flagged; 1 needs a human look; "
                                           "1 not scored.")


@pytest.mark.parametrize("op", OPERATING_POINTS)
def test_the_api_field_never_reads_0_5_for_a_film_just_below_the_operating_point(op):
    """The prediction's own triage score (what the API, the CSV and the SR read)."""
    below = float(np.nextafter(np.float32(op), np.float32(0)))  # the model's float32 output
    prediction = Prediction(below, "NORMAL", False, op, "m", 1, FACTS, 1.0)
    assert prediction.triage_score < 0.5 and int(prediction.triage_score_text) < 50
    at = Prediction(op, "PNEUMONIA", True, op, "m", 1, FACTS, 1.0)
    assert at.triage_score == 0.5 and at.triage_score_text == "50"


@pytest.mark.parametrize("op", OPERATING_POINTS)
def test_a_film_the_model_cannot_judge_has_no_triage_score(op):
    prediction = Prediction(0.99, None, False, op, "m", 1, FACTS, 1.0,
                            reasons=("unlike_training",))
    assert prediction.triage_score is None and prediction.triage_score_text is None
