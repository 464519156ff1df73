"""Numerics shared by the parametric recalibrators: a clipped logit, a stable sigmoid, the log
loss on logits, and a bounded smooth minimiser that raises with the optimiser's reason.

scipy is imported inside :func:`minimize_bounded` only, so that loading and applying a fitted map
needs numpy alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from recal.calibrators.base import FitError

__all__ = ["LOGIT_EPS", "clip_probability", "log_loss_on_logits", "logit", "minimize_bounded",
           "sigmoid"]

FloatArray = npt.NDArray[np.float64]

#: Confidences are clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]`` before a logit or a log, so that a
#: stated 0 or 1 (a verbalized "100%") maps to a finite logit, ``+-27.63``. 1e-12 keeps every
#: confidence a model distinguishes in practice (token-level likelihoods reach 1 - 1e-9) apart,
#: while one confidently wrong "100%" costs at most 27.6 nats in the fit instead of infinity.
LOGIT_EPS: float = 1e-12

Bounds = Sequence[tuple[float | None, float | None]]


def clip_probability(p: FloatArray) -> FloatArray:
    return np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)


def logit(p: FloatArray) -> FloatArray:
    """``log(p / (1 - p))`` of the clipped confidence."""
    p = clip_probability(p)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: FloatArray) -> FloatArray:
    """``1 / (1 + exp(-z))`` without overflow, accurate in both tails."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_loss_on_logits(z: FloatArray, y: FloatArray, w: FloatArray) -> float:
    """Weighted mean of ``-log P(y | sigmoid(z)) = softplus(z) - y z``; ``w`` sums to 1."""
    return float(np.dot(w, np.logaddexp(0.0, z) - y * z))


def _projected_gradient_norm(x: FloatArray, grad: FloatArray, bounds: Bounds) -> float:
    g = np.array(grad, dtype=np.float64)
    for i, (low, high) in enumerate(bounds):
        if low is not None and x[i] <= low and g[i] > 0:
            g[i] = 0.0
        if high is not None and x[i] >= high and g[i] < 0:
            g[i] = 0.0
    return float(np.max(np.abs(g)))


def minimize_bounded(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    x0: Sequence[float],
    bounds: Bounds,
    what: str,
) -> FloatArray:
    """Minimise a smooth convex ``objective`` (value and gradient) by L-BFGS-B within ``bounds``.

    L-BFGS-B sometimes reports an "abnormal" line-search stop when it is already at the optimum to
    float precision; that result is accepted when its projected gradient is below 1e-6. Any other
    failure raises :class:`FitError` with the optimiser's message.
    """
    from scipy.optimize import minimize

    result = minimize(objective, np.asarray(x0, dtype=np.float64), jac=True, method="L-BFGS-B",
                      bounds=bounds, options={"maxiter": 1000, "ftol": 0.0, "gtol": 1e-10})
    x = np.asarray(result.x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise FitError(f"{what} failed: the optimiser returned non-finite parameters "
                       f"({result.message})")
    if not result.success and _projected_gradient_norm(x, result.jac, bounds) > 1e-6:
        raise FitError(f"{what} did not converge after {result.nit} iterations: "
                       f"{result.message}")
    return x
