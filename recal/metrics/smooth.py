"""Smooth ECE (Błasiok & Nakkiran 2023) and its smoothed reliability curve, computed as relplot
computes them (linear binning on a grid, reflected Gaussian kernel, bandwidth fixed point) with
``np.bincount`` and FFT; the smoothing pieces are shared with the bootstrap and the diagrams.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recal.metrics.validation import FloatArray, check_bandwidth, check_predictions

__all__ = ["SmoothCurve", "smooth_calibration_curve", "smooth_ece"]

# relplot's constants (relplot/metrics.py, relplot/kernels.py, relplot/config.py).
SMECE_SEARCH_FLOOR = 1e-3  # bandwidths below this always satisfy the search predicate
_SMECE_SEARCH_STEPS = 10  # bisection steps: the bandwidth is a multiple of 2**-10
SMECE_DENSITY_EPS = 1e-4  # added to the smoothed count before dividing
_SMECE_MIN_EVAL_POINTS = 200
_SMOOTH_GRID_MIN = 2000
SMECE_DYADIC = 2**_SMECE_SEARCH_STEPS
@dataclass(frozen=True, eq=False)
class SmoothCurve:
    """A smoothed reliability diagram (compute only; draw it with any plotting library)."""

    grid: FloatArray  # evaluation points in [0, 1]
    accuracy: FloatArray  # kernel-smoothed mean of ``correct`` at each grid point
    density: FloatArray  # reflected-Gaussian density of ``confidence`` (integrates to ~1)
    bandwidth: float  # the kernel's sigma
    smooth_ece: float  # smooth ECE at this bandwidth

# --------------------------------------------------------------------------- smooth ECE


def smoothing_grid_size(sigma: float) -> int:
    # relplot: GaussianKernel.apply uses eval_points = max(2000, round(20 / sigma)) // 2 + 1.
    return max(_SMOOTH_GRID_MIN, round(20 / sigma)) // 2 + 1


def smece_eval_size(sigma: float) -> int:
    # relplot.metrics.smooth_ece: max(round(10 / sigma), 200) evaluation points.
    return max(round(10 / sigma), _SMECE_MIN_EVAL_POINTS)


def kernel_values(sigma: float, size: int) -> FloatArray:
    t = np.linspace(0.0, 1.0, size)
    return np.exp(-((t - 0.5) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)


def grid_position(x: FloatArray, size: int) -> tuple[npt.NDArray[np.int64], FloatArray]:
    pos = x * (size - 1)
    lower = pos.astype(np.int64).clip(0, size - 2)
    return lower, pos - lower


def _linear_bin(x: FloatArray, weights: FloatArray, size: int) -> FloatArray:
    """Spread each weight over the two nearest of ``size`` grid points (relplot's rounding)."""
    lower, frac = grid_position(x, size)
    return np.bincount(lower, (1.0 - frac) * weights, minlength=size) + np.bincount(
        lower + 1, frac * weights, minlength=size
    )


def reflect_smooth(values: FloatArray, sigma: float) -> FloatArray:
    """relplot's ``ReflectedGaussianKernel.convolve`` for each row, by FFT instead of np.convolve.

    The row is mirrored about both ends of [0, 1], convolved with the Gaussian sampled on the same
    grid (truncated at +-1/2), and the middle kept.
    """
    size = values.shape[-1]
    ext = np.concatenate([values[..., ::-1][..., :-1], values, values[..., ::-1][..., 1:]], -1)
    full = ext.shape[-1] + size - 1
    nfft = 1 << (full - 1).bit_length()
    spectrum = np.fft.rfft(ext, nfft) * np.fft.rfft(kernel_values(sigma, size), nfft)
    start = size - 1 + size // 2
    return np.fft.irfft(spectrum, nfft)[..., start : start + size]


def interpolate_uniform(t: FloatArray, values: FloatArray) -> FloatArray:
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
        size = smoothing_grid_size(sigma)
        if size not in self._binned:
            self._binned[size] = np.stack([_linear_bin(self.conf, w, size) for w in self.weights])
        return interpolate_uniform(t, reflect_smooth(self._binned[size], sigma))


def _smece_at(data: _SmoothData, sigma: float) -> float:
    """relplot.metrics.smooth_ece: rows of ``data`` are the residuals and ones."""
    t = np.linspace(0.0, 1.0, smece_eval_size(sigma))
    residual, count = data.smoothed(sigma, t)
    density = count + SMECE_DENSITY_EPS
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


def smooth_ece_unchecked(
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
            lambda a: a < SMECE_SEARCH_FLOOR or a < value(a)
        )
    return value(bandwidth), float(bandwidth)



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
    conf, corr = check_predictions(confidence, correct)
    check_bandwidth(bandwidth)
    return smooth_ece_unchecked(conf, corr, bandwidth)[0]


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
    conf, corr = check_predictions(confidence, correct)
    check_bandwidth(bandwidth)
    if isinstance(grid_size, bool) or not isinstance(grid_size, int | np.integer) or grid_size < 2:
        raise ValueError(f"grid_size must be an integer >= 2, got {grid_size!r}")
    value, sigma = smooth_ece_unchecked(conf, corr, bandwidth)
    grid = np.linspace(0.0, 1.0, int(grid_size))
    right, count = _SmoothData(conf, np.stack([corr, np.ones_like(conf)])).smoothed(sigma, grid)
    return SmoothCurve(
        grid=grid,
        accuracy=right / (count + SMECE_DENSITY_EPS),
        density=count / conf.size,
        bandwidth=sigma,
        smooth_ece=value,
    )




def smooth_rows(x: FloatArray, values: FloatArray, sigma: float, t: FloatArray) -> FloatArray:
    """Each row of ``values`` (rows x points at ``x``) smoothed as relplot smooths, read at ``t``.

    Linear binning onto the grid of :func:`smoothing_grid_size` points, reflected Gaussian
    convolution (:func:`reflect_smooth`) and interpolation at ``t``; all rows in one ``bincount``
    (offset by row) and one batched FFT. Used by the bootstrap of smooth ECE and by the reliability
    diagram's band.
    """
    size, rows = smoothing_grid_size(sigma), values.shape[0]
    lower, frac = grid_position(x, size)
    index = (np.arange(rows)[:, None] * size + lower[None, :]).ravel()
    grid = np.bincount(index, (values * (1.0 - frac)).ravel(), minlength=rows * size)
    grid += np.bincount(index + 1, (values * frac).ravel(), minlength=rows * size)
    return interpolate_uniform(t, reflect_smooth(grid.reshape(rows, size), sigma))
