"""The triage score: a model's probability on a scale where every model's operating point is
0.5 (torchxrayvision's `op_norm`, Cohen et al., "TorchXRayVision", MIDL 2022).

Its one definition and the one way it is read: computed once on the prediction
(app/services/pipeline.py `Prediction.triage_score`) and on a stored film
(app/store/records.py `FilmResult.triage_score`, which also orders the worklist,
app/store/priority.py), and read by every presenter (the API's schemas, the batch CSV, the
worklist, the SR and secondary capture, the folder command) from there. Here in the contract
because it reads only a probability and the card's threshold, and the store must not import
the service layer. Plain Python: no dependency at all.
"""

from __future__ import annotations

import math

#: The triage score of every model's operating point.
OPERATING_POINT_SCORE = 0.5


def triage_score(probability: float, operating_point: float) -> float:
    """`probability` (0-1) rescaled so that `operating_point` maps to 0.5: linear from 0 to
    the operating point onto 0-0.5, and from it to 1 onto 0.5-1 (torchxrayvision `op_norm`).

    Monotone in `probability`, so it orders films as the probability does for one model;
    `triage_score(p, op) >= 0.5` exactly when `p >= op`, the flag's rule
    (ModelCard.label_for). Across models it is the scale to compare on: a film at p=0.98 of a
    model whose operating point is 0.176 scores 0.99, one at p=0.985 of a model at 0.964
    scores 0.79. An operating point of 0 or 1 leaves one half empty: every film is then on
    one side. Raises ValueError outside [0, 1].

    app/store/migrations/versions/0003_triage_rank.py repeats these lines (a migration must
    not import code that may change): change both or neither.
    """
    if not (0.0 <= probability <= 1.0 and 0.0 <= operating_point <= 1.0):
        raise ValueError(f"probability {probability} and operating point {operating_point} "
                         "must be in [0, 1]")
    if probability < operating_point:
        return 0.5 * probability / operating_point
    if operating_point >= 1.0:
        return 1.0
    return 1.0 - 0.5 * (1.0 - probability) / (1.0 - operating_point)


def score_text(score: float) -> str:
    """The triage score as people read it: a whole number out of 100, cut (not rounded)
    so that its side of 50 is the flag's side: 0.4999 reads '49', never '50'. Capped at 99,
    because the model is never certain."""
    return str(min(math.floor(score * 100), 99))


#: The operating point as people read it, out of 100: "flagged at 50 and above".
FLAGGED_FROM_TEXT = score_text(OPERATING_POINT_SCORE)
