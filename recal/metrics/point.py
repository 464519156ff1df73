"""Point metrics on ``(confidence, correct)``: averages, proper scores and ranking metrics.

Each metric is a checked public function (``brier_score(confidence, correct)``) over an unchecked
``*_unchecked`` kernel on float64 arrays that loops call after checking once; the per-level
helpers (``auroc_from_blocks``, ``aurc_from_blocks``) work on many rows at once for the bootstrap.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recal.metrics.validation import FloatArray, check_predictions

__all__ = [
    "LOG_LOSS_EPS",
    "accuracy",
    "aurc",
    "auroc",
    "brier_score",
    "log_loss",
    "mean_confidence",
]

#: (what scikit-learn's ``log_loss`` does), so one confident wrong answer costs at most ~36.04.
LOG_LOSS_EPS: float = float(np.finfo(np.float64).eps)
# --------------------------------------------------------------------------- simple averages


def accuracy_unchecked(conf: FloatArray, corr: FloatArray) -> float:
    return float(corr.mean())


def accuracy(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Fraction of correct answers, ``mean(correct)``. Higher is better; range [0, 1]."""
    return accuracy_unchecked(*check_predictions(confidence, correct))


def mean_confidence_unchecked(conf: FloatArray, corr: FloatArray) -> float:
    return float(conf.mean())


def mean_confidence(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Average confidence, ``mean(confidence)``. Descriptive (neither direction is better).

    Compared with :func:`accuracy` it says whether the model is over- (larger) or under-confident
    on average; range [0, 1].
    """
    return mean_confidence_unchecked(*check_predictions(confidence, correct))


def brier_terms(conf: FloatArray, corr: FloatArray) -> FloatArray:
    return (conf - corr) ** 2


def brier_score_unchecked(conf: FloatArray, corr: FloatArray) -> float:
    return float(brier_terms(conf, corr).mean())


def brier_score(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Brier score ``mean((confidence - correct)**2)`` (Brier 1950). Lower is better; range [0, 1].

    Equals ``sklearn.metrics.brier_score_loss(correct, confidence)``.
    """
    return brier_score_unchecked(*check_predictions(confidence, correct))


def log_loss_terms(conf: FloatArray, corr: FloatArray) -> FloatArray:
    prob_of_outcome = np.where(corr == 1.0, conf, 1.0 - conf)
    return -np.log(np.clip(prob_of_outcome, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS))


def log_loss_unchecked(conf: FloatArray, corr: FloatArray) -> float:
    return float(log_loss_terms(conf, corr).mean())


def log_loss(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Mean negative log-likelihood ``-mean(y log c + (1 - y) log(1 - c))``. Lower is better.

    Range [0, inf) in principle; the probability of the observed outcome is clipped to
    ``[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]`` (float64 machine epsilon, 2.2e-16, as scikit-learn
    does), so each prediction costs at most ``-log(2.2e-16) = 36.04``. Equals
    ``sklearn.metrics.log_loss(correct, confidence, labels=[0, 1])``.
    """
    return log_loss_unchecked(*check_predictions(confidence, correct))


# --------------------------------------------------------------------------- ranking metrics


def value_blocks(conf: FloatArray, corr: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per distinct confidence value (ascending): number of predictions and number correct."""
    _, inverse = np.unique(conf, return_inverse=True)
    count = np.bincount(inverse).astype(np.float64)
    right = np.bincount(inverse, weights=corr, minlength=count.size)
    return count, right


def auroc_from_blocks(count: FloatArray, right: FloatArray) -> FloatArray:
    """AUROC of each row of per-level (count, correct) arrays; levels ascend in confidence."""
    wrong = count - right
    n_right, n_wrong = right.sum(axis=-1), wrong.sum(axis=-1)
    wrong_below = np.cumsum(wrong, axis=-1) - wrong
    wins = (right * (wrong_below + 0.5 * wrong)).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n_right > 0) & (n_wrong > 0), wins / (n_right * n_wrong), np.nan)


def auroc_unchecked(conf: FloatArray, corr: FloatArray) -> float:
    return float(auroc_from_blocks(*value_blocks(conf, corr)))


def auroc(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Area under the ROC curve of confidence as a score for ``correct``. Higher is better; [0, 1].

    ``P(c_i > c_j) + P(c_i = c_j) / 2`` for a random correct ``i`` and wrong ``j`` (the
    Mann-Whitney form; equals ``sklearn.metrics.roc_auc_score(correct, confidence)``; 0.5 is
    chance). When every answer is correct, or every answer wrong, AUROC is undefined and ``nan``
    is returned (no exception), so that one metric cannot break a table of them and bootstrap
    resamples that happen to hold one class are simply left out.
    """
    return auroc_unchecked(*check_predictions(confidence, correct))


def _harmonic(n: int) -> FloatArray:
    """``H[k] = 1 + 1/2 + ... + 1/k`` for k = 0..n (H[0] = 0)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])


def aurc_from_blocks(count: FloatArray, wrong: FloatArray, n: int) -> FloatArray:
    """AURC of each row of per-level (count, wrong) arrays; levels *descend* in confidence.

    Within a block of ``N`` tied predictions after ``K`` others with ``E`` errors, the risk at
    coverage ``K + j`` is ``(E + j e / N) / (K + j)`` (errors spread evenly through the block), and
    ``sum_j`` of it is ``e + (E - e K / N) (H[K + N] - H[K])`` with harmonic numbers ``H``.
    """
    harmonic = _harmonic(n)
    before = np.cumsum(count, axis=-1) - count
    errors_before = np.cumsum(wrong, axis=-1) - wrong
    start = np.rint(before).astype(np.int64)
    stop = np.rint(before + count).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.where(count > 0, wrong * before / count, 0.0)
    total = wrong + (errors_before - spread) * (harmonic[stop] - harmonic[start])
    return total.sum(axis=-1) / count.sum(axis=-1)


def aurc_unchecked(conf: FloatArray, corr: FloatArray) -> float:
    count, right = value_blocks(conf, corr)
    return float(aurc_from_blocks(count[::-1], (count - right)[::-1], conf.size))


def aurc(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Area under the risk-coverage curve (Geifman & El-Yaniv 2017). Lower is better; [0, 1].

    Sort by confidence, highest first; the risk at coverage ``k`` is the error rate among the
    ``k`` most confident answers, and ``AURC = (1/n) sum_{k=1..n} risk(k)``. Ties in confidence
    have no order of their own, so the result is the *expected* AURC over all orderings of tied
    predictions (inside a tied block the errors count as spread evenly); without ties this is the
    plain definition. All correct gives 0, all wrong gives 1; the best reachable value for a given
    accuracy is above 0 (E-AURC subtracts it).
    """
    return aurc_unchecked(*check_predictions(confidence, correct))


