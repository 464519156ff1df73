"""Reliability-diagram data: the smoothed curve with a bootstrap band, binned bars, a histogram
and the headline numbers, as plain arrays (:func:`reliability_data` -> :class:`ReliabilityData`).

Compute only, numpy only, as scikit-learn's ``calibration_curve`` and relplot's kernels are;
:mod:`recal.plots` draws the result with matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recal.metrics.binned import ece_from_sums, width_bin_index, width_bin_sums
from recal.metrics.intervals import percentile_bounds
from recal.metrics.point import accuracy_unchecked, mean_confidence_unchecked
from recal.metrics.resampling import draw_counts, prediction_cells
from recal.metrics.smooth import (
    SMECE_DENSITY_EPS,
    smooth_calibration_curve,
    smooth_rows,
    smoothing_grid_size,
)
from recal.metrics.validation import (
    FloatArray,
    check_bootstrap_args,
    check_n_bins,
    check_positive_int,
    check_predictions,
)

__all__ = ["ReliabilityData", "reliability_data", "smoothed_accuracy"]

# Resamples are smoothed in chunks of at most this many array elements (rows x FFT length).
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True, eq=False)
class ReliabilityData:
    """Everything a reliability diagram shows, as arrays (compute with :func:`reliability_data`).

    The arrays are read-only. ``eq=False`` as for :class:`recal.metrics.SmoothCurve`: arrays have
    no single truth value, so dataclass equality would be ambiguous.
    """

    # Smoothed curve (recal.metrics.smooth_calibration_curve) on ``grid`` points of [0, 1].
    grid: FloatArray
    curve: FloatArray  # kernel-smoothed accuracy at each grid point
    density: FloatArray  # kernel density of the confidences (integrates to ~1)
    bandwidth: float  # the kernel's sigma: smooth ECE's own bandwidth
    # Pointwise percentile bootstrap band of the curve, every resample smoothed at ``bandwidth``.
    band_low: FloatArray
    band_high: FloatArray
    confidence_level: float
    n_resamples: int
    # Equal-width bins [k/B, (k+1)/B) (1.0 in the last), as recal.metrics.binned_ece bins.
    bin_edges: FloatArray  # B + 1 edges
    bin_confidence: FloatArray  # mean confidence per bin (nan when empty)
    bin_accuracy: FloatArray  # fraction correct per bin (nan when empty)
    bin_count: npt.NDArray[np.int64]  # predictions per bin
    # Histogram of the confidences, same binning convention.
    hist_edges: FloatArray
    hist_counts: npt.NDArray[np.int64]
    # Headline numbers.
    n: int
    smooth_ece: float  # lower is better; [0, 1]
    binned_ece: float  # with the B bins above; lower is better; [0, 1]
    accuracy: float  # fraction correct
    mean_confidence: float

    @property
    def n_bins(self) -> int:
        return int(self.bin_count.size)

    @property
    def hist_bins(self) -> int:
        return int(self.hist_counts.size)


def smoothed_accuracy(
    cell_conf: FloatArray, cell_corr: FloatArray, weights: FloatArray, sigma: float,
    grid: FloatArray,
) -> FloatArray:
    """The smoothed curve of each row of ``weights`` (rows x cells: how often each cell is drawn).

    The same computation as :func:`recal.metrics.smooth_calibration_curve` (linear binning onto
    relplot's grid, reflected Gaussian by FFT, interpolation, ``right / (count + eps)``) for many
    weightings at once: one ``bincount`` over all rows, offset by row, and one batched FFT.
    """
    rows = weights.shape[0]
    smoothed = smooth_rows(cell_conf, np.concatenate([weights * cell_corr, weights]), sigma, grid)
    return smoothed[:rows] / (smoothed[rows:] + SMECE_DENSITY_EPS)


def _bootstrap_band(
    conf: FloatArray, corr: FloatArray, sigma: float, grid: FloatArray, n_resamples: int,
    level: float, seed: int | None,
) -> tuple[FloatArray, FloatArray]:
    """Pointwise percentile band of the curve over ``n_resamples`` bootstrap resamples.

    A resample is drawn as counts over the distinct (confidence, correct) pairs (multinomial, or
    ``n`` indices drawn with replacement when most pairs are distinct: the same distribution
    either way) and smoothed at the full data's bandwidth ``sigma``, so the band shows the noise
    of the curve, not of the bandwidth search.
    """
    cell_conf, cell_corr, count, inverse = prediction_cells(conf, corr)
    size = smoothing_grid_size(sigma)
    fft_length = 1 << (4 * size - 4).bit_length()
    chunk = max(1, _CHUNK_ELEMENTS // (2 * max(fft_length, conf.size)))
    rng = np.random.default_rng(seed)
    curves = np.empty((n_resamples, grid.size))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        draws = draw_counts(rng, count, inverse, stop - start)
        curves[start:stop] = smoothed_accuracy(cell_conf, cell_corr, draws, sigma, grid)
    low, high = percentile_bounds(curves, level, axis=0)
    return low, high


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def reliability_data(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    *,
    n_bins: int = 10,
    hist_bins: int = 20,
    n_resamples: int = 200,
    confidence_level: float = 0.9,
    seed: int | None = 0,
    grid_size: int = 200,
) -> ReliabilityData:
    """Compute a reliability diagram (numpy only; draw it with :func:`draw_reliability`).

    The curve is :func:`recal.metrics.smooth_calibration_curve` at smooth ECE's own bandwidth on
    ``grid_size`` points. The band holds, at each grid point, the central ``confidence_level``
    of the curves of ``n_resamples`` bootstrap resamples (seeded by ``seed``), each smoothed at
    that same bandwidth. Bars: ``n_bins`` equal-width bins with their mean confidence, accuracy
    and count (empty bins: nan, nan, 0); ``binned_ece`` is ``recal.metrics.binned_ece`` with those
    bins. The histogram counts the confidences in ``hist_bins`` equal-width bins.

    One prediction is enough (the band then collapses onto the curve). Bad input raises
    ``ValueError`` naming the argument.
    """
    conf, corr = check_predictions(confidence, correct)
    check_n_bins(n_bins)
    check_positive_int(hist_bins, "hist_bins")
    check_bootstrap_args(n_resamples, confidence_level)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    smooth = smooth_calibration_curve(conf, corr, grid_size=grid_size)
    low, high = _bootstrap_band(
        conf, corr, smooth.bandwidth, smooth.grid, int(n_resamples), float(confidence_level), seed
    )

    count, conf_sum, right = width_bin_sums(conf, corr, int(n_bins))
    with np.errstate(divide="ignore", invalid="ignore"):
        bin_conf = np.where(count > 0, conf_sum / count, np.nan)
        bin_acc = np.where(count > 0, right / count, np.nan)
    hist = np.bincount(width_bin_index(conf, int(hist_bins)), minlength=int(hist_bins))

    return ReliabilityData(
        grid=_read_only(smooth.grid),
        curve=_read_only(smooth.accuracy),
        density=_read_only(smooth.density),
        bandwidth=float(smooth.bandwidth),
        band_low=_read_only(low),
        band_high=_read_only(high),
        confidence_level=float(confidence_level),
        n_resamples=int(n_resamples),
        bin_edges=_read_only(np.linspace(0.0, 1.0, int(n_bins) + 1)),
        bin_confidence=_read_only(bin_conf),
        bin_accuracy=_read_only(bin_acc),
        bin_count=_read_only(count.astype(np.int64)),
        hist_edges=_read_only(np.linspace(0.0, 1.0, int(hist_bins) + 1)),
        hist_counts=_read_only(hist.astype(np.int64)),
        n=int(conf.size),
        smooth_ece=float(smooth.smooth_ece),
        binned_ece=float(ece_from_sums(count, conf_sum, right, 1)),
        accuracy=accuracy_unchecked(conf, corr),
        mean_confidence=mean_confidence_unchecked(conf, corr),
    )


