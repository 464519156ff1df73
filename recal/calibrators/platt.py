"""Platt scaling: logistic regression on the confidence logit (Platt 1999)."""

from __future__ import annotations

import numpy as np

from recal.calibrators._numeric import log_loss_on_logits, logit, minimize_bounded, sigmoid
from recal.calibrators.base import RECALIBRATORS, FloatArray, Recalibrator, _check_real

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
    feature, which the tests check. Confidences are clipped to ``[1e-12, 1 - 1e-12]`` before the
    logit (:data:`recal.calibrators._numeric.LOGIT_EPS`).

    The slope is bounded below by 0, so the map is non-decreasing and never reverses the model's
    ranking: when confidence is anti-correlated with correctness the fit ends at ``a = 0``, the
    constant (penalised-)maximum-likelihood accuracy.

    Edge cases: fewer than 2 correct or 2 wrong answers are refused (``DegenerateSplitError``,
    see :mod:`recal.calibrators.base`). A single confidence value leaves ``a`` unidentified; the
    penalty chooses ``a = 0``, so every confidence maps to the observed accuracy.
    """

    name = "platt"
    _state_spec = {"slope": "scalar", "intercept": "scalar"}

    slope_: float
    intercept_: float

    def __init__(self, *, ridge: float = 1e-6) -> None:
        self.ridge = _check_real(ridge, "ridge")

    def _fit(self, conf: FloatArray, corr: FloatArray, weight: FloatArray) -> None:
        x = logit(conf)
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
        return sigmoid(self.slope_ * logit(conf) + self.intercept_)

    def _check_state(self) -> None:
        if self.slope_ < 0:
            raise ValueError(f"key 'state.slope' must be >= 0, got {self.slope_!r}")
