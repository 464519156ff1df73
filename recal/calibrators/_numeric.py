"""Numerics shared by the parametric recalibrators: the probability their logit or log features
read (a smoothed share for confidences on a grid k/M, a clipped one otherwise), a stable sigmoid,
the log loss on logits, and a bounded smooth minimiser that raises with the optimiser's reason.

scipy is imported inside :func:`minimize_bounded` only, so that loading and applying a fitted map
needs numpy alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from recal.calibrators.base import FitError

__all__ = ["LOGIT_EPS", "MAX_GRID", "check_grid", "clip_probability", "find_grid",
           "log_loss_on_logits", "logit", "minimize_bounded", "model_logit", "model_probability",
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


def model_logit(conf: FloatArray, grid: int) -> FloatArray:
    """``logit`` of :func:`model_probability` (never clipped on a grid: it lies inside (0, 1))."""
    p = model_probability(conf, grid)
    return np.log(p) - np.log1p(-p)


#: The largest M for which confidences that are all multiples of 1/M count as shares k/M.
#: Modal shares use M = 5 to 50 samples and verbalized percentages M = 100; finer "grids" are
#: continuous confidences rounded for display, read as continuous.
MAX_GRID: int = 100


def find_grid(conf: FloatArray) -> int:
    """The smallest ``M <= MAX_GRID`` with every confidence a multiple ``k / M``; 0 if none.

    Shares from M samples give M, or a divisor of M when every observed share happens to be a
    multiple of a coarser step (pass the grid explicitly where M is known).
    """
    levels = np.unique(conf)
    for m in range(1, MAX_GRID + 1):
        scaled = levels * m
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-9 * m):
            return m
    return 0


def check_grid(grid: object) -> int | None:
    """A ``grid`` hyperparameter: ``None`` (found from the fitted confidences) or an int >= 0."""
    if grid is None:
        return None
    if isinstance(grid, int | np.integer) and not isinstance(grid, bool) and grid >= 0:
        return int(grid)
    raise ValueError(f"grid must be None (found from the data), 0 (continuous) or the number "
                     f"of samples M >= 1, got {grid!r}")


def model_probability(conf: FloatArray, grid: int) -> FloatArray:
    """The probability a parametric map reads for each confidence, strictly inside (0, 1).

    On a grid of shares ``k / M`` (``grid = M >= 1``) it is the smoothed share
    ``(k + 1/2) / (M + 1) = (M p + 1/2) / (M + 1)``: the posterior mean of the class's
    probability under the Jeffreys prior Beta(1/2, 1/2) after k of M samples, whose logit is the
    empirical logit ``log((k + 1/2) / (M - k + 1/2))`` of Haldane (1955) and Anscombe (1956),
    the classic finite estimate of a binomial proportion's logit. A share of 1 then reads
    ``logit((M + 1/2) / (M + 1)) = log(2M + 1)`` (3.04 for M = 10), fixed by M alone and not by
    a clipping constant. The map is affine, so it applies to any p in [0, 1].

    Continuous confidences (``grid = 0``) are clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]``.
    """
    if grid:
        return (grid * conf + 0.5) / (grid + 1.0)
    return clip_probability(conf)


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
