"""Abstention with a known risk: a confidence threshold whose error rate among answered questions
is at most a target, with a stated probability.

The rule (Learn then Test, Angelopoulos et al. 2021, with fixed-sequence testing): for each
candidate threshold ``t`` (every distinct confidence of the calibration split, highest first),
answer the questions with confidence ``>= t``; the null hypothesis "the selective risk of ``t``
exceeds ``target_risk``" is tested by the exact binomial tail ``P(Binomial(n_t, target_risk) <=
e_t) <= delta`` (``n_t`` answered, ``e_t`` of them wrong; equivalently the one-sided
Clopper-Pearson upper bound on the risk is at most ``target_risk``). Thresholds are tested in
order, from the highest down, and the search stops at the first one not rejected; the lowest
rejected threshold is chosen. Thresholds that answer too few questions for any record to reject
(``(1 - target_risk)**n_t > delta``) are skipped: that depends on the confidences alone, not on
the labels.

**Guarantee.** When the calibration questions and future ones are drawn independently from the
same distribution, with probability at least ``1 - delta`` over the calibration draw, the chosen
threshold's selective risk (the error rate among answered future questions) is at most
``target_risk`` (fixed-sequence testing controls the family-wise error at ``delta`` with no
correction). It is a statement about the population risk: a finite held-out split's observed
risk scatters around it. When no threshold passes, there is no rule (``threshold`` is None and
``reason`` says why): abstaining on everything is the only answer with that guarantee.

The threshold applies to the scorer's *raw* confidence (before the recalibrator): the confidence
scorer is fixed before the calibration split is read, so the test above is exact; the
recalibrator was fitted on the same split. Its image through the recalibrator is stored beside
it for display (a monotone map keeps the same answered set).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recal.metrics.validation import check_predictions

__all__ = ["AbstentionConfig", "AbstentionRule", "binomial_cdf", "choose_threshold",
           "risk_upper_bound"]

METHOD = ("Learn then Test: fixed-sequence exact binomial tests over descending thresholds of "
          "the raw confidence (Angelopoulos et al. 2021)")


@dataclass(frozen=True)
class AbstentionConfig:
    """What the threshold must guarantee."""

    target_risk: float = 0.1
    """Largest acceptable error rate among answered questions."""
    delta: float = 0.1
    """Probability (over the calibration draw) that the guarantee may fail."""

    def __post_init__(self) -> None:
        for name in ("target_risk", "delta"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 < value < 1.0):
                raise ValueError(f"{name} must be a probability strictly between 0 and 1, got "
                                 f"{value!r}")


@dataclass(frozen=True)
class AbstentionRule:
    """A chosen threshold and what it achieved on the calibration split (and held out)."""

    target_risk: float
    delta: float
    threshold: float | None
    """Answer when the raw confidence is at least this; None: no threshold has the guarantee."""
    n_calibration: int
    calibration_answered: int
    calibration_errors: int
    risk_upper_bound: float | None
    """One-sided (1 - delta) Clopper-Pearson upper bound on the chosen threshold's risk."""
    calibrated_threshold: float | None = None
    """The threshold through the recalibrator (the served confidence's scale), for display."""
    reason: str = ""
    method: str = METHOD
    heldout: dict[str, Any] | None = None
    """``{"n", "answered", "errors", "risk", "coverage"}`` on the held-out split."""

    @property
    def calibration_coverage(self) -> float:
        return self.calibration_answered / self.n_calibration if self.n_calibration else 0.0

    @property
    def calibration_risk(self) -> float | None:
        return (self.calibration_errors / self.calibration_answered
                if self.calibration_answered else None)

    def answers(self, raw_confidence: float | None) -> bool:
        """Whether an answer of this raw confidence is given (None: never)."""
        return (self.threshold is not None and raw_confidence is not None
                and raw_confidence >= self.threshold)

    def judge(self, confidence: npt.ArrayLike, correct: npt.ArrayLike) -> AbstentionRule:
        """This rule with its held-out risk and coverage on ``(confidence, correct)``."""
        conf, corr = check_predictions(confidence, correct)
        answered = (conf >= self.threshold) if self.threshold is not None else np.zeros(
            conf.size, dtype=bool)
        k = int(answered.sum())
        errors = int((1.0 - corr[answered]).sum())
        held = {"n": int(conf.size), "answered": k, "errors": errors,
                "risk": errors / k if k else None, "coverage": k / conf.size,
                "risk_upper_bound": risk_upper_bound(errors, k, self.delta) if k else None}
        return AbstentionRule(**{**asdict(self), "heldout": held})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "calibration_risk": self.calibration_risk,
                "calibration_coverage": self.calibration_coverage}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AbstentionRule:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) <= k)``, summed exactly in log space (n up to millions)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    i = np.arange(k + 1, dtype=np.float64)
    log_terms = (math.lgamma(n + 1) - np.array([math.lgamma(x + 1) for x in i])
                 - np.array([math.lgamma(n - x + 1) for x in i])
                 + i * math.log(p) + (n - i) * math.log1p(-p))
    top = log_terms.max()
    return float(min(1.0, math.exp(top) * np.exp(log_terms - top).sum()))


def risk_upper_bound(errors: int, n: int, delta: float) -> float:
    """One-sided ``1 - delta`` Clopper-Pearson upper bound on a rate seen as ``errors`` of
    ``n``: the ``p`` with ``P(Binomial(n, p) <= errors) = delta`` (1 when ``errors == n``)."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if errors >= n:
        return 1.0
    low, high = errors / n, 1.0
    for _ in range(60):  # bisection: the tail falls as p grows
        mid = (low + high) / 2
        if binomial_cdf(errors, n, mid) > delta:
            low = mid
        else:
            high = mid
    return high


def choose_threshold(confidence: npt.ArrayLike, correct: npt.ArrayLike,
                     config: AbstentionConfig | None = None) -> AbstentionRule:
    """The abstention threshold of ``(confidence, correct)`` (the calibration split's raw
    confidences and correctness) under ``config``; see the module docstring for the rule and
    its guarantee."""
    config = config or AbstentionConfig()
    conf, corr = check_predictions(confidence, correct)
    alpha, delta = float(config.target_risk), float(config.delta)
    n = conf.size
    levels, inverse = np.unique(conf, return_inverse=True)
    count = np.bincount(inverse, minlength=levels.size)[::-1]
    wrong = np.bincount(inverse, weights=1.0 - corr, minlength=levels.size)[::-1]
    answered, errors = np.cumsum(count), np.rint(np.cumsum(wrong)).astype(np.int64)
    thresholds = levels[::-1]
    fewest = math.ceil(math.log(delta) / math.log1p(-alpha))  # below it nothing can reject
    chosen = None
    for j in range(thresholds.size):
        if answered[j] < fewest:
            continue
        if binomial_cdf(int(errors[j]), int(answered[j]), alpha) > delta:
            break
        chosen = j
    if chosen is None:
        why = (f"no threshold keeps the error rate among answered questions at most "
               f"{alpha:g} with probability {1 - delta:g}: " + (
                   f"the calibration split has {n} questions, and at least {fewest} answered "
                   "are needed" if n < fewest else
                   "even the most confident answers err too often"))
        return AbstentionRule(alpha, delta, None, n, 0, 0, None, reason=why)
    k, e = int(answered[chosen]), int(errors[chosen])
    return AbstentionRule(alpha, delta, float(thresholds[chosen]), n, k, e,
                          risk_upper_bound(e, k, delta))
