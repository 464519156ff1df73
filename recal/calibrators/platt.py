"""Platt scaling: logistic regression on the confidence logit (Platt 1999)."""

from __future__ import annotations

import numpy as np

from recal.calibrators._numeric import (
    check_grid,
    find_grid,
    log_loss_on_logits,
    minimize_bounded,
    model_logit,
    sigmoid,
)
from recal.calibrators.base import RECALIBRATORS, FloatArray, Recalibrator, check_real

__all__ = ["PlattScaling"]


@RECALIBRATORS.register("platt")
class PlattScaling(Recalibrator):
    """``p' = sigmoid(a * logit(p) + b)`` with ``a >= 0`` (``slope_``) and ``b`` (``intercept_``).

    Fitted by minimising ``mean_w(log loss) + ridge / 2 * a**2`` with L-BFGS-B and the analytic
    gradient (convex, so the start, the identity ``a = 1, b = 0``, does not matter). The tiny
    ridge penalty on the slope (default 1e-6; the intercept is not penalised) keeps the fit finite
    when confidence separates right from wrong answers perfectly, where the unpenalised slope
    would run to infinity; otherwise it moves predictions by about 1e-6. It is the objective of
    ``sklearn.linear_model.LogisticRegression(C=1 / (ridge * sum(sample_weight)))`` on the logit
    feature, which the tests check.
    Confidences on a grid of shares ``k / M`` (modal shares of M samples, percentages; ``grid``,
    or found from the fitted confidences when None, see :func:`~recal.calibrators._numeric.
    find_grid`; kept as ``grid_``) enter as the smoothed share ``(k + 1/2) / (M + 1)``
    (:func:`~recal.calibrators._numeric.model_probability`), so a share of exactly 1 has the
    finite logit ``log(2M + 1)`` set by M, and the fit does not depend on a clipping constant.
    Other (continuous) confidences are clipped to ``[1e-12, 1 - 1e-12]`` before the logit
    (:data:`recal.calibrators._numeric.LOGIT_EPS`).

    The slope is bounded below by 0, so the map is non-decreasing and never reverses the model's
    ranking: when confidence is anti-correlated with correctness the fit ends at ``a = 0``, the
    constant (penalised-)maximum-likelihood accuracy.

    Edge cases: fewer than 2 correct or 2 wrong answers are refused (``DegenerateSplitError``,
    see :mod:`recal.calibrators.base`). A single confidence value leaves ``a`` unidentified; the
    penalty chooses ``a = 0``, so every confidence maps to the observed accuracy.
    """

    name = "platt"
    _state_spec = {"slope": "scalar", "intercept": "scalar", "grid": "integer"}
    _state_defaults = {"grid": 0}

    slope_: float
    intercept_: float
    grid_: int

    def __init__(self, *, ridge: float = 1e-6, grid: int | None = None) -> None:
        self.ridge = check_real(ridge, "ridge")
        self.grid = check_grid(grid)

    def _fit(self, conf: FloatArray, corr: FloatArray, weight: FloatArray) -> None:
        self.grid_ = find_grid(conf) if self.grid is None else self.grid
        x = model_logit(conf, self.grid_)
        w = weight / weight.sum()
        ridge = self.ridge

        def objective(theta: FloatArray) -> tuple[float, FloatArray]:
            a, b = theta
            z = a * x + b
            r = w * (sigmoid(z) - corr)
            value = log_loss_on_logits(z, corr, w) + 0.5 * ridge * a * a
            return value, np.array([np.dot(r, x) + ridge * a, r.sum()])

        a, b = minimize_bounded(objective, [1.0, 0.0], [(0.0, None), (None, None)],
                                "Platt scaling")
        self.slope_, self.intercept_ = float(a), float(b)

    def _predict(self, conf: FloatArray) -> FloatArray:
        return sigmoid(self.slope_ * model_logit(conf, self.grid_) + self.intercept_)

    def _check_state(self) -> None:
        if self.slope_ < 0:
            raise ValueError(f"key 'state.slope' must be >= 0, got {self.slope_!r}")
