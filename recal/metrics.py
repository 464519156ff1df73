"""Calibration metrics on ``(confidence, correct)`` arrays, and fast bootstrap intervals for them.

Every metric takes two 1-D arrays of the same length: ``confidence[i]`` in [0, 1] is the model's
stated probability that its answer to question ``i`` is right, and ``correct[i]`` (bool, or 0/1)
says whether it was. Public functions check their input and raise ``ValueError`` naming the
argument; the private ``_..._compute`` versions skip the checks, for loops that have checked once
already.

Which way is better and the range of each metric are recorded in :data:`METRICS`:

==================  ==========  ============  ===============================================
name                better      range         what
==================  ==========  ============  ===============================================
smooth_ece          lower       [0, 1]        smooth ECE, Błasiok & Nakkiran 2023
ece                 lower       [0, 1]        binned ECE, 15 equal-width bins (as netcal)
ece_mass            lower       [0, 1]        binned ECE, 15 equal-mass bins
mce                 lower       [0, 1]        max calibration error, 15 equal-width bins
debiased_ece        lower       [0, 1]        debiased l2 calibration error, Kumar et al. 2019
brier_score         lower       [0, 1]        mean squared error of the confidence
log_loss            lower       [0, inf)      mean negative log-likelihood of ``correct``
auroc               higher      [0, 1]        how well confidence separates right from wrong
aurc                lower       [0, 1]        area under the risk-coverage curve
accuracy            higher      [0, 1]        fraction correct
mean_confidence     neither     [0, 1]        average confidence
==================  ==========  ============  ===============================================

:func:`bootstrap` and :func:`compute_all` give percentile intervals over 1,000 resamples of 100,000
predictions in well under a second: rather than materialising a (resamples x n) index array, each
resample is a multinomial count vector over a few hundred *cells* (confidence level x correct), and
every metric is computed for all resamples at once from per-cell sums (see :func:`bootstrap`).

Only numpy is imported.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "LOG_LOSS_EPS",
    "METRICS",
    "BootstrapResult",
    "MetricInfo",
    "SmoothCurve",
    "accuracy",
    "aurc",
    "auroc",
    "binned_ece",
    "bootstrap",
    "brier_score",
    "compute_all",
    "debiased_ece",
    "log_loss",
    "mce",
    "mean_confidence",
    "smooth_calibration_curve",
    "smooth_ece",
]

FloatArray = npt.NDArray[np.float64]
Binning = Literal["width", "mass"]

#: Probabilities are clipped to [eps, 1 - eps] before the log, eps = float64 machine epsilon
#: (what scikit-learn's ``log_loss`` does), so one confident wrong answer costs at most ~36.04.
LOG_LOSS_EPS: float = float(np.finfo(np.float64).eps)

# relplot's constants (relplot/metrics.py, relplot/kernels.py, relplot/config.py).
_SMECE_SEARCH_FLOOR = 1e-3  # bandwidths below this always satisfy the search predicate
_SMECE_SEARCH_STEPS = 10  # bisection steps: the bandwidth is a multiple of 2**-10
_SMECE_DENSITY_EPS = 1e-4  # added to the smoothed count before dividing
_SMECE_MIN_EVAL_POINTS = 200
_SMOOTH_GRID_MIN = 2000
_DYADIC = 2**_SMECE_SEARCH_STEPS

_DEFAULT_BINS = 15


# --------------------------------------------------------------------------- input checks


def _describe(values: np.ndarray, bad: np.ndarray) -> str:
    first = int(np.flatnonzero(bad)[0])
    return f"(first: {float(values[first])!r} at index {first})"


def _as_1d(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} could not be read as an array of numbers: {err}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got an array of dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {array.shape}")
    return array.astype(np.float64, copy=False)


def _check(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """The two arrays as float64, checked; a ``ValueError`` names the bad one."""
    conf = _as_1d(confidence, "confidence")
    corr = _as_1d(correct, "correct")
    if conf.size != corr.size:
        raise ValueError(
            f"confidence and correct must have the same length, got {conf.size} and {corr.size}"
        )
    if conf.size == 0:
        raise ValueError("confidence and correct are empty; need at least one prediction")
    bad = ~np.isfinite(conf)
    if bad.any():
        raise ValueError(
            f"confidence has {int(bad.sum())} non-finite values {_describe(conf, bad)}"
        )
    bad = (conf < 0.0) | (conf > 1.0)
    if bad.any():
        raise ValueError(
            f"confidence has {int(bad.sum())} values outside [0, 1] {_describe(conf, bad)}"
        )
    bad = (corr != 0.0) & (corr != 1.0)
    if bad.any():
        raise ValueError(
            f"correct must be binary (bool, or 0/1), but has {int(bad.sum())} other values "
            f"{_describe(corr, bad)}"
        )
    return conf, corr


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


def _check_binning(binning: str) -> None:
    if binning not in ("width", "mass"):
        raise ValueError(f"binning must be 'width' or 'mass', got {binning!r}")


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means: its function, which direction is better, and its range."""

    name: str
    function: Callable[[npt.ArrayLike, npt.ArrayLike], float]
    higher_is_better: bool | None  # None: descriptive only (e.g. mean confidence)
    range: tuple[float, float]
    description: str


@dataclass(frozen=True)
class BootstrapResult:
    """A metric's value on the data and its percentile bootstrap interval."""

    estimate: float  # the metric on the full data
    low: float  # lower end of the percentile interval
    high: float  # upper end of the percentile interval
    std: float  # standard deviation of the resampled values (the bootstrap standard error)
    n_resamples: int
    confidence_level: float


