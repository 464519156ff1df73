"""Bootstrap intervals for the registered metrics: :func:`bootstrap` (one metric) and
:func:`compute_all` (every metric on the same resamples), on the engine of
:mod:`recal.metrics.resampling`.

Three interval types, named in every :class:`BootstrapResult` (``interval``):

``"percentile"``
    The central ``confidence_level`` of the resampled values (Efron 1979). Right for the proper
    scores and ranking metrics; for calibration errors it does not cover: the plug-in estimate is
    biased upward, more so on resamples, and a perfectly calibrated predictor's interval lies
    above 0 (coverage 0% in ``benchmarks/interval_coverage.py``).
``"basic"``
    The bias-corrected "basic" bootstrap ``[2 e - q_hi, 2 e - q_lo]`` clipped to the range
    (Davison & Hinkley 1997, section 5.2; the interval of Kumar et al. 2019's ``calibration``
    library). Kept for comparison: the bootstrap under-estimates the bias near 0, so it still
    misses a calibrated predictor.
``"floor"``
    The noise-floor interval, default for calibration errors (``MetricSpec.calibration_error``):
    ``[e - F, e + F]`` clipped to the range, where ``F`` is the ``confidence_level`` quantile of
    the metric over datasets of a perfectly calibrated predictor with the same confidences and
    n (consistency resampling: each answer of confidence ``c`` right with probability ``c``,
    Bröcker & Smith 2007; the floor that Błasiok & Nakkiran 2023 compare smooth ECE with).
    Why it covers: with the bins (or kernel) fixed, a calibration error is a norm of the
    per-bin gap ``conf - acc``, and ``acc`` is the true frequency plus label noise, so by the
    triangle inequality ``|estimate - truth| <= ||noise||``, whose distribution is the floor's
    (exactly so for a calibrated predictor, where the interval holds 0 with probability
    ``confidence_level`` by construction). It is conservative for miscalibrated predictors.
    Coverage is measured, not assumed: ``benchmarks/interval_coverage.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from recal.metrics.resampling import Resamples, build_cells, calibrated_draws, draw_counts
from recal.metrics.smooth import smooth_ece_unchecked
from recal.metrics.specs import METRICS, MetricSpec, resolve_metric
from recal.metrics.validation import FloatArray, check_bootstrap_args, check_predictions

__all__ = [
    "INTERVALS",
    "BootstrapResult",
    "Interval",
    "bootstrap",
    "bootstrap_intervals",
    "compute_all",
    "default_interval",
    "percentile_bounds",
    "summarise_draws",
]

Interval = Literal["percentile", "basic", "floor"]
#: The interval types, in the order of :data:`Interval`.
INTERVALS: tuple[str, ...] = get_args(Interval)


@dataclass(frozen=True)
class BootstrapResult:
    """A metric's value on the data and its bootstrap interval of type ``interval``."""

    estimate: float  # the metric on the full data
    low: float  # lower end of the interval
    high: float  # upper end of the interval
    std: float  # standard deviation of the resampled values (the bootstrap standard error)
    n_resamples: int
    confidence_level: float
    interval: str = "percentile"  # "percentile", "basic" or "floor" (see recal.metrics.intervals)
    # "floor" only: the confidence_level quantile of the metric for a perfectly calibrated
    # predictor with the same confidences and n (the noise floor); nan for other intervals.
    noise_floor: float = math.nan


def default_interval(spec: MetricSpec | None) -> str:
    """``"floor"`` for calibration errors (biased upward), ``"percentile"`` for the rest and for
    unregistered callables."""
    return "floor" if spec is not None and spec.calibration_error else "percentile"


def _check_interval(interval: str | None, spec: MetricSpec | None, name: str) -> str:
    if interval is None:
        return default_interval(spec)
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(map(repr, INTERVALS))}, got "
                         f"{interval!r}")
    if interval == "floor" and spec is not None and not spec.calibration_error:
        raise ValueError(f"interval 'floor' is for calibration errors; {name!r} is not one "
                         "(use 'percentile' or 'basic')")
    return interval


