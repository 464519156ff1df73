"""Bootstrap intervals for the registered metrics: :func:`bootstrap` (one metric) and
:func:`compute_all` (every metric on the same resamples), on the engine of
:mod:`recal.metrics.resampling`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recal.metrics.resampling import Resamples, build_cells, draw_counts
from recal.metrics.smooth import smooth_ece_unchecked
from recal.metrics.specs import METRICS, resolve_metric
from recal.metrics.validation import FloatArray, check_bootstrap_args, check_predictions

__all__ = ["BootstrapResult", "bootstrap", "compute_all", "percentile_bounds"]


@dataclass(frozen=True)
class BootstrapResult:
    """A metric's value on the data and its percentile bootstrap interval."""

    estimate: float  # the metric on the full data
    low: float  # lower end of the percentile interval
    high: float  # upper end of the percentile interval
    std: float  # standard deviation of the resampled values (the bootstrap standard error)
    n_resamples: int
    confidence_level: float

def percentile_bounds(values: FloatArray, level: float, axis: int | None = None) -> FloatArray:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of ``values`` (along ``axis``):
    the ends of the central ``level`` of a bootstrap distribution (Efron 1979)."""
    alpha = (1.0 - level) / 2.0
    return np.quantile(values, [alpha, 1.0 - alpha], axis=axis)


def _summarise(
    estimate: float, values: FloatArray, shift: float, n_resamples: int, level: float
) -> BootstrapResult:
    finite = values[np.isfinite(values)]
    if finite.size == 0 or not math.isfinite(estimate):
        low = high = std = math.nan
    else:
        low, high = (float(q) + shift for q in percentile_bounds(finite, level))
        std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return BootstrapResult(
        estimate=float(estimate), low=low, high=high, std=std,
        n_resamples=int(n_resamples), confidence_level=float(level),
    )


def _bootstrap_named(
    names: list[str], conf: FloatArray, corr: FloatArray, n_resamples: int, level: float,
    seed: int | None,
) -> dict[str, BootstrapResult]:
    estimates: dict[str, float] = {}
    sigma = 1.0  # smooth ECE's bandwidth on the data: where each resample's search starts
    for name in names:
        if name == "smooth_ece":
            estimates[name], sigma = smooth_ece_unchecked(conf, corr)
        else:
            estimates[name] = METRICS[name].compute(conf, corr)
    cells = build_cells(conf, corr)
    draws = draw_counts(np.random.default_rng(seed), cells.count, None, n_resamples)
    weights = np.vstack([draws, cells.count[None, :]])
    resamples = Resamples(cells, weights, sigma)
    out = {}
    for name in names:
        values = METRICS[name].batch(resamples)
        # The cells' own value differs from the estimate only when levels were quantised; shift
        # the interval by the difference so quantisation cannot move it.
        shift = estimates[name] - float(values[-1]) if math.isfinite(values[-1]) else 0.0
        out[name] = _summarise(estimates[name], values[:-1], shift, n_resamples, level)
    return out


def bootstrap(
    metric: str | Callable[..., float],
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int | None = 0,
) -> BootstrapResult:
    """Percentile bootstrap interval (Efron 1979) for one metric, resampling predictions.

    ``metric`` is a name in :data:`METRICS`, one of their functions (used with its default
    arguments), or any callable ``f(confidence, correct) -> float``.

    For the metrics in :data:`METRICS` a resample is drawn as multinomial counts over *cells*
    (level of confidence x correct; at most about 1,000 cells) and every metric is computed for
    all resamples at once from per-cell sums, with no (resamples x n) index array. When the
    confidences take at most 400 distinct values the levels are those values and the bootstrap is
    exact: the same distribution as resampling the predictions themselves. Otherwise levels are
    narrow ranges of confidence (cut at the 15 equal-width bin edges, 240 finer equal-width edges
    and 240 equal-mass positions) whose predictions move together in a resample; the interval is
    then shifted by (estimate - the metric computed from the cells of the data), so that the
    quantisation moves neither end, and its width is what is approximated (closely: the levels
    hold ~0.4% of the data each). For smooth ECE each resample gets its own bandwidth search.
    ``bootstrap(name, ..., seed=s)`` gives the same numbers as ``compute_all(..., seed=s)[name]``.

    Any other callable is evaluated on ``n_resamples`` resampled copies of the data, one at a
    time (exact, memory O(n), as slow as the callable).

    Resamples where the metric is ``nan`` (AUROC when a resample holds one class) are left out.
    Note that calibration errors are biased upward, and more so on resamples, so for a
    well-calibrated model the percentile interval can sit above the estimate.
    """
    conf, corr = check_predictions(confidence, correct)
    check_bootstrap_args(n_resamples, confidence_level)
    spec = resolve_metric(metric)
    if spec is not None:
        name = spec.name
        return _bootstrap_named([name], conf, corr, int(n_resamples), confidence_level, seed)[name]
    estimate = float(metric(conf, corr))
    rng = np.random.default_rng(seed)
    n = conf.size
    values = np.empty(n_resamples)
    for r in range(n_resamples):
        index = rng.integers(0, n, size=n)
        values[r] = metric(conf[index], corr[index])
    return _summarise(estimate, values, 0.0, int(n_resamples), confidence_level)


def compute_all(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence_level: float = 0.95,
) -> dict[str, BootstrapResult]:
    """Every metric in :data:`METRICS` with its bootstrap interval, in the order of ``METRICS``.

    All metrics share the same resamples (see :func:`bootstrap`), so the intervals of, say, ECE
    and accuracy come from the same resampled datasets.
    """
    conf, corr = check_predictions(confidence, correct)
    check_bootstrap_args(n_resamples, confidence_level)
    return _bootstrap_named(list(METRICS), conf, corr, int(n_resamples), confidence_level, seed)
