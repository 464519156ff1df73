"""Refitting the model's own sampling temperature, cheaply, by importance reweighting.

Samples drawn at temperature tau0 can stand in for samples at another temperature tau: sample s
(tokens y_1..y_n) gets the weight

    w_s(tau) = p_tau(s) / p_tau0(s),   log p_tau(s) = sum_t [ z_t / tau - logsumexp(z_all,t / tau) ]

where z_t is the logit of the sampled token and the log-sum-exp is over the whole vocabulary.
The sampler records both for a grid of tau (``SamplingConfig.tau_grid``), so no model call is
needed. The class distribution at tau is the self-normalised weighted share of each class, and
the modal class and its share follow. A tau far from tau0 puts almost all weight on a few
samples; the effective sample size ESS = (sum w)^2 / sum w^2 says how many samples the estimate
is really worth, and a tau whose median ESS falls below ``min_ess`` is refused.

Stopping at EOS or at a newline is a function of the tokens drawn, so the weights of stopped and
of truncated answers are exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from recal.confidence import Classified
from recal.metrics import brier_score, log_loss
from recal.semantic.base import Collapser

__all__ = ["ReweightedPoint", "TemperatureFit", "reweight", "reweight_all",
           "fit_sampling_temperature", "choose_temperature"]


@dataclass(frozen=True)
class ReweightedPoint:
    """One question's semantic distribution estimated at temperature ``tau``."""

    tau: float
    answer: str
    confidence: float
    ess: float
    shares: dict[str, float]


def _log_ratio(item: Classified, tau: float, tau_index: int) -> np.ndarray:
    """log p_tau(s) - log p_tau0(s) for every sample (the recorded log-probs are at tau0)."""
    rows = []
    for s in item.record.samples:
        if s.logits is None or s.lse is None:
            raise ValueError(f"question {item.question.id!r} was sampled without a temperature "
                             "grid: sample again with tau_grid set (recal fit does this)")
        z = np.asarray(s.logits, dtype=float)
        lse = np.asarray([step[tau_index] for step in s.lse], dtype=float)
        rows.append(float(np.sum(z / tau - lse) - np.sum(s.logprobs)))
    return np.asarray(rows)


def reweight(item: Classified, tau: float, tau_grid: Sequence[float]) -> ReweightedPoint:
    """The class distribution of ``item`` at temperature ``tau`` (one of ``tau_grid``)."""
    try:
        index = [round(t, 9) for t in tau_grid].index(round(tau, 9))
    except ValueError:
        raise ValueError(f"tau {tau} is not in the recorded grid {list(tau_grid)}") from None
    log_w = _log_ratio(item, tau, index)
    w = np.exp(log_w - log_w.max())
    ess = float(w.sum() ** 2 / np.square(w).sum())
    shares: dict[str, float] = {}
    for label, weight in zip(item.labels, w / w.sum(), strict=True):
        shares[label] = shares.get(label, 0.0) + float(weight)
    first_seen = {label: i for i, label in reversed(list(enumerate(item.labels)))}
    answer = min(shares, key=lambda c: (-shares[c], first_seen[c]))
    # Summed normalised weights can round to just above 1 (1.0000000000000002) when one class
    # holds them all; the metrics rightly refuse a confidence above 1.
    return ReweightedPoint(tau, answer, min(shares[answer], 1.0), ess, shares)


def reweight_all(items: Sequence[Classified], collapser: Collapser, tau: float,
                 tau_grid: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Modal-share confidence, correctness of the modal class and ESS of every item at ``tau``."""
    points = [reweight(item, tau, tau_grid) for item in items]
    conf = np.array([p.confidence for p in points], dtype=float)
    correct = np.array([collapser.is_correct(item.question, p.answer)
                        for item, p in zip(items, points, strict=True)], dtype=float)
    return conf, correct, np.array([p.ess for p in points], dtype=float)


@dataclass
class TemperatureFit:
    """The result of :func:`fit_sampling_temperature` (fitted values end in an underscore)."""

    tau0: float
    criterion: str
    table: list[dict[str, float]] = field(default_factory=list)
    """Per tau: loss, brier, log_loss, accuracy, mean confidence, median and min ESS, refused."""
    tau_: float = math.nan
    """The chosen sampling temperature."""


def fit_sampling_temperature(items: Sequence[Classified], collapser: Collapser, *,
                             tau_grid: Sequence[float], tau0: float,
                             criterion: str = "log_loss", min_ess: float = 5.0) -> TemperatureFit:
    """Choose the grid temperature whose reweighted modal-share confidences score best.

    ``criterion`` is a proper score of confidence against correctness ('log_loss' or 'brier');
    temperatures whose median effective sample size is below ``min_ess`` are refused.
    """
    _check_criterion(criterion)
    if not items:
        raise ValueError("items is empty: nothing to fit the sampling temperature on")
    return choose_temperature(lambda tau: reweight_all(items, collapser, tau, tau_grid),
                              tau_grid=tau_grid, tau0=tau0, criterion=criterion,
                              min_ess=min_ess)


def _check_criterion(criterion: str) -> None:
    if criterion not in ("log_loss", "brier"):
        raise ValueError(f"criterion must be 'log_loss' or 'brier', got {criterion!r}")


def choose_temperature(estimate: Callable[[float], tuple[np.ndarray, np.ndarray, np.ndarray]],
                       *, tau_grid: Sequence[float], tau0: float, criterion: str = "log_loss",
                       min_ess: float = 5.0) -> TemperatureFit:
    """The grid temperature whose modal-share confidences score best under ``criterion``.

    ``estimate(tau)`` gives each calibration question's (confidence, correct, effective sample
    size) at ``tau``: reweighted recorded samples (:func:`fit_sampling_temperature`), or real
    samples drawn at ``tau`` (whose ESS is their number). A temperature whose median ESS is
    below ``min_ess`` is refused; the first of equally good temperatures wins.
    """
    _check_criterion(criterion)
    fit = TemperatureFit(tau0=tau0, criterion=criterion)
    best = math.inf
    for tau in tau_grid:
        conf, correct, ess = estimate(tau)
        row = {"tau": float(tau), "log_loss": log_loss(conf, correct),
               "brier": brier_score(conf, correct), "accuracy": float(correct.mean()),
               "mean_confidence": float(conf.mean()), "median_ess": float(np.median(ess)),
               "min_ess": float(ess.min())}
        row["refused"] = float(row["median_ess"] < min_ess)
        fit.table.append(row)
        if not row["refused"] and row[criterion] < best:
            best, fit.tau_ = row[criterion], float(tau)
    if math.isnan(fit.tau_):
        raise ValueError(f"every temperature in the grid has a median effective sample size "
                         f"below {min_ess}: sample more answers per question or use a grid "
                         f"closer to the sampling temperature {tau0}")
    return fit
