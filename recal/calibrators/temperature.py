"""Temperature scaling of the confidence logit (Guo et al. 2017, in its binary form)."""

from __future__ import annotations

import math

import numpy as np

from recal.calibrators._numeric import check_grid, find_grid, model_logit, sigmoid
from recal.calibrators.base import RECALIBRATORS, FitError, FloatArray, Recalibrator

__all__ = ["TemperatureScaling"]

#: The temperature is searched in [T_MIN, T_MAX] (on a log scale).
T_MIN: float = 1e-2
T_MAX: float = 1e2


@RECALIBRATORS.register("temperature")
class TemperatureScaling(Recalibrator):
    """``p' = sigmoid(logit(p) / T)`` with one fitted temperature ``T > 0`` (``temperature_``).

    ``T > 1`` softens an overconfident model, ``T < 1`` sharpens an underconfident one. ``T`` is
    fitted by minimising the weighted mean log loss over ``log T`` in ``[log 0.01, log 100]`` with
    scipy's bounded Brent search (``minimize_scalar(method="bounded")``, ``xatol=1e-10``): the
    loss is convex in ``1/T``, hence unimodal in ``log T``. A search that fails raises
    :class:`~recal.calibrators.base.FitError` with scipy's message.
    Confidences on a grid of shares ``k / M`` (modal shares of M samples, percentages; ``grid``,
    or found from the fitted confidences when None, see :func:`~recal.calibrators._numeric.
    find_grid`; kept as ``grid_``) enter as the smoothed share ``(k + 1/2) / (M + 1)``
    (:func:`~recal.calibrators._numeric.model_probability`), so a share of exactly 1 has the
    finite logit ``log(2M + 1)`` set by M, and the fit does not depend on a clipping constant.
    Other (continuous) confidences of exactly 0 or 1 are clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]``
    (1e-12, :mod:`recal.calibrators._numeric`) before the logit. Predictions read their input the
    same way as the fit did.

    The map is increasing and keeps 1/2 fixed: it can stretch or shrink confidence around 1/2 but
    never move one across it, so it cannot repair every miscalibration (a model whose 0.7 means
    0.4, say). Platt scaling adds the missing intercept.

    Edge cases: fewer than 2 correct or 2 wrong answers are refused (``DegenerateSplitError``;
    see :mod:`recal.calibrators.base`). When every confidence is 1/2 the loss does not depend on
    ``T`` and ``T = 1``. With a single other confidence value ``c`` the fit maps ``c`` to the
    observed accuracy when that lies on the same side of 1/2 as ``c``, and otherwise runs to the
    bound ``T = 100`` (predicting about 1/2). A temperature at either bound means the data ask for
    a map temperature scaling cannot give.
    """

    name = "temperature"
    _state_spec = {"temperature": "scalar", "grid": "integer"}
    _state_defaults = {"grid": 0}

    temperature_: float
    grid_: int

    def __init__(self, *, grid: int | None = None) -> None:
        self.grid = check_grid(grid)

    def _fit(self, conf: FloatArray, corr: FloatArray, weight: FloatArray) -> None:
        from scipy.optimize import minimize_scalar

        self.grid_ = find_grid(conf) if self.grid is None else self.grid
        z = model_logit(conf, self.grid_)
        if not np.any(z):
            self.temperature_ = 1.0
            return
        w = weight / weight.sum()
        wyz = float(np.dot(w, corr * z))

        def loss(log_t: float) -> float:
            s = math.exp(-log_t)
            return float(np.dot(w, np.logaddexp(0.0, s * z))) - s * wyz

        result = minimize_scalar(loss, bounds=(math.log(T_MIN), math.log(T_MAX)),
                                 method="bounded", options={"xatol": 1e-10, "maxiter": 500})
        if not result.success:
            raise FitError(f"temperature scaling did not converge: {result.message}")
        self.temperature_ = float(math.exp(result.x))

    def _predict(self, conf: FloatArray) -> FloatArray:
        return sigmoid(model_logit(conf, self.grid_) / self.temperature_)

    def _check_state(self) -> None:
        if not self.temperature_ > 0:
            raise ValueError(f"key 'state.temperature' must be positive, got "
                             f"{self.temperature_!r}")
