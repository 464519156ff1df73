"""Binned calibration errors: ECE with equal-width or equal-mass bins, MCE, Kumar et al.'s
debiased l2 error; and the per-bin sums (``width_bin_sums``, ``mass_bin_sums``,
``ece_from_sums``) that the bootstrap and the reliability diagram reuse.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from recal.metrics.validation import FloatArray, check_binning, check_n_bins, check_predictions

__all__ = ["DEFAULT_BINS", "Binning", "binned_ece", "debiased_ece", "mce"]

Binning = Literal["width", "mass"]

#: Bins of the registered binned metrics (``ece``, ``ece_mass``, ``mce``, ``debiased_ece``).
DEFAULT_BINS = 15
# --------------------------------------------------------------------------- binned metrics


def width_bin_index(conf: FloatArray, n_bins: int) -> npt.NDArray[np.int64]:
    # netcal: edges np.linspace(0, 1, n_bins + 1), bins [e_k, e_{k+1}) found with a right-sided
    # search, and confidences clipped into (0, 1) so that 0 and 1 land in the end bins.
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)


def width_bin_sums(
    conf: FloatArray, corr: FloatArray, n_bins: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    index = width_bin_index(conf, n_bins)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    right = np.bincount(index, weights=corr, minlength=n_bins)
    return count, conf_sum, right


def mass_split_positions(n: int, n_bins: int) -> npt.NDArray[np.int64]:
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
    cut = mass_split_positions(n, n_bins)
    edges = (sorted_conf[cut - 1] + sorted_conf[cut]) / 2.0
    inner = np.searchsorted(sorted_conf, edges, side="right")
    return np.concatenate([[0], inner, [n]])


def mass_bin_sums(
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


def ece_from_sums(
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


def debiased_from_sums(
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
        return width_bin_sums(conf, corr, n_bins)
    return mass_bin_sums(conf, corr, n_bins)


def binned_ece_unchecked(
    conf: FloatArray, corr: FloatArray, n_bins: int = DEFAULT_BINS,
    binning: Binning = "width", p: float = 1,
) -> float:
    return float(ece_from_sums(*_bin_sums(conf, corr, n_bins, binning), p))


def binned_ece(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
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
    conf, corr = check_predictions(confidence, correct)
    check_n_bins(n_bins)
    check_binning(binning)
    if not (isinstance(p, int | float) and p >= 1):
        raise ValueError(f"p must be a number >= 1 (or math.inf), got {p!r}")
    return binned_ece_unchecked(conf, corr, n_bins, binning, p)


def mce_unchecked(
    conf: FloatArray, corr: FloatArray, n_bins: int = DEFAULT_BINS, binning: Binning = "width"
) -> float:
    return float(ece_from_sums(*_bin_sums(conf, corr, n_bins, binning), math.inf))


def mce(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
    binning: Binning = "width",
) -> float:
    """Maximum calibration error ``max_b |conf_b - acc_b|`` over non-empty bins (Naeini et al.).

    Lower is better; range [0, 1]. Bins as in :func:`binned_ece`; with equal-width bins this
    equals ``netcal.metrics.MCE(n_bins)``. Noisy: one sparse bin decides it.
    """
    conf, corr = check_predictions(confidence, correct)
    check_n_bins(n_bins)
    check_binning(binning)
    return mce_unchecked(conf, corr, n_bins, binning)


def debiased_ece_unchecked(
    conf: FloatArray, corr: FloatArray, n_bins: int = DEFAULT_BINS, squared: bool = False
) -> float:
    return float(debiased_from_sums(*mass_bin_sums(conf, corr, n_bins), squared))


def debiased_ece(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
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
    conf, corr = check_predictions(confidence, correct)
    check_n_bins(n_bins)
    return debiased_ece_unchecked(conf, corr, n_bins, bool(squared))