@dataclass(frozen=True, eq=False)
class SmoothCurve:
    """A smoothed reliability diagram (compute only; draw it with any plotting library)."""

    grid: FloatArray  # evaluation points in [0, 1]
    accuracy: FloatArray  # kernel-smoothed mean of ``correct`` at each grid point
    density: FloatArray  # reflected-Gaussian density of ``confidence`` (integrates to ~1)
    bandwidth: float  # the kernel's sigma
    smooth_ece: float  # smooth ECE at this bandwidth


# --------------------------------------------------------------------------- simple averages


def _accuracy_compute(conf: FloatArray, corr: FloatArray) -> float:
    return float(corr.mean())


def accuracy(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Fraction of correct answers, ``mean(correct)``. Higher is better; range [0, 1]."""
    return _accuracy_compute(*_check(confidence, correct))


def _mean_confidence_compute(conf: FloatArray, corr: FloatArray) -> float:
    return float(conf.mean())


def mean_confidence(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Average confidence, ``mean(confidence)``. Descriptive (neither direction is better).

    Compared with :func:`accuracy` it says whether the model is over- (larger) or under-confident
    on average; range [0, 1].
    """
    return _mean_confidence_compute(*_check(confidence, correct))


def _brier_terms(conf: FloatArray, corr: FloatArray) -> FloatArray:
    return (conf - corr) ** 2


def _brier_compute(conf: FloatArray, corr: FloatArray) -> float:
    return float(_brier_terms(conf, corr).mean())


def brier_score(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Brier score ``mean((confidence - correct)**2)`` (Brier 1950). Lower is better; range [0, 1].

    Equals ``sklearn.metrics.brier_score_loss(correct, confidence)``.
    """
    return _brier_compute(*_check(confidence, correct))


def _log_loss_terms(conf: FloatArray, corr: FloatArray) -> FloatArray:
    prob_of_outcome = np.where(corr == 1.0, conf, 1.0 - conf)
    return -np.log(np.clip(prob_of_outcome, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS))


def _log_loss_compute(conf: FloatArray, corr: FloatArray) -> float:
    return float(_log_loss_terms(conf, corr).mean())


def log_loss(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Mean negative log-likelihood ``-mean(y log c + (1 - y) log(1 - c))``. Lower is better.

    Range [0, inf) in principle; the probability of the observed outcome is clipped to
    ``[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]`` (float64 machine epsilon, 2.2e-16, as scikit-learn
    does), so each prediction costs at most ``-log(2.2e-16) = 36.04``. Equals
    ``sklearn.metrics.log_loss(correct, confidence, labels=[0, 1])``.
    """
    return _log_loss_compute(*_check(confidence, correct))


# --------------------------------------------------------------------------- ranking metrics


def _value_blocks(conf: FloatArray, corr: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per distinct confidence value (ascending): number of predictions and number correct."""
    _, inverse = np.unique(conf, return_inverse=True)
    count = np.bincount(inverse).astype(np.float64)
    right = np.bincount(inverse, weights=corr, minlength=count.size)
    return count, right


def _auroc_from_blocks(count: FloatArray, right: FloatArray) -> FloatArray:
    """AUROC of each row of per-level (count, correct) arrays; levels ascend in confidence."""
    wrong = count - right
    n_right, n_wrong = right.sum(axis=-1), wrong.sum(axis=-1)
    wrong_below = np.cumsum(wrong, axis=-1) - wrong
    wins = (right * (wrong_below + 0.5 * wrong)).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n_right > 0) & (n_wrong > 0), wins / (n_right * n_wrong), np.nan)


def _auroc_compute(conf: FloatArray, corr: FloatArray) -> float:
    return float(_auroc_from_blocks(*_value_blocks(conf, corr)))


def auroc(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Area under the ROC curve of confidence as a score for ``correct``. Higher is better; [0, 1].

    ``P(c_i > c_j) + P(c_i = c_j) / 2`` for a random correct ``i`` and wrong ``j`` (the
    Mann-Whitney form; equals ``sklearn.metrics.roc_auc_score(correct, confidence)``; 0.5 is
    chance). When every answer is correct, or every answer wrong, AUROC is undefined and ``nan``
    is returned (no exception), so that one metric cannot break a table of them and bootstrap
    resamples that happen to hold one class are simply left out.
    """
    return _auroc_compute(*_check(confidence, correct))


def _harmonic(n: int) -> FloatArray:
    """``H[k] = 1 + 1/2 + ... + 1/k`` for k = 0..n (H[0] = 0)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])


def _aurc_from_blocks(count: FloatArray, wrong: FloatArray, n: int) -> FloatArray:
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


def _aurc_compute(conf: FloatArray, corr: FloatArray) -> float:
    count, right = _value_blocks(conf, corr)
    return float(_aurc_from_blocks(count[::-1], (count - right)[::-1], conf.size))


def aurc(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Area under the risk-coverage curve (Geifman & El-Yaniv 2017). Lower is better; [0, 1].

    Sort by confidence, highest first; the risk at coverage ``k`` is the error rate among the
    ``k`` most confident answers, and ``AURC = (1/n) sum_{k=1..n} risk(k)``. Ties in confidence
    have no order of their own, so the result is the *expected* AURC over all orderings of tied
    predictions (inside a tied block the errors count as spread evenly); without ties this is the
    plain definition. All correct gives 0, all wrong gives 1; the best reachable value for a given
    accuracy is above 0 (E-AURC subtracts it).
    """
    return _aurc_compute(*_check(confidence, correct))


# --------------------------------------------------------------------------- binned metrics


def _width_bin_index(conf: FloatArray, n_bins: int) -> npt.NDArray[np.int64]:
    # netcal: edges np.linspace(0, 1, n_bins + 1), bins [e_k, e_{k+1}) found with a right-sided
    # search, and confidences clipped into (0, 1) so that 0 and 1 land in the end bins.
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)


def _width_bin_sums(
    conf: FloatArray, corr: FloatArray, n_bins: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    index = _width_bin_index(conf, n_bins)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    right = np.bincount(index, weights=corr, minlength=n_bins)
    return count, conf_sum, right


def _mass_split_positions(n: int, n_bins: int) -> npt.NDArray[np.int64]:
    """Where ``np.array_split(sorted, n_bins)`` cuts: the first index of groups 2..B."""
    groups = min(n_bins, n)
    size, extra = divmod(n, groups)
    sizes = np.full(groups, size, dtype=np.int64)
    sizes[:extra] += 1
    return np.cumsum(sizes)[:-1]


def _mass_bounds(sorted_conf: FloatArray, n_bins: int) -> npt.NDArray[np.int64]:
    """Equal-mass bin boundaries (positions in sorted order, from 0 to n) as in Kumar et al.

    Their ``get_equal_bins``: split the sorted confidences into ``n_bins`` groups of (nearly)
    equal size, put an edge halfway between neighbouring groups, and bin each value into
    ``(e_{k-1}, e_k]``; tied values therefore never straddle an edge.
    """
    n = sorted_conf.size
    cut = _mass_split_positions(n, n_bins)
    edges = (sorted_conf[cut - 1] + sorted_conf[cut]) / 2.0
    inner = np.searchsorted(sorted_conf, edges, side="right")
    return np.concatenate([[0], inner, [n]])


def _mass_bin_sums(
    conf: FloatArray, corr: FloatArray, n_bins: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    order = np.argsort(conf, kind="stable")
    sorted_conf, sorted_corr = conf[order], corr[order]
    bounds = _mass_bounds(sorted_conf, n_bins)
    conf_cum = np.concatenate([[0.0], np.cumsum(sorted_conf)])
    corr_cum = np.concatenate([[0.0], np.cumsum(sorted_corr)])
    return (
        np.diff(bounds).astype(np.float64),
        np.diff(conf_cum[bounds]),
        np.diff(corr_cum[bounds]),
    )


def _ece_from_sums(
    count: FloatArray, conf_sum: FloatArray, right: FloatArray, p: float
) -> FloatArray:
    """``(sum_b n_b/n |conf_b - acc_b|^p)^(1/p)`` over the last axis (bins); empty bins drop out."""
    n = count.sum(axis=-1)
    gap_sum = np.abs(conf_sum - right)
    if p == 1:
        return gap_sum.sum(axis=-1) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(count > 0, gap_sum / count, 0.0)
    if math.isinf(p):
        return gap.max(axis=-1)
    return ((count * gap**p).sum(axis=-1) / n) ** (1.0 / p)


def _debiased_from_sums(
    count: FloatArray, conf_sum: FloatArray, right: FloatArray, squared: bool
) -> FloatArray:
    """Kumar et al.'s per-bin debiased squared error, weighted by bin mass (bins < 2 count 0)."""
    n = count.sum(axis=-1)
    usable = count >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(usable, right / count, 0.0)
        gap = np.where(usable, (conf_sum - right) / count, 0.0)
        noise = np.where(usable, acc * (1.0 - acc) / (count - 1.0), 0.0)
    value = (count * (gap**2 - noise)).sum(axis=-1) / n
    return value if squared else np.sqrt(np.maximum(value, 0.0))


def _bin_sums(
    conf: FloatArray, corr: FloatArray, n_bins: int, binning: Binning
) -> tuple[FloatArray, FloatArray, FloatArray]:
    if binning == "width":
        return _width_bin_sums(conf, corr, n_bins)
    return _mass_bin_sums(conf, corr, n_bins)


def _binned_ece_compute(
    conf: FloatArray, corr: FloatArray, n_bins: int = _DEFAULT_BINS,
    binning: Binning = "width", p: float = 1,
) -> float:
    return float(_ece_from_sums(*_bin_sums(conf, corr, n_bins, binning), p))


def binned_ece(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_bins: int = _DEFAULT_BINS,
    binning: Binning = "width",
    p: float = 1,
) -> float:
    """Binned expected calibration error (Naeini et al. 2015; Guo et al. 2017).

    ``ECE_p = (sum_b (n_b / n) |conf_b - acc_b|^p)^(1/p)``, where ``conf_b`` and ``acc_b`` are the
    mean confidence and accuracy of the ``n_b`` predictions in bin ``b``; empty bins drop out.
    Lower is better; range [0, 1]. ``p=1`` is the usual ECE, ``p=2`` the (biased, plug-in) l2
    calibration error, ``p=inf`` the maximum over non-empty bins (:func:`mce`).

    ``binning="width"``: ``n_bins`` bins of equal width, ``[k/B, (k+1)/B)`` with 1.0 in the last
    bin, exactly as ``netcal.metrics.ECE(n_bins)``. ``binning="mass"``: bins holding equal numbers
    of predictions, with edges placed as in Kumar et al.'s ``get_equal_bins`` (halfway between
    neighbouring groups of the sorted confidences, so tied values share a bin; fewer than
    ``n_bins`` bins when there are fewer predictions).
    """
    conf, corr = _check(confidence, correct)
    _check_n_bins(n_bins)
    _check_binning(binning)
    if not (isinstance(p, int | float) and p >= 1):
        raise ValueError(f"p must be a number >= 1 (or math.inf), got {p!r}")
    return _binned_ece_compute(conf, corr, n_bins, binning, p)


def _mce_compute(
    conf: FloatArray, corr: FloatArray, n_bins: int = _DEFAULT_BINS, binning: Binning = "width"
) -> float:
    return float(_ece_from_sums(*_bin_sums(conf, corr, n_bins, binning), math.inf))


def mce(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_bins: int = _DEFAULT_BINS,
    binning: Binning = "width",
) -> float:
    """Maximum calibration error ``max_b |conf_b - acc_b|`` over non-empty bins (Naeini et al.).

    Lower is better; range [0, 1]. Bins as in :func:`binned_ece`; with equal-width bins this
    equals ``netcal.metrics.MCE(n_bins)``. Noisy: one sparse bin decides it.
    """
    conf, corr = _check(confidence, correct)
    _check_n_bins(n_bins)
    _check_binning(binning)
    return _mce_compute(conf, corr, n_bins, binning)


def _debiased_ece_compute(
    conf: FloatArray, corr: FloatArray, n_bins: int = _DEFAULT_BINS, squared: bool = False
) -> float:
    return float(_debiased_from_sums(*_mass_bin_sums(conf, corr, n_bins), squared))


def debiased_ece(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_bins: int = _DEFAULT_BINS,
    squared: bool = False,
) -> float:
    """Debiased l2 calibration error (Kumar, Liang & Ma 2019, "Verified Uncertainty Calibration").

    With equal-mass bins (as ``binning="mass"`` in :func:`binned_ece`), the plug-in squared error
    ``(conf_b - acc_b)^2`` of each bin overestimates the truth by about the variance of ``acc_b``;
    the debiased estimate of the squared l2 calibration error is::

        CE^2 = sum_b (n_b / n) [ (conf_b - acc_b)^2 - acc_b (1 - acc_b) / (n_b - 1) ]

    with bins of fewer than two predictions counting 0. Returned by default is the l2
    calibration error itself, ``sqrt(max(CE^2, 0))``, in the same units as the ECE (this is
    ``calibration.get_calibration_error(..., p=2, debias=True)`` of their library, with
    ``n_bins`` equal-mass bins); ``squared=True`` returns ``CE^2`` unclipped, which is unbiased
    and so can be slightly negative for a well-calibrated model. Lower is better; range [0, 1].
    """
    conf, corr = _check(confidence, correct)
    _check_n_bins(n_bins)
    return _debiased_ece_compute(conf, corr, n_bins, bool(squared))


# --------------------------------------------------------------------------- smooth ECE


def _grid_size(sigma: float) -> int:
    # relplot: GaussianKernel.apply uses eval_points = max(2000, round(20 / sigma)) // 2 + 1.
    return max(_SMOOTH_GRID_MIN, round(20 / sigma)) // 2 + 1


def _eval_size(sigma: float) -> int:
    # relplot.metrics.smooth_ece: max(round(10 / sigma), 200) evaluation points.
    return max(round(10 / sigma), _SMECE_MIN_EVAL_POINTS)


def _kernel_values(sigma: float, size: int) -> FloatArray:
    t = np.linspace(0.0, 1.0, size)
    return np.exp(-((t - 0.5) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)


def _grid_position(x: FloatArray, size: int) -> tuple[npt.NDArray[np.int64], FloatArray]:
    pos = x * (size - 1)
    lower = pos.astype(np.int64).clip(0, size - 2)
    return lower, pos - lower


def _linear_bin(x: FloatArray, weights: FloatArray, size: int) -> FloatArray:
    """Spread each weight over the two nearest of ``size`` grid points (relplot's rounding)."""
    lower, frac = _grid_position(x, size)
    return np.bincount(lower, (1.0 - frac) * weights, minlength=size) + np.bincount(
        lower + 1, frac * weights, minlength=size
    )


def _reflect_smooth(values: FloatArray, sigma: float) -> FloatArray:
    """relplot's ``ReflectedGaussianKernel.convolve`` for each row, by FFT instead of np.convolve.

    The row is mirrored about both ends of [0, 1], convolved with the Gaussian sampled on the same
    grid (truncated at +-1/2), and the middle kept.
    """
    size = values.shape[-1]
    ext = np.concatenate([values[..., ::-1][..., :-1], values, values[..., ::-1][..., 1:]], -1)
    full = ext.shape[-1] + size - 1
    nfft = 1 << (full - 1).bit_length()
    spectrum = np.fft.rfft(ext, nfft) * np.fft.rfft(_kernel_values(sigma, size), nfft)
    start = size - 1 + size // 2
    return np.fft.irfft(spectrum, nfft)[..., start : start + size]


def _interpolate(t: FloatArray, values: FloatArray) -> FloatArray:
    """relplot's ``interpolate``: linear interpolation of a function sampled on a uniform grid."""
    size = values.shape[-1]
    step = 1 / (size - 1)
    index = (t * (size - 1)).astype(np.int64).clip(0, size - 2)
    frac = (t - index * step) / step
    return values[..., index] * (1 - frac) + values[..., index + 1] * frac


class _SmoothData:
    """Per-point data binned once per grid size, for evaluating smooth ECE at many bandwidths."""

    def __init__(self, conf: FloatArray, weights: FloatArray) -> None:
        self.conf = conf
        self.weights = weights  # rows: the quantities to smooth
        self._binned: dict[int, FloatArray] = {}

    def smoothed(self, sigma: float, t: FloatArray) -> FloatArray:
        size = _grid_size(sigma)
        if size not in self._binned:
            self._binned[size] = np.stack([_linear_bin(self.conf, w, size) for w in self.weights])
        return _interpolate(t, _reflect_smooth(self._binned[size], sigma))


def _smece_at(data: _SmoothData, sigma: float) -> float:
    """relplot.metrics.smooth_ece: rows of ``data`` are the residuals and ones."""
    t = np.linspace(0.0, 1.0, _eval_size(sigma))
    residual, count = data.smoothed(sigma, t)
    density = count + _SMECE_DENSITY_EPS
    return float(np.sum(np.abs(residual / density) * density) / np.sum(density))


def _bandwidth_search(predicate: Callable[[float], bool]) -> float:
    """relplot.metrics.search_param: bisection for the smallest dyadic sigma failing the test."""
    if predicate(1.0):
        return 1.0
    start, end = 1.0, 0.0
    for _ in range(_SMECE_SEARCH_STEPS):
        mid = (start + end) / 2
        if predicate(mid):
            end = mid
        else:
            start = mid
    return start


def _smooth_ece_compute(
    conf: FloatArray, corr: FloatArray, bandwidth: float | None = None
) -> tuple[float, float]:
    """(smooth ECE, bandwidth)."""
    data = _SmoothData(conf, np.stack([conf - corr, np.ones_like(conf)]))
    cache: dict[float, float] = {}

    def value(sigma: float) -> float:
        if sigma not in cache:
            cache[sigma] = _smece_at(data, sigma)
        return cache[sigma]

    if bandwidth is None:
        bandwidth = _bandwidth_search(
            lambda a: a < _SMECE_SEARCH_FLOOR or a < value(a)
        )
    return value(bandwidth), float(bandwidth)


def _check_bandwidth(bandwidth: float | None) -> None:
    if bandwidth is None:
        return
    if not (isinstance(bandwidth, int | float) and math.isfinite(bandwidth) and bandwidth >= 1e-4):
        raise ValueError(f"bandwidth must be None or a number >= 0.0001, got {bandwidth!r}")


def smooth_ece(
    confidence: npt.ArrayLike, correct: npt.ArrayLike, bandwidth: float | None = None
) -> float:
    """Smooth ECE of Błasiok & Nakkiran (2023), "Smooth ECE: Principled Reliability Diagrams via
    Kernel Smoothing". Lower is better; range [0, 1].

    With a Gaussian kernel ``K_s`` reflected at 0 and 1, the residual ``r(t)`` is the
    kernel-weighted mean of ``confidence - correct`` near ``t`` and ``d(t)`` the kernel density of
    the confidences; ``smECE_s = integral |r(t)| d(t) dt``. Without ``bandwidth`` the bandwidth is
    the fixed point ``s = smECE_s``, found by bisection to a multiple of 2**-10 (floor 0.001), as
    the paper prescribes. Computed as the authors' ``relplot.smECE`` computes it (linear binning
    on a grid of ``max(2000, 20/s) // 2 + 1`` points, discrete convolution, a Riemann sum over
    ``max(200, 10/s)`` points) and agrees with it to rounding, but bins with ``np.bincount`` and
    convolves by FFT, so 100,000 predictions take milliseconds.
    """
    conf, corr = _check(confidence, correct)
    _check_bandwidth(bandwidth)
    return _smooth_ece_compute(conf, corr, bandwidth)[0]


def smooth_calibration_curve(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    bandwidth: float | None = None,
    grid_size: int = 200,
) -> SmoothCurve:
    """The smoothed reliability diagram behind :func:`smooth_ece` (relplot's
    ``prepare_rel_diagram`` without bootstrap bands), on ``grid_size`` points of [0, 1].

    ``accuracy[k]`` is the kernel-weighted mean of ``correct`` around ``grid[k]`` (Nadaraya-Watson
    with relplot's reflected Gaussian; meaningless where ``density`` is near 0) and ``density`` the
    kernel density of the confidences. ``bandwidth=None`` uses smooth ECE's own bandwidth.
    """
    conf, corr = _check(confidence, correct)
    _check_bandwidth(bandwidth)
    if isinstance(grid_size, bool) or not isinstance(grid_size, int | np.integer) or grid_size < 2:
        raise ValueError(f"grid_size must be an integer >= 2, got {grid_size!r}")
    value, sigma = _smooth_ece_compute(conf, corr, bandwidth)
    grid = np.linspace(0.0, 1.0, int(grid_size))
    right, count = _SmoothData(conf, np.stack([corr, np.ones_like(conf)])).smoothed(sigma, grid)
    return SmoothCurve(
        grid=grid,
        accuracy=right / (count + _SMECE_DENSITY_EPS),
        density=count / conf.size,
        bandwidth=sigma,
        smooth_ece=value,
    )


# --------------------------------------------------------------------------- registry


def _ece_mass(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Binned ECE with 15 equal-mass bins (:func:`binned_ece` with ``binning="mass"``)."""
    return binned_ece(confidence, correct, binning="mass")


METRICS: Mapping[str, MetricInfo] = MappingProxyType(
    {
        info.name: info
        for info in (
            MetricInfo("smooth_ece", smooth_ece, False, (0.0, 1.0),
                       "smooth ECE with its automatic bandwidth (Błasiok & Nakkiran 2023)"),
            MetricInfo("ece", binned_ece, False, (0.0, 1.0),
                       "binned ECE, 15 equal-width bins (netcal's ECE)"),
            MetricInfo("ece_mass", _ece_mass, False, (0.0, 1.0),
                       "binned ECE, 15 equal-mass bins"),
            MetricInfo("mce", mce, False, (0.0, 1.0),
                       "maximum calibration error over 15 equal-width bins"),
            MetricInfo("debiased_ece", debiased_ece, False, (0.0, 1.0),
                       "debiased l2 calibration error, 15 equal-mass bins (Kumar et al. 2019)"),
            MetricInfo("brier_score", brier_score, False, (0.0, 1.0),
                       "mean squared difference between confidence and correctness"),
            MetricInfo("log_loss", log_loss, False, (0.0, math.inf),
                       "mean negative log-likelihood of correctness under the confidence"),
            MetricInfo("auroc", auroc, True, (0.0, 1.0),
                       "how well confidence ranks right answers above wrong ones (nan: 1 class)"),
            MetricInfo("aurc", aurc, False, (0.0, 1.0),
                       "area under the risk-coverage curve (Geifman & El-Yaniv 2017)"),
            MetricInfo("accuracy", accuracy, True, (0.0, 1.0), "fraction of correct answers"),
            MetricInfo("mean_confidence", mean_confidence, None, (0.0, 1.0),
                       "average confidence (compare with accuracy)"),
        )
    }
)


# --------------------------------------------------------------------------- bootstrap

# Above this many distinct confidences, the cells quantise: levels are cut at every equal-width
# bin edge of netcal's 15 bins, at _WIDTH_LEVELS equal-width edges and at _MASS_LEVELS
# equal-mass positions, so each level is narrow in confidence *and* holds few predictions.
_MAX_EXACT_LEVELS = 400
_WIDTH_LEVELS = 240
_MASS_LEVELS = 240


@dataclass(frozen=True, eq=False)
class _Cells:
    """The data summarised as cells (confidence level x correct), sorted by level then correct.

    ``exact`` is True when each level is one distinct confidence value; otherwise a level is a
    narrow range of confidences, represented by the members' means.
    """

    n: int
    exact: bool
    count: FloatArray  # per cell
    right: FloatArray  # per cell: 1.0 for the correct cell of a level, else 0.0
    conf_mean: FloatArray  # per cell
    brier_mean: FloatArray  # per cell
    log_loss_mean: FloatArray  # per cell
    level_start: npt.NDArray[np.int64]  # first cell of each level
    level_min: FloatArray  # smallest confidence in each level
    level_conf: FloatArray  # mean confidence of each level


def _build_cells(conf: FloatArray, corr: FloatArray) -> _Cells:
    order = np.argsort(conf, kind="stable")
    s, ys = conf[order], corr[order]
    n = s.size
    value_starts = np.concatenate([[0], np.flatnonzero(s[1:] != s[:-1]) + 1])
    exact = value_starts.size <= _MAX_EXACT_LEVELS
    if exact:
        starts = value_starts
    else:
        mass = (np.arange(1, _MASS_LEVELS) * n) // _MASS_LEVELS
        mass = np.searchsorted(s, s[mass], side="left")  # never split tied values
        edges = np.concatenate(
            [np.linspace(0, 1, _DEFAULT_BINS + 1)[1:-1], np.linspace(0, 1, _WIDTH_LEVELS + 1)[1:-1]]
        )
        width = np.searchsorted(s, edges, side="left")
        starts = np.unique(np.concatenate([[0], mass, width]))
        starts = starts[starts < n]
    level = np.zeros(n, dtype=np.int64)
    level[starts[1:]] = 1
    level = np.cumsum(level)
    n_levels = starts.size
    key = 2 * level + ys.astype(np.int64)
    count = np.bincount(key, minlength=2 * n_levels).astype(np.float64)
    keep = np.flatnonzero(count)
    cell_count = count[keep]

    def mean(weights: FloatArray) -> FloatArray:
        return np.bincount(key, weights=weights, minlength=2 * n_levels)[keep] / cell_count

    level_count = np.bincount(level, minlength=n_levels)
    level_min = s[starts]
    # Exact levels are single values: keep them exact rather than as sum / count.
    level_conf = (
        level_min if exact else np.bincount(level, weights=s, minlength=n_levels) / level_count
    )
    return _Cells(
        n=n,
        exact=bool(exact),
        count=cell_count,
        right=(keep % 2).astype(np.float64),
        conf_mean=level_conf[keep // 2] if exact else mean(s),
        brier_mean=mean(_brier_terms(s, ys)),
        log_loss_mean=mean(_log_loss_terms(s, ys)),
        level_start=np.searchsorted(keep // 2, np.arange(n_levels)),
        level_min=level_min,
        level_conf=level_conf,
    )


class _Resamples:
    """Cell counts of each resample (rows), and the per-level sums the metrics are made of.

    The last row holds the original counts: the metric computed from the cells of the data itself.
    """

    def __init__(self, cells: _Cells, weights: FloatArray, smooth_bandwidth: float) -> None:
        self.cells = cells
        self.weights = weights
        self.smooth_bandwidth = smooth_bandwidth

    def _per_level(self, values: FloatArray) -> FloatArray:
        return np.add.reduceat(values, self.cells.level_start, axis=1)

    @cached_property
    def level_count(self) -> FloatArray:
        return self._per_level(self.weights)

    @cached_property
    def level_right(self) -> FloatArray:
        return self._per_level(self.weights * self.cells.right)

    @cached_property
    def level_conf_sum(self) -> FloatArray:
        return self._per_level(self.weights * self.cells.conf_mean)

    def linear(self, per_cell_mean: FloatArray) -> FloatArray:
        return self.weights @ per_cell_mean / self.cells.n

    def width_bins(self, n_bins: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        onehot = np.eye(n_bins)[_width_bin_index(self.cells.level_min, n_bins)]
        return (self.level_count @ onehot, self.level_conf_sum @ onehot, self.level_right @ onehot)

    def mass_bins(self, n_bins: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Equal-mass bins of every resample, cut as in :func:`_mass_bounds`.

        Exact levels (tied values) are never split: a cut inside one moves to its end. A
        quantised level is split in proportion, as if its members were spread evenly.
        """
        n, rows = self.cells.n, self.weights.shape[0]
        count_cum = np.concatenate([np.zeros((rows, 1)), np.cumsum(self.level_count, 1)], 1)
        conf_cum = np.concatenate([np.zeros((rows, 1)), np.cumsum(self.level_conf_sum, 1)], 1)
        right_cum = np.concatenate([np.zeros((rows, 1)), np.cumsum(self.level_right, 1)], 1)
        cut = _mass_split_positions(n, n_bins).astype(np.float64)
        # One search over all rows at once: offset row r by r * (n + 1) to keep them apart.
        offset = np.arange(rows)[:, None] * float(n + 1)
        found = np.searchsorted((count_cum + offset).ravel(), (cut + offset).ravel(), "left")
        stop = found.reshape(rows, -1) - np.arange(rows)[:, None] * count_cum.shape[1]
        take = np.take_along_axis
        after = [take(a, stop, 1) for a in (count_cum, conf_cum, right_cum)]
        if self.cells.exact:
            at_cut = after
        else:
            before = [take(a, stop - 1, 1) for a in (count_cum, conf_cum, right_cum)]
            frac = (cut - before[0]) / (after[0] - before[0])
            at_cut = [b + frac * (a - b) for a, b in zip(after, before, strict=True)]
        sums = []
        for cum, inner in zip((count_cum, conf_cum, right_cum), at_cut, strict=True):
            bounds = np.concatenate([cum[:, :1], inner, cum[:, -1:]], 1)
            sums.append(np.diff(bounds, axis=1))
        return sums[0], sums[1], sums[2]

    def level_kernel(self, sigma: float) -> FloatArray:
        """Matrix (levels x evaluation points) that takes per-level sums to relplot's smoothed
        values: linear binning onto its grid, reflected convolution and interpolation, composed.

        Row ``j`` of the smoothing on the grid is ``G[j, i] = A(j - i) + A(j + i) +
        A(j + i - 2(M - 1))`` (the point and its mirror images at 0 and 1; the end points are not
        mirrored onto themselves), with ``A`` the kernel sampled as relplot samples it; each term
        is a contiguous slice of the padded kernel, so the rows needed are cheap to build.
        """
        size, n_eval = _grid_size(sigma), _eval_size(sigma)
        shift = 2 * size - 2  # kernel[shift + d] = A(d) for d in [-(2M - 2), 2M - 2]
        kernel = np.zeros(4 * size - 3)
        kernel[shift - size // 2 : shift - size // 2 + size] = _kernel_values(sigma, size)
        forwards = np.lib.stride_tricks.sliding_window_view(kernel, size)
        backwards = np.lib.stride_tricks.sliding_window_view(kernel[::-1], size)

        def grid_rows(j: npt.NDArray[np.int64]) -> FloatArray:
            rows = backwards[kernel.size - 1 - shift - j] + forwards[shift + j] + forwards[j]
            rows[:, 0] -= kernel[shift + j]
            rows[:, -1] -= kernel[j + size - 1]
            return rows

        t = np.linspace(0.0, 1.0, n_eval)
        step = 1 / (size - 1)
        t_index = (t * (size - 1)).astype(np.int64).clip(0, size - 2)
        t_frac = ((t - t_index * step) / step)[:, None]
        at_eval = (1 - t_frac) * grid_rows(t_index) + t_frac * grid_rows(t_index + 1)
        lower, frac = _grid_position(self.cells.level_conf, size)
        frac = frac[:, None]
        return (1 - frac) * at_eval[:, lower].T + frac * at_eval[:, lower + 1].T

    def _fft_is_cheaper(self, sigma: float, rows: int) -> bool:
        """Whether a few rows are cheaper to smooth one by one than to build the kernel matrix."""
        size = _grid_size(sigma)
        nfft = 1 << (4 * size - 4).bit_length()
        per_row = 0.6 * nfft * math.log2(nfft) + 20 * self.cells.level_min.size
        return rows * per_row < 6 * _eval_size(sigma) * size

    def _smooth_ece_by_fft(self, residual: FloatArray, count: FloatArray, sigma: float
                           ) -> FloatArray:
        """Smooth ECE of each row at ``sigma`` the way :func:`_smece_at` computes it."""
        size, rows = _grid_size(sigma), residual.shape[0]
        lower, frac = _grid_position(self.cells.level_conf, size)
        index = (np.arange(2 * rows)[:, None] * size + lower[None, :]).ravel()
        values = np.concatenate([residual, count])
        grid = np.bincount(index, (values * (1.0 - frac)).ravel(), minlength=2 * rows * size)
        grid += np.bincount(index + 1, (values * frac).ravel(), minlength=2 * rows * size)
        t = np.linspace(0.0, 1.0, _eval_size(sigma))
        smoothed = _interpolate(t, _reflect_smooth(grid.reshape(2 * rows, size), sigma))
        density = smoothed[rows:] + _SMECE_DENSITY_EPS
        return np.sum(np.abs(smoothed[:rows] / density) * density, axis=1) / density.sum(axis=1)

    def smooth_ece(self) -> FloatArray:
        """Smooth ECE of every row with its own bandwidth search.

        relplot's bisection returns the smallest multiple ``k / 1024`` of 2**-10 at which
        ``sigma >= smECE_sigma`` (assuming, as the bisection does, that the test flips once). The
        rows' answers cluster around the full data's ``k``, so each row gallops outwards from it
        (k, k +- 1, k +- 3, ...) and then bisects: about 4-6 evaluations instead of 11, shared by
        the rows probing the same ``k``.
        """
        residual = self.level_conf_sum - self.level_right
        count = self.level_count
        rows = residual.shape[0]
        low = np.ones(rows, dtype=np.int64)  # sigma = 1/1024 < 0.001 always passes the test
        high = np.full(rows, _DYADIC + 1, dtype=np.int64)  # as if sigma > 1 failed it
        value_low = np.full(rows, np.nan)
        value_high = np.full(rows, np.nan)
        start = int(np.clip(round(self.smooth_bandwidth * _DYADIC), 2, _DYADIC))
        probe = np.full(rows, start, dtype=np.int64)
        step = np.ones(rows, dtype=np.int64)
        kernels: dict[int, tuple[FloatArray, FloatArray]] = {}
        while True:
            active = np.flatnonzero(high - low > 1)
            if active.size == 0:
                break
            for k in np.unique(probe[active]):
                k = int(k)
                sigma = k / _DYADIC
                members = active[probe[active] == k]
                if k not in kernels and self._fft_is_cheaper(sigma, members.size):
                    value = self._smooth_ece_by_fft(residual[members], count[members], sigma)
                else:
                    if k not in kernels:
                        matrix = self.level_kernel(sigma)
                        kernels[k] = (matrix, matrix.sum(axis=1))
                    matrix, total = kernels[k]
                    numerator = np.abs(residual[members] @ matrix).sum(axis=1)
                    denominator = count[members] @ total + matrix.shape[1] * _SMECE_DENSITY_EPS
                    value = numerator / denominator
                passes = (sigma < _SMECE_SEARCH_FLOOR) | (sigma < value)
                low[members[passes]] = k
                value_low[members[passes]] = value[passes]
                high[members[~passes]] = k
                value_high[members[~passes]] = value[~passes]
            up = high > _DYADIC  # nothing failed yet: gallop up
            down = low == 1  # nothing passed yet: gallop down
            probe = np.where(
                up,
                np.minimum(low + step, _DYADIC),
                np.where(down, np.maximum(high - step, 2), (low + high) // 2),
            )
            step *= 2
        return np.where(high <= _DYADIC, value_high, value_low)


def _batch_smooth_ece(r: _Resamples) -> FloatArray:
    return r.smooth_ece()


def _batch_ece(r: _Resamples) -> FloatArray:
    return _ece_from_sums(*r.width_bins(_DEFAULT_BINS), 1)


def _batch_ece_mass(r: _Resamples) -> FloatArray:
    return _ece_from_sums(*r.mass_bins(_DEFAULT_BINS), 1)


def _batch_mce(r: _Resamples) -> FloatArray:
    return _ece_from_sums(*r.width_bins(_DEFAULT_BINS), math.inf)


def _batch_debiased_ece(r: _Resamples) -> FloatArray:
    return _debiased_from_sums(*r.mass_bins(_DEFAULT_BINS), False)


def _batch_auroc(r: _Resamples) -> FloatArray:
    return _auroc_from_blocks(r.level_count, r.level_right)


def _batch_aurc(r: _Resamples) -> FloatArray:
    count = r.level_count[:, ::-1]
    return _aurc_from_blocks(count, count - r.level_right[:, ::-1], r.cells.n)


_BATCH: dict[str, Callable[[_Resamples], FloatArray]] = {
    "smooth_ece": _batch_smooth_ece,
    "ece": _batch_ece,
    "ece_mass": _batch_ece_mass,
    "mce": _batch_mce,
    "debiased_ece": _batch_debiased_ece,
    "brier_score": lambda r: r.linear(r.cells.brier_mean),
    "log_loss": lambda r: r.linear(r.cells.log_loss_mean),
    "auroc": _batch_auroc,
    "aurc": _batch_aurc,
    "accuracy": lambda r: r.linear(r.cells.right),
    "mean_confidence": lambda r: r.linear(r.cells.conf_mean),
}

_POINT: dict[str, Callable[[FloatArray, FloatArray], float]] = {
    "smooth_ece": lambda c, y: _smooth_ece_compute(c, y)[0],
    "ece": _binned_ece_compute,
    "ece_mass": lambda c, y: _binned_ece_compute(c, y, binning="mass"),
    "mce": _mce_compute,
    "debiased_ece": _debiased_ece_compute,
    "brier_score": _brier_compute,
    "log_loss": _log_loss_compute,
    "auroc": _auroc_compute,
    "aurc": _aurc_compute,
    "accuracy": _accuracy_compute,
    "mean_confidence": _mean_confidence_compute,
}


def _check_bootstrap_args(n_resamples: int, confidence_level: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or (
        n_resamples < 1
    ):
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not (isinstance(confidence_level, int | float) and 0 < confidence_level < 1):
        raise ValueError(f"confidence_level must be strictly between 0 and 1, got "
                         f"{confidence_level!r}")


def _summarise(
    estimate: float, values: FloatArray, shift: float, n_resamples: int, level: float
) -> BootstrapResult:
    finite = values[np.isfinite(values)]
    if finite.size == 0 or not math.isfinite(estimate):
        low = high = std = math.nan
    else:
        alpha = (1.0 - level) / 2.0
        low, high = (float(q) + shift for q in np.quantile(finite, [alpha, 1.0 - alpha]))
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
    sigma = 1.0
    for name in names:
        if name == "smooth_ece":
            estimates[name], sigma = _smooth_ece_compute(conf, corr)
        else:
            estimates[name] = _POINT[name](conf, corr)
    cells = _build_cells(conf, corr)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(cells.n, cells.count / cells.n, size=n_resamples)
    weights = np.vstack([draws.astype(np.float64), cells.count[None, :]])
    resamples = _Resamples(cells, weights, sigma)
    out = {}
    for name in names:
        values = _BATCH[name](resamples)
        # The cells' own value differs from the estimate only when levels were quantised; shift
        # the interval by the difference so quantisation cannot move it.
        shift = estimates[name] - float(values[-1]) if math.isfinite(values[-1]) else 0.0
        out[name] = _summarise(estimates[name], values[:-1], shift, n_resamples, level)
    return out


def _metric_name(metric: str | Callable[..., float]) -> str | None:
    if isinstance(metric, str):
        if metric in METRICS:
            return metric
        close = difflib.get_close_matches(metric, list(METRICS), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"metric {metric!r} is not in METRICS{hint} (known: "
                         f"{', '.join(METRICS)})")
    if not callable(metric):
        raise ValueError(f"metric must be a name in METRICS or a callable, got {metric!r}")
    for name, info in METRICS.items():
        if info.function is metric:
            return name
    return None


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
    conf, corr = _check(confidence, correct)
    _check_bootstrap_args(n_resamples, confidence_level)
    name = _metric_name(metric)
    if name is not None:
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
    conf, corr = _check(confidence, correct)
    _check_bootstrap_args(n_resamples, confidence_level)
    return _bootstrap_named(list(METRICS), conf, corr, int(n_resamples), confidence_level, seed)
