"""Selective prediction: answer only the most confident questions, and measure what that buys.

Sort the predictions by confidence, highest first. Answering the ``k`` most confident is
*coverage* ``k / n``; the error rate among them is the *selective risk* at that coverage. From
that one curve (Geifman & El-Yaniv 2017):

- :func:`risk_coverage_curve`: the curve itself (every coverage ``k / n``), with the best curve
  reachable at the same accuracy (every error ranked last) and the level of a random ranking;
- :func:`selective_accuracy`: the accuracy among the most confident fraction ``coverage`` of the
  answers (HELM's "selective accuracy at 10%" is ``coverage=0.1``);
- :func:`prediction_rejection_ratio` (PRR, Malinin et al. 2017; LM-Polygraph's form): how much
  of the way from a random ranking to a perfect one the confidence goes, ``(AURC_random - AURC) /
  (AURC_random - AURC_best)``, 1 perfect, 0 random, negative worse than random.

Ties in confidence have no order of their own; every number here is its *expected* value over
the orderings of tied predictions (inside a tied block the errors count as spread evenly), as
:func:`recal.metrics.aurc` is. ``*_from_blocks`` work on many bootstrap rows at once from
per-level counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recal.metrics.point import _harmonic, aurc_from_blocks, value_blocks
from recal.metrics.validation import FloatArray, check_predictions

__all__ = [
    "SELECTIVE_COVERAGE",
    "RiskCoverage",
    "best_aurc_from_counts",
    "prediction_rejection_ratio",
    "prr_from_blocks",
    "risk_coverage_curve",
    "selective_accuracy",
    "selective_accuracy_from_blocks",
]

SELECTIVE_COVERAGE = 0.1
"""The coverage of the registered ``selective_accuracy_10`` (HELM's selective accuracy at 10%)."""


@dataclass(frozen=True, eq=False)
class RiskCoverage:
    """A risk-coverage curve (compute with :func:`risk_coverage_curve`); arrays of length n.

    ``risk[k - 1]`` is the expected error rate among the ``k`` most confident answers (coverage
    ``k / n``); ``best_risk`` the same for a confidence that ranks every right answer above every
    wrong one; a random ranking has risk ``1 - accuracy`` at every coverage.
    """

    coverage: FloatArray
    risk: FloatArray
    best_risk: FloatArray
    threshold: FloatArray
    """The confidence of the k-th most confident answer (answer those at or above it)."""
    n: int
    accuracy: float
    aurc: float
    best_aurc: float
    prr: float


def _top_k_errors(count: FloatArray, wrong: FloatArray, k: FloatArray) -> FloatArray:
    """Expected errors among the ``k`` first predictions of each row (levels in ranking order,
    errors spread evenly through a tied level)."""
    after = np.cumsum(count, axis=-1)
    before = after - count
    errors_before = np.cumsum(wrong, axis=-1) - wrong
    k = np.asarray(k, dtype=np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(count > 0, np.clip(k - before, 0.0, count) / count, 0.0)
    inside = (before < k) & (k <= after)
    taken = np.where(inside, errors_before + share * wrong, 0.0).sum(axis=-1)
    return np.asarray(taken, dtype=np.float64)


def risk_coverage_curve(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> RiskCoverage:
    """The risk-coverage curve of ``confidence`` (see :class:`RiskCoverage`)."""
    conf, corr = check_predictions(confidence, correct)
    count, right = value_blocks(conf, corr)
    count, wrong = count[::-1], (count - right)[::-1]  # most confident first
    n = conf.size
    k = np.arange(1, n + 1, dtype=np.float64)
    # Errors among the top k, k = 1..n: piecewise linear between block ends.
    ends = np.concatenate([[0.0], np.cumsum(count)])
    errors = np.interp(k, ends, np.concatenate([[0.0], np.cumsum(wrong)]))
    level_values = np.unique(conf)[::-1]
    block = np.searchsorted(ends, k, side="left") - 1
    n_right = float(corr.sum())
    best_errors = np.maximum(k - n_right, 0.0)
    return RiskCoverage(
        coverage=k / n, risk=errors / k, best_risk=best_errors / k,
        threshold=level_values[block], n=n, accuracy=n_right / n,
        aurc=float(aurc_from_blocks(count, wrong, n)),
        best_aurc=float(best_aurc_from_counts(np.float64(n_right), n)),
        prr=float(prr_from_blocks(count, wrong, n)),
    )


def selective_accuracy_from_blocks(count: FloatArray, wrong: FloatArray, n: int,
                                   coverage: float = SELECTIVE_COVERAGE) -> FloatArray:
    """:func:`selective_accuracy` of each row of per-level (count, wrong), levels descending."""
    k = _coverage_count(n, coverage)
    return 1.0 - _top_k_errors(count, wrong, np.float64(k)) / k


def _coverage_count(n: int, coverage: float) -> int:
    # ceil without the float noise of 0.1 * 30 = 3.0000000000000004
    return max(1, math.ceil(round(coverage * n, 9)))


def selective_accuracy(confidence: npt.ArrayLike, correct: npt.ArrayLike,
                       coverage: float = SELECTIVE_COVERAGE) -> float:
    """Accuracy among the ``ceil(coverage * n)`` most confident answers (at least one). Higher is
    better; range [0, 1].

    ``coverage=0.1`` is HELM's selective accuracy at 10% (Liang et al. 2022), whose code
    (``uncertainty-calibration``'s ``get_selective_stats``) takes the ``floor(0.1 n) + 1`` most
    confident: the same count unless ``0.1 n`` is a whole number. Tied confidences at the cut
    count in expectation over their orderings.
    """
    if not (isinstance(coverage, int | float) and 0.0 < coverage <= 1.0):
        raise ValueError(f"coverage must be a fraction in (0, 1], got {coverage!r}")
    conf, corr = check_predictions(confidence, correct)
    count, right = value_blocks(conf, corr)
    return float(selective_accuracy_from_blocks(count[::-1], (count - right)[::-1], conf.size,
                                                coverage))


def best_aurc_from_counts(n_right: FloatArray, n: int) -> FloatArray:
    """The lowest AURC reachable with ``n_right`` right answers of ``n`` (every error last):
    ``(1/n) sum_{k > r} (k - r) / k = ((n - r) - r (H[n] - H[r])) / n``."""
    harmonic = _harmonic(n)
    r = np.rint(n_right).astype(np.int64)
    return np.asarray(((n - r) - r * (harmonic[n] - harmonic[r])) / n, dtype=np.float64)


def prr_from_blocks(count: FloatArray, wrong: FloatArray, n: int) -> FloatArray:
    """PRR of each row of per-level (count, wrong), levels descending; nan with one class."""
    total_wrong = wrong.sum(axis=-1)
    random = total_wrong / n  # a random ranking's expected risk is the error rate everywhere
    best = best_aurc_from_counts(n - total_wrong, n)
    actual = aurc_from_blocks(count, wrong, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((total_wrong > 0) & (total_wrong < n),
                        (random - actual) / (random - best), np.nan)


def prediction_rejection_ratio(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Prediction-rejection ratio ``(AURC_random - AURC) / (AURC_random - AURC_best)``. Higher is
    better; at most 1 (a perfect ranking), 0 for a random one, negative (unbounded below) for a
    ranking worse than random.

    ``AURC_random = 1 - accuracy`` (a random order's expected risk at every coverage) and
    ``AURC_best`` puts every error last. This is LM-Polygraph's normalised PRR (Fadeeva et al.
    2023; Vashurin et al. 2025) on the 0/1 correctness, with the random ranking's expectation in
    closed form instead of averaged over shuffles; Malinin et al. 2017's original counts rejected
    answers as right rather than leaving them out of the risk. When every answer is right or
    every answer wrong no ranking can do better than another and ``nan`` is returned.
    """
    conf, corr = check_predictions(confidence, correct)
    count, right = value_blocks(conf, corr)
    return float(prr_from_blocks(count[::-1], (count - right)[::-1], conf.size))
