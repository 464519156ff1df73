"""Histogram binning: equal-mass bins, each predicting its accuracy (Zadrozny & Elkan 2001)."""

from __future__ import annotations

import numpy as np

from recal.calibrators.base import RECALIBRATORS, FloatArray, Recalibrator, check_real
from recal.metrics.validation import check_n_bins

__all__ = ["HistogramBinning"]


@RECALIBRATORS.register("histogram")
class HistogramBinning(Recalibrator):
    """Equal-mass bins of confidence; each predicts its (weighted, smoothed) accuracy.

    The bins hold (nearly) equal weight: edge ``k`` of ``n_bins`` is the smallest fitted
    confidence at which the cumulative weight reaches ``k / n_bins`` of the total, and a bin
    covers ``(previous edge, edge]`` (so integer weights and repeated rows give the same bins).
    Ties can make edges coincide; such bins are merged, so no bin is empty and there are at most
    as many bins as distinct confidences. ``edges_`` holds the inner edges and ``values_`` the
    prediction of each bin; confidences outside the fitted range fall in the end bins.

    Each bin predicts ``(sum w*y + prior_strength * r) / (sum w + prior_strength)``, the posterior
    mean under a Beta prior centred on the overall weighted accuracy ``r`` with ``prior_strength``
    pseudo-predictions (in the units of ``sample_weight``: with no weights, a number of
    predictions). The default 1.0 pulls small bins slightly towards ``r`` and keeps them off
    exact 0 and 1; 0 gives the plain bin accuracy.

    The map is a step function and, unlike isotonic regression, not monotone by construction:
    with few predictions per bin, noise can make a bin's accuracy fall below its left
    neighbour's. Use fewer bins, or isotonic regression, when that matters.

    Edge cases: fewer than 2 correct or 2 wrong answers are refused (``DegenerateSplitError``,
    see :mod:`recal.calibrators.base`); a single confidence value gives one bin, and every
    confidence maps to the observed accuracy. Unlike the maximum-likelihood maps it fits a few
    separable predictions (4 to 9): with ``prior_strength > 0`` no bin predicts 0 or 1.
    """

    name = "histogram"
    _steep_when_separable = False  # smoothed bins stay inside (0, 1)
    _state_spec = {"edges": "array", "values": "array"}

    edges_: FloatArray
    values_: FloatArray

    def __init__(self, *, n_bins: int = 10, prior_strength: float = 1.0) -> None:
        check_n_bins(n_bins)
        self.n_bins = int(n_bins)
        self.prior_strength = check_real(prior_strength, "prior_strength")

    def _bins(self, conf: FloatArray, weight: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Inner edges, and the index of each prediction's bin."""
        levels, inverse = np.unique(conf, return_inverse=True)
        cumulative = np.cumsum(np.bincount(inverse, weights=weight))
        targets = cumulative[-1] * np.arange(1, self.n_bins) / self.n_bins
        position = np.searchsorted(cumulative, targets, side="left")
        position = np.unique(position[position < levels.size - 1])
        edges = levels[position]
        return edges, np.searchsorted(edges, conf, side="left")

    def _fit(self, conf: FloatArray, corr: FloatArray, weight: FloatArray) -> None:
        edges, index = self._bins(conf, weight)
        total = np.bincount(index, weights=weight, minlength=edges.size + 1)
        right = np.bincount(index, weights=weight * corr, minlength=edges.size + 1)
        rate = right.sum() / total.sum()
        s = self.prior_strength
        self.edges_ = edges
        self.values_ = (right + s * rate) / (total + s)

    def _predict(self, conf: FloatArray) -> FloatArray:
        return self.values_[np.searchsorted(self.edges_, conf, side="left")]

    def _check_state(self) -> None:
        edges, values = self.edges_, self.values_
        if values.size != edges.size + 1:
            raise ValueError(f"key 'state.values' must have one more entry than 'state.edges' "
                             f"({edges.size}), got {values.size}")
        if np.any(np.diff(edges) <= 0) or np.any((edges < 0) | (edges > 1)):
            raise ValueError("key 'state.edges' must increase strictly within [0, 1]")
        if np.any((values < 0) | (values > 1)):
            raise ValueError("key 'state.values' must lie in [0, 1]")
