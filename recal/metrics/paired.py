"""Paired comparison of two predictors on the same questions: one bootstrap, both metrics.

A repair and its reference are judged on the same held-out questions, so their metrics are
correlated; comparing two separately bootstrapped intervals ignores that and is both too
conservative and, for biased calibration errors, not even centred. Here each resample draws
question indices once and computes the metric for both predictors on those same questions; the
interval of the difference (new minus reference) is the percentile interval of the paired
differences. The upward bias of a calibration error at small n is shared by both predictors on
the same resample and largely cancels in the difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recal.metrics.intervals import percentile_bounds
from recal.metrics.resampling import Cells, Resamples, build_cells
from recal.metrics.smooth import smooth_ece_unchecked
from recal.metrics.specs import METRICS
from recal.metrics.validation import check_predictions

__all__ = ["PairedDifference", "paired_difference"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PairedDifference:
    """``metric(new) - metric(reference)`` on the same questions, with a paired interval."""

    metric: str
    estimate: float
    low: float
    high: float
    confidence_level: float
    n_resamples: int

    def direction(self, higher_is_better: bool) -> str:
        """'better', 'worse' (the interval excludes 0 on that side) or 'not distinguishable'."""
        if self.low > 0:
            return "better" if higher_is_better else "worse"
        if self.high < 0:
            return "worse" if higher_is_better else "better"
        return "not distinguishable"

    def describe(self) -> str:
        """``smooth_ece -0.051 [-0.083, -0.020]``."""
        return f"{self.metric} {self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _member_cells(cells: Cells, conf: FloatArray, corr: FloatArray) -> npt.NDArray[np.int64]:
    """The cell of :func:`build_cells` that each prediction fell in."""
    level = np.searchsorted(cells.level_min, conf, side="right") - 1
    cell_level = np.searchsorted(cells.level_start, np.arange(cells.count.size), side="right") - 1
    keys = 2 * cell_level + cells.right.astype(np.int64)
    return np.searchsorted(keys, 2 * level + corr.astype(np.int64))


def _resampled(metric: str, conf: FloatArray, corr: FloatArray,
               picks: npt.NDArray[np.int64]) -> FloatArray:
    """``metric`` on every row of question indices ``picks`` (rows x n), then on the data."""
    cells = build_cells(conf, corr)
    member = _member_cells(cells, conf, corr)
    rows = picks.shape[0]
    flat = member[picks] + np.arange(rows)[:, None] * cells.count.size
    weights = np.bincount(flat.ravel(), minlength=rows * cells.count.size).reshape(
        rows, cells.count.size).astype(np.float64)
    sigma = smooth_ece_unchecked(conf, corr)[1] if metric == "smooth_ece" else 1.0
    return METRICS[metric].batch(Resamples(cells, np.vstack([weights, cells.count]), sigma))


def paired_difference(
    metric: str, reference: tuple[npt.ArrayLike, npt.ArrayLike],
    new: tuple[npt.ArrayLike, npt.ArrayLike], *, n_resamples: int = 1000,
    confidence_level: float = 0.95, seed: int | None = 0,
) -> PairedDifference:
    """``metric(new) - metric(reference)`` with a paired percentile bootstrap interval.

    ``reference`` and ``new`` are (confidence, correct) of the same questions in the same order
    (``correct`` may differ: a repair that resamples the model changes the answers). Each of
    ``n_resamples`` resamples draws question indices once, for both.
    """
    conf_a, corr_a = check_predictions(*reference)
    conf_b, corr_b = check_predictions(*new)
    if conf_a.size != conf_b.size:
        raise ValueError(f"reference has {conf_a.size} questions and new has {conf_b.size}: a "
                         "paired comparison needs the same questions")
    spec = METRICS[metric]
    picks = np.random.default_rng(seed).integers(0, conf_a.size, size=(n_resamples, conf_a.size))
    diffs = _resampled(metric, conf_b, corr_b, picks) - _resampled(metric, conf_a, corr_a, picks)
    estimate = spec.compute(conf_b, corr_b) - spec.compute(conf_a, corr_a)
    # the cells' own value can differ from the estimate only where levels were quantised
    shift = estimate - float(diffs[-1]) if np.isfinite(diffs[-1]) else 0.0
    low, high = percentile_bounds(diffs[:-1] + shift, confidence_level)
    return PairedDifference(metric, float(estimate), float(low), float(high), confidence_level,
                            n_resamples)
