"""Beta calibration (Kull, Silva Filho & Flach 2017)."""

from __future__ import annotations

import numpy as np

from recal.calibrators._numeric import (
    check_grid,
    find_grid,
    log_loss_on_logits,
    minimize_bounded,
    model_probability,
    sigmoid,
)
from recal.calibrators.base import RECALIBRATORS, FloatArray, Recalibrator, check_real

__all__ = ["BetaCalibration"]


@RECALIBRATORS.register("beta")
class BetaCalibration(Recalibrator):
    """``p' = sigmoid(a * ln p - b * ln(1 - p) + c)`` with ``a, b >= 0`` (``a_``, ``b_``, ``c_``).

    Kull, Silva Filho & Flach, "Beyond sigmoids: How to obtain well-calibrated probabilities from
    binary classifiers with beta calibration" (EJS 2017). The family holds the identity
    (``a = b = 1, c = 0``), Platt-like logit maps (``a = b``) and, unlike temperature or Platt
    scaling, asymmetric maps such as powers of ``p``, so it bends the low and the high ends
    separately.

    Fitted as a logistic regression on the two features ``ln p`` and ``-ln(1 - p)`` with the
    constraints ``a, b >= 0`` imposed by L-BFGS-B's bounds (analytic gradient; convex, started at
    the identity), plus a tiny ridge ``ridge / 2 * (a**2 + b**2)`` (default 1e-6, intercept
    unpenalised) that keeps separable data finite. The paper fits unconstrained and, if a
    coefficient comes out negative, drops that feature and refits; the bounded fit reaches the
    same constrained optimum in one go, with the coefficient at 0. With ``a, b >= 0`` the map is
    non-decreasing.
    Confidences on a grid of shares ``k / M`` (modal shares of M samples, percentages; ``grid``,
    or found from the fitted confidences when None, see :func:`~recal.calibrators._numeric.
    find_grid`; kept as ``grid_``) enter as the smoothed share ``(k + 1/2) / (M + 1)``
    (:func:`~recal.calibrators._numeric.model_probability`), so a share of exactly 1 has the
    finite features ``ln p``, ``-ln(1 - p)`` set by M, and the fit does not depend on a
    clipping constant.
    Other (continuous) confidences are clipped to ``[1e-12, 1 - 1e-12]`` before the logs.

    Edge cases: fewer than 2 correct or 2 wrong answers are refused (``DegenerateSplitError``, see
    :mod:`recal.calibrators.base`); a single confidence value leaves ``a`` and ``b`` unidentified,
    the penalty chooses ``a = b = 0``, and every confidence maps to the observed accuracy.
    """

    name = "beta"
    _state_spec = {"a": "scalar", "b": "scalar", "c": "scalar", "grid": "integer"}
    _state_defaults = {"grid": 0}

    a_: float
    b_: float
    c_: float
    grid_: int

    def __init__(self, *, ridge: float = 1e-6, grid: int | None = None) -> None:
        self.ridge = check_real(ridge, "ridge")
        self.grid = check_grid(grid)

    def _features(self, conf: FloatArray) -> tuple[FloatArray, FloatArray]:
        p = model_probability(conf, self.grid_)
        return np.log(p), -np.log1p(-p)

    def _fit(self, conf: FloatArray, corr: FloatArray, weight: FloatArray) -> None:
        self.grid_ = find_grid(conf) if self.grid is None else self.grid
        f1, f2 = self._features(conf)
        w = weight / weight.sum()
        ridge = self.ridge

        def objective(theta: FloatArray) -> tuple[float, FloatArray]:
            a, b, c = theta
            z = a * f1 + b * f2 + c
            r = w * (sigmoid(z) - corr)
            value = log_loss_on_logits(z, corr, w) + 0.5 * ridge * (a * a + b * b)
            grad = np.array([np.dot(r, f1) + ridge * a, np.dot(r, f2) + ridge * b, r.sum()])
            return value, grad

        a, b, c = minimize_bounded(objective, [1.0, 1.0, 0.0],
                                   [(0.0, None), (0.0, None), (None, None)], "beta calibration")
        self.a_, self.b_, self.c_ = float(a), float(b), float(c)

    def _predict(self, conf: FloatArray) -> FloatArray:
        f1, f2 = self._features(conf)
        return sigmoid(self.a_ * f1 + self.b_ * f2 + self.c_)

    def _check_state(self) -> None:
        for key in ("a", "b"):
            value = getattr(self, key + "_")
            if value < 0:
                raise ValueError(f"key 'state.{key}' must be >= 0, got {value!r}")
