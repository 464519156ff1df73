"""The one bootstrap engine: predictions summarised as cells, resamples drawn as counts per cell.

Rather than materialising a (resamples x n) index array, each resample is a multinomial count
vector over a few hundred *cells* (confidence level x correct), and every metric is computed for
all resamples at once from per-cell and per-level sums (:class:`Resamples`). :func:`draw_counts`
draws the counts for the metrics' intervals (:mod:`recal.metrics.intervals`) and for the
reliability diagram's band (:mod:`recal.metrics.reliability`) alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from recal.metrics.binned import DEFAULT_BINS, mass_split_positions, width_bin_index
from recal.metrics.point import brier_terms, log_loss_terms
from recal.metrics.smooth import (
    SMECE_DENSITY_EPS,
    SMECE_DYADIC,
    SMECE_SEARCH_FLOOR,
    grid_position,
    kernel_values,
    smece_eval_size,
    smooth_rows,
    smoothing_grid_size,
)
from recal.metrics.validation import FloatArray

__all__ = [
    "Cells",
    "Resamples",
    "build_cells",
    "calibrated_draws",
    "draw_counts",
    "prediction_cells",
]

# Above this many distinct confidences, the cells quantise: levels are cut at every equal-width
# bin edge of netcal's 15 bins, at _WIDTH_LEVELS equal-width edges and at _MASS_LEVELS
# equal-mass positions, so each level is narrow in confidence *and* holds few predictions.
_MAX_EXACT_LEVELS = 400
_WIDTH_LEVELS = 240
_MASS_LEVELS = 240


@dataclass(frozen=True, eq=False)
class Cells:
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


def build_cells(conf: FloatArray, corr: FloatArray) -> Cells:
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
            [np.linspace(0, 1, DEFAULT_BINS + 1)[1:-1], np.linspace(0, 1, _WIDTH_LEVELS + 1)[1:-1]]
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
    return Cells(
        n=n,
        exact=bool(exact),
        count=cell_count,
        right=(keep % 2).astype(np.float64),
        conf_mean=level_conf[keep // 2] if exact else mean(s),
        brier_mean=mean(brier_terms(s, ys)),
        log_loss_mean=mean(log_loss_terms(s, ys)),
        level_start=np.searchsorted(keep // 2, np.arange(n_levels)),
        level_min=level_min,
        level_conf=level_conf,
    )


def calibrated_draws(cells: Cells, rng: np.random.Generator, rows: int) -> tuple[Cells, FloatArray]:
    """``rows`` datasets of a perfectly calibrated predictor with the data's confidences: each
    prediction of confidence ``c`` is correct with probability ``c`` (consistency resampling,
    Bröcker & Smith 2007). The metric over these rows is the noise floor of the data.

    Returned as cells holding both outcomes of every level (level x {wrong, right}) and counts per
    cell (rows x cells): the number right at a level of ``m`` predictions is Binomial(m, level
    confidence), exact when levels are single values; a quantised level (a narrow range of
    confidences) uses its mean confidence.
    """
    levels = cells.level_conf.size
    level_count = np.add.reduceat(cells.count, cells.level_start)
    right = rng.binomial(level_count.astype(np.int64), cells.level_conf, size=(rows, levels))
    weights = np.empty((rows, 2 * levels))
    weights[:, 0::2] = level_count - right
    weights[:, 1::2] = right
    outcome = np.tile([0.0, 1.0], levels)
    conf = np.repeat(cells.level_conf, 2)
    count = np.zeros(2 * levels)
    count[2 * np.repeat(np.arange(levels), np.diff(np.append(cells.level_start, cells.count.size)))
          + cells.right.astype(np.int64)] = cells.count
    both = Cells(
        n=cells.n, exact=cells.exact, count=count, right=outcome, conf_mean=conf,
        brier_mean=brier_terms(conf, outcome), log_loss_mean=log_loss_terms(conf, outcome),
        level_start=2 * np.arange(levels), level_min=cells.level_min, level_conf=cells.level_conf,
    )
    return both, weights


class Resamples:
    """Cell counts of each resample (rows), and the per-level sums the metrics are made of.

    The last row holds the original counts: the metric computed from the cells of the data itself.
    """

    def __init__(self, cells: Cells, weights: FloatArray, smooth_bandwidth: float) -> None:
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
        onehot = np.eye(n_bins)[width_bin_index(self.cells.level_min, n_bins)]
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
        cut = mass_split_positions(n, n_bins).astype(np.float64)
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
        size, n_eval = smoothing_grid_size(sigma), smece_eval_size(sigma)
        shift = 2 * size - 2  # kernel[shift + d] = A(d) for d in [-(2M - 2), 2M - 2]
        kernel = np.zeros(4 * size - 3)
        kernel[shift - size // 2 : shift - size // 2 + size] = kernel_values(sigma, size)
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
        lower, frac = grid_position(self.cells.level_conf, size)
        frac = frac[:, None]
        return (1 - frac) * at_eval[:, lower].T + frac * at_eval[:, lower + 1].T

    def _fft_is_cheaper(self, sigma: float, rows: int) -> bool:
        """Whether a few rows are cheaper to smooth one by one than to build the kernel matrix."""
        size = smoothing_grid_size(sigma)
        nfft = 1 << (4 * size - 4).bit_length()
        per_row = 0.6 * nfft * math.log2(nfft) + 20 * self.cells.level_min.size
        return rows * per_row < 6 * smece_eval_size(sigma) * size

    def _smooth_ece_by_fft(self, residual: FloatArray, count: FloatArray, sigma: float
                           ) -> FloatArray:
        """Smooth ECE of each row at ``sigma``, as :func:`recal.metrics.smooth_ece` computes it."""
        rows = residual.shape[0]
        t = np.linspace(0.0, 1.0, smece_eval_size(sigma))
        values = np.concatenate([residual, count])
        smoothed = smooth_rows(self.cells.level_conf, values, sigma, t)
        density = smoothed[rows:] + SMECE_DENSITY_EPS
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
        high = np.full(rows, SMECE_DYADIC + 1, dtype=np.int64)  # as if sigma > 1 failed it
        value_low = np.full(rows, np.nan)
        value_high = np.full(rows, np.nan)
        start = int(np.clip(round(self.smooth_bandwidth * SMECE_DYADIC), 2, SMECE_DYADIC))
        probe = np.full(rows, start, dtype=np.int64)
        step = np.ones(rows, dtype=np.int64)
        kernels: dict[int, tuple[FloatArray, FloatArray]] = {}
        while True:
            active = np.flatnonzero(high - low > 1)
            if active.size == 0:
                break
            for k in np.unique(probe[active]):
                k = int(k)
                sigma = k / SMECE_DYADIC
                members = active[probe[active] == k]
                if k not in kernels and self._fft_is_cheaper(sigma, members.size):
                    value = self._smooth_ece_by_fft(residual[members], count[members], sigma)
                else:
                    if k not in kernels:
                        matrix = self.level_kernel(sigma)
                        kernels[k] = (matrix, matrix.sum(axis=1))
                    matrix, total = kernels[k]
                    numerator = np.abs(residual[members] @ matrix).sum(axis=1)
                    denominator = count[members] @ total + matrix.shape[1] * SMECE_DENSITY_EPS
                    value = numerator / denominator
                passes = (sigma < SMECE_SEARCH_FLOOR) | (sigma < value)
                low[members[passes]] = k
                value_low[members[passes]] = value[passes]
                high[members[~passes]] = k
                value_high[members[~passes]] = value[~passes]
            up = high > SMECE_DYADIC  # nothing failed yet: gallop up
            down = low == 1  # nothing passed yet: gallop down
            probe = np.where(
                up,
                np.minimum(low + step, SMECE_DYADIC),
                np.where(down, np.maximum(high - step, 2), (low + high) // 2),
            )
            step *= 2
        return np.where(high <= SMECE_DYADIC, value_high, value_low)

def prediction_cells(
    conf: FloatArray, corr: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """Distinct (confidence, correct) pairs, how many predictions each holds, and each
    prediction's pair."""
    pairs, inverse, count = np.unique(
        np.stack([conf, corr], axis=1), axis=0, return_inverse=True, return_counts=True
    )
    return pairs[:, 0].copy(), pairs[:, 1].copy(), count.astype(np.float64), inverse.ravel()


def draw_counts(
    rng: np.random.Generator, count: FloatArray, inverse: npt.NDArray[np.int64] | None,
    rows: int,
) -> FloatArray:
    """``rows`` bootstrap resamples of ``n = count.sum()`` predictions, as counts per cell.

    Multinomial(n, count / n) rows (rows x cells). When ``inverse`` (each prediction's cell) is
    given and most predictions have a cell of their own, ``n`` indices are drawn per row instead:
    the same distribution, much faster there. Without ``inverse`` the draw is always multinomial
    (what the metrics' intervals use, so their resamples depend only on the cells and the seed).
    """
    cells = count.size
    n = int(round(float(count.sum()))) if inverse is None else inverse.size
    # Few distinct values: a multinomial over them costs O(cells) a row.
    if inverse is None or 4 * cells <= n:
        return rng.multinomial(n, count / n, size=rows).astype(np.float64)
    # Mostly distinct values: drawing indices is O(n) a row too, and much faster than multinomial.
    picked = inverse[rng.integers(0, n, size=(rows, n))] + np.arange(rows)[:, None] * cells
    return np.bincount(picked.ravel(), minlength=rows * cells).reshape(rows, cells).astype(
        np.float64)


