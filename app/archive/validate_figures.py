"""The figures of a local validation, from the used films' labels and served probabilities:
pure functions of arrays, no file and no Ray, so each is tested against its reference.

    y: (N,) int, 1 = labelled pneumonia, 0 = normal
    p: (N,) float, the served (calibrated) probability of pneumonia, in [0, 1]

A film is flagged at threshold t when p >= t (the card's rule, app/contract/card.py Metrics).
Intervals: the Wilson score interval for proportions (app/contract/intervals.py), the
percentile bootstrap for the ROC AUC (Efron and Tibshirani 1993, ch. 13).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from app.contract.card import ModelCard
from app.contract.intervals import wilson
from app.contract.validation import (
    AucEstimate,
    CalibrationBin,
    CardFigure,
    CardOperatingPoint,
    Figures,
    Proportion,
    SiteOperatingPoint,
    Subgroup,
    SubgroupFacet,
    ValidationCalibration,
    Verdict,
)

BOOTSTRAP_DRAWS = 2000
CALIBRATION_BINS = 10
# The WHO CAD calibration toolkit's view: the figures at every 0.05 of sensitivity.
TABLE_TARGETS = tuple(round(0.50 + 0.05 * step, 2) for step in range(11))


def proportion(successes: int, total: int) -> Proportion:
    low, high = wilson(successes, total)
    return Proportion(value=successes / total if total else None, successes=successes,
                      total=total, low=low, high=high)


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC (scikit-learn's roc_auc_score); None with one class only."""
    return float(roc_auc_score(y, p)) if 0 < int(y.sum()) < len(y) else None


def bootstrap_auc(y: np.ndarray, p: np.ndarray, seed: int,
                  draws: int = BOOTSTRAP_DRAWS) -> AucEstimate:
    """The ROC AUC with its 95% percentile bootstrap interval: `draws` resamples of the films
    with replacement (numpy's default Generator seeded with `seed`); a resample with one
    class only has no AUC and is skipped and counted. Raises ValueError with one class."""
    value = auc(y, p)
    if value is None:
        raise ValueError("the ROC AUC needs films of both labels")
    drawn = np.random.default_rng(seed).integers(0, len(y), (draws, len(y)))  # (draws, N)
    found = rank_auc(y[drawn], p[drawn])
    found = found[~np.isnan(found)]
    low, high = np.percentile(found, [2.5, 97.5]) if len(found) else (0.0, 1.0)
    return AucEstimate(value=value, low=float(low), high=float(high), draws=draws,
                       skipped_draws=draws - len(found), seed=seed)


def rank_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The ROC AUC of each row of (D, N) labels and probabilities by the Mann-Whitney
    statistic (Hanley and McNeil 1982): (rank sum of the positives - P(P+1)/2) / (P * N0),
    ties at their mean rank, which is roc_auc_score's value (a tie counts one half); NaN for
    a row with one class only. All rows at once: 2,000 draws of 624 films in ~0.1 s."""
    ranks = rankdata(p, axis=1)
    positives = y.sum(axis=1)
    negatives = y.shape[1] - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        found = ((ranks * y).sum(axis=1) - positives * (positives + 1) / 2) / (
            positives * negatives)
    return np.where((positives > 0) & (negatives > 0), found, np.nan)


def figures(y: np.ndarray, p: np.ndarray, threshold: float) -> Figures:
    """Sensitivity, specificity, PPV and NPV at `threshold`, each with its Wilson interval."""
    flagged = p >= threshold
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    tn = int(np.sum(~flagged & (y == 0)))
    return Figures(threshold=threshold, sensitivity=proportion(tp, tp + fn),
                   specificity=proportion(tn, tn + fp), ppv=proportion(tp, tp + fp),
                   npv=proportion(tn, tn + fn))


def threshold_for(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity is >= `target`: the k-th highest probability
    of a positive film, k = ceil(target * positives) (any higher threshold flags fewer than
    k of them). Raises ValueError without a positive film."""
    positives = np.sort(p[y == 1])[::-1]
    if not len(positives):
        raise ValueError("a sensitivity needs films labelled pneumonia")
    k = max(1, math.ceil(round(target * len(positives), 9)))
    return float(positives[k - 1])


def site_point(y: np.ndarray, p: np.ndarray, target: float) -> SiteOperatingPoint:
    found = figures(y, p, threshold_for(y, p, target))
    return SiteOperatingPoint(**dict(found), target_sensitivity=target)


def sensitivity_table(y: np.ndarray, p: np.ndarray) -> list[SiteOperatingPoint]:
    return [site_point(y, p, target) for target in TABLE_TARGETS]


def card_point(y: np.ndarray, p: np.ndarray, card: ModelCard) -> CardOperatingPoint:
    """The site's figures at the card's threshold, beside the card's own on its validation
    and test splits (from each split's confusion matrix, at the same threshold)."""
    site = figures(y, p, card.threshold)
    compared = []
    for split in ("validation", "test"):
        metrics = card.metrics.get(split)
        if metrics is None:
            continue
        (tn, fp), (fn, tp) = metrics.confusion_matrix
        own = {"sensitivity": proportion(tp, tp + fn), "specificity": proportion(tn, tn + fp),
               "ppv": proportion(tp, tp + fp), "npv": proportion(tn, tn + fn)}
        for name, card_figure in own.items():
            value = getattr(site, name).value
            compared.append(CardFigure(split=split, figure=name, card=card_figure,
                                       site_value=value, verdict=verdict(value, card_figure)))
    return CardOperatingPoint(**dict(site), card=compared)


def verdict(value: float | None, card: Proportion) -> Verdict | None:
    """Where the site's value falls against the card's 95% interval [low, high]."""
    if value is None:
        return None
    return "below" if value < card.low else "above" if value > card.high else "inside"


def calibration(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS
                ) -> ValidationCalibration:
    """Reliability in `bins` equal-width bins of p ([k/bins, (k+1)/bins), the last one
    closed); ECE = sum over bins of n/N * |observed rate - mean p|; Brier = mean (p - y)^2."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    found, ece = [], 0.0
    for k in range(bins):
        inside = index == k
        n = int(inside.sum())
        mean_p = float(p[inside].mean()) if n else None
        rate = float(y[inside].mean()) if n else None
        if n:
            ece += n / len(y) * abs(rate - mean_p)
        found.append(CalibrationBin(low=k / bins, high=(k + 1) / bins, n=n,
                                    mean_probability=mean_p, observed_rate=rate))
    return ValidationCalibration(bins=found, ece=min(1.0, ece),
                                 brier=float(np.mean((p - y) ** 2)))


def subgroup_facet(facet: str, values: Sequence[str], y: np.ndarray, p: np.ndarray,
                   threshold: float, whole: Figures) -> SubgroupFacet:
    """The films cut by one facet (`values`: each film's value), each subgroup's figures at
    `threshold`, and which of its intervals lie wholly below the whole set's."""
    keys = np.asarray(values, dtype=object)
    groups = []
    for value in sorted(set(values), key=lambda v: (v == "unknown", v)):
        inside = keys == value
        yy, pp = y[inside], p[inside]
        found = figures(yy, pp, threshold)
        below = [name for name in ("sensitivity", "specificity")
                 if getattr(found, name).total
                 and getattr(found, name).high < getattr(whole, name).low]
        groups.append(Subgroup(value=value, n=int(inside.sum()), positives=int(yy.sum()),
                               negatives=int((yy == 0).sum()), auc=auc(yy, pp),
                               sensitivity=found.sensitivity, specificity=found.specificity,
                               below=below))
    return SubgroupFacet(facet=facet, subgroups=groups)