def percentile_bounds(values: FloatArray, level: float, axis: int | None = None) -> FloatArray:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of ``values`` (along ``axis``):
    the ends of the central ``level`` of a bootstrap distribution (Efron 1979)."""
    alpha = (1.0 - level) / 2.0
    return np.quantile(values, [alpha, 1.0 - alpha], axis=axis)


def summarise_draws(
    estimate: float, resampled: FloatArray, level: float, interval: str = "percentile",
    floor_values: FloatArray | None = None,
    bounds: tuple[float, float] = (-math.inf, math.inf), shift: float = 0.0,
) -> BootstrapResult:
    """The interval of type ``interval`` at ``level`` from the metric's ``estimate``, its values
    on bootstrap resamples (``resampled``, whose quantiles are moved by ``shift``) and, for
    ``"floor"``, its values on datasets of a perfectly calibrated predictor (``floor_values``);
    ends clipped to ``bounds`` (the metric's range) except for the percentile interval. ``nan``
    values are left out."""
    finite = resampled[np.isfinite(resampled)]
    floor = math.nan
    if interval == "floor" and floor_values is not None and np.isfinite(floor_values).any():
        floor = float(np.quantile(floor_values[np.isfinite(floor_values)], level))
    if finite.size == 0 or not math.isfinite(estimate) or (interval == "floor"
                                                             and math.isnan(floor)):
        low = high = std = math.nan
    else:
        low, high = (float(q) + shift for q in percentile_bounds(finite, level))
        std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
        if interval == "basic":
            low, high = 2.0 * estimate - high, 2.0 * estimate - low
        elif interval == "floor":
            low, high = estimate - floor, estimate + floor
        if interval != "percentile":
            low, high = (min(max(end, bounds[0]), bounds[1]) for end in (low, high))
    return BootstrapResult(
        estimate=float(estimate), low=low, high=high, std=std,
        n_resamples=int(resampled.size), confidence_level=float(level), interval=interval,
        noise_floor=floor,
    )


def _bootstrap_named(
    intervals: dict[str, tuple[str, ...]], conf: FloatArray, corr: FloatArray, n_resamples: int,
    level: float, seed: int | None,
) -> dict[str, dict[str, BootstrapResult]]:
    """``intervals`` maps each metric name to its interval types. The bootstrap counts are drawn
    first and the calibrated datasets (for "floor") after them, from one generator, so a seed
    gives the same resamples whichever intervals are asked for."""
    estimates: dict[str, float] = {}
    sigma = 1.0  # smooth ECE's bandwidth on the data: where each resample's search starts
    for name in intervals:
        if name == "smooth_ece":
            estimates[name], sigma = smooth_ece_unchecked(conf, corr)
        else:
            estimates[name] = METRICS[name].compute(conf, corr)
    cells = build_cells(conf, corr)
    rng = np.random.default_rng(seed)
    draws = draw_counts(rng, cells.count, None, n_resamples)
    weights = np.vstack([draws, cells.count[None, :]])
    resamples = Resamples(cells, weights, sigma)
    floor_rows = None
    if any("floor" in kinds for kinds in intervals.values()):
        both, floor_weights = calibrated_draws(cells, rng, n_resamples)
        floor_sigma = sigma
        if "smooth_ece" in intervals:
            # Calibrated datasets have smaller bandwidths than the data: start their searches at
            # the first one's (only where the searches start, so only their speed, changes).
            counts = floor_weights[0].astype(np.int64)
            floor_sigma = smooth_ece_unchecked(np.repeat(both.conf_mean, counts),
                                               np.repeat(both.right, counts))[1]
        floor_rows = Resamples(both, floor_weights, floor_sigma)
    out = {}
    for name, kinds in intervals.items():
        spec = METRICS[name]
        values = spec.batch(resamples)
        # The cells' own value differs from the estimate only when levels were quantised; shift
        # the interval by the difference so quantisation cannot move it.
        shift = estimates[name] - float(values[-1]) if math.isfinite(values[-1]) else 0.0
        floor_values = None
        if "floor" in kinds and floor_rows is not None:
            floor_values = spec.batch(floor_rows)
        out[name] = {
            kind: summarise_draws(estimates[name], values[:-1], level, kind, floor_values,
                                  spec.range, shift)
            for kind in kinds
        }
    return out


def bootstrap(
    metric: str | Callable[..., float],
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int | None = 0,
    interval: Interval | None = None,
) -> BootstrapResult:
    """Bootstrap interval for one metric, resampling predictions.

    ``metric`` is a name in :data:`METRICS`, one of their functions (used with its default
    arguments), or any callable ``f(confidence, correct) -> float``. ``interval`` is
    ``"percentile"``, ``"basic"`` or ``"floor"`` (see :mod:`recal.metrics.intervals`); ``None``
    takes :func:`default_interval`: the noise-floor interval for calibration errors (the
    percentile interval does not cover them), the percentile interval otherwise. ``"floor"`` is
    refused for registered metrics that are not calibration errors; for a callable it is the
    caller's claim that the callable is one.

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
    Calibration errors are biased upward, and more so on resamples, so for a well-calibrated
    model the percentile interval can sit above the estimate (and above the truth).
    """
    conf, corr = check_predictions(confidence, correct)
    check_bootstrap_args(n_resamples, confidence_level)
    spec = resolve_metric(metric)
    kind = _check_interval(interval, spec, spec.name if spec else "metric")
    if spec is not None:
        return _bootstrap_named({spec.name: (kind,)}, conf, corr, int(n_resamples),
                                confidence_level, seed)[spec.name][kind]
    estimate = float(metric(conf, corr))
    rng = np.random.default_rng(seed)
    n = conf.size
    values = np.empty(n_resamples)
    for r in range(n_resamples):
        index = rng.integers(0, n, size=n)
        values[r] = metric(conf[index], corr[index])
    floor_values = None
    if kind == "floor":
        floor_values = np.array([float(metric(conf, (rng.uniform(size=n) < conf).astype(float)))
                                 for _ in range(n_resamples)])
    return summarise_draws(estimate, values, confidence_level, kind, floor_values)


def compute_all(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence_level: float = 0.95,
    interval: Interval | None = None,
) -> dict[str, BootstrapResult]:
    """Every metric in :data:`METRICS` with its bootstrap interval, in the order of ``METRICS``.

    All metrics share the same resamples (see :func:`bootstrap`), so the intervals of, say, ECE
    and accuracy come from the same resampled datasets. ``interval=None`` gives each metric its
    :func:`default_interval` (noise floor for calibration errors, percentile for the rest);
    ``"percentile"`` or ``"basic"`` applies to every metric; ``"floor"`` to the calibration
    errors, the rest keeping the percentile interval. Each result records its ``interval``.
    """
    conf, corr = check_predictions(confidence, correct)
    check_bootstrap_args(n_resamples, confidence_level)
    if interval is not None:
        _check_interval(interval, None, "metric")
    kinds = {
        name: default_interval(spec) if interval is None or (
            interval == "floor" and not spec.calibration_error) else interval
        for name, spec in METRICS.items()
    }
    results = _bootstrap_named({name: (kind,) for name, kind in kinds.items()}, conf, corr,
                               int(n_resamples), confidence_level, seed)
    return {name: results[name][kind] for name, kind in kinds.items()}


def bootstrap_intervals(
    metric: str,
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int | None = 0,
) -> dict[str, BootstrapResult]:
    """Every interval type that suits the registered ``metric`` (all of :data:`INTERVALS` for a
    calibration error; percentile and basic otherwise), from the same resamples: the numbers
    :func:`bootstrap` gives for each ``interval`` with the same seed."""
    conf, corr = check_predictions(confidence, correct)
    check_bootstrap_args(n_resamples, confidence_level)
    spec = resolve_metric(metric)
    if spec is None:
        raise ValueError(f"metric must be a registered name, got {metric!r}")
    kinds = tuple(k for k in INTERVALS if k != "floor" or spec.calibration_error)
    return _bootstrap_named({spec.name: kinds}, conf, corr, int(n_resamples), confidence_level,
                            seed)[spec.name]
