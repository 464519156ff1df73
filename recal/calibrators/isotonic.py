"""Isotonic regression: the best non-decreasing map (Zadrozny & Elkan 2002)."""

from __future__ import annotations

import numpy as np

from recal.calibrators.base import RECALIBRATORS, FloatArray, Recalibrator

__all__ = ["IsotonicRecalibrator"]


@RECALIBRATORS.register("isotonic")
class IsotonicRecalibrator(Recalibrator):
    """The non-decreasing step map that minimises the weighted squared error to ``correct``.

    Fitted with ``sklearn.isotonic.IsotonicRegression(increasing=True, out_of_bounds="clip",
    y_min=0, y_max=1)`` (pool adjacent violators, imported inside ``fit`` only). Its thresholds
    are kept as ``x_thresholds_`` / ``y_thresholds_`` and the map is applied with ``np.interp``
    (linear between thresholds, constant beyond the ends, as scikit-learn predicts), so a saved
    map loads and predicts with numpy alone.

    Isotonic regression is flexible: on small calibration sets it overfits (flat steps at 0 or
    1); prefer cross-fitting (:func:`recal.calibrators.crossval.cross_val_predict`) or a
    parametric method there.

    Edge cases: fewer than 2 correct or 2 wrong answers are refused (``DegenerateSplitError``,
    see :mod:`recal.calibrators.base`); a single confidence value gives one threshold, and every
    confidence maps to the observed accuracy.
    """

    name = "isotonic"
    _state_spec = {"x_thresholds": "array", "y_thresholds": "array"}

    x_thresholds_: FloatArray
    y_thresholds_: FloatArray

    def _fit(self, conf: FloatArray, corr: FloatArray, weight: FloatArray) -> None:
        from sklearn.isotonic import IsotonicRegression

        engine = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0)
        engine.fit(conf, corr, sample_weight=weight)
        self.x_thresholds_ = np.asarray(engine.X_thresholds_, dtype=np.float64)
        self.y_thresholds_ = np.asarray(engine.y_thresholds_, dtype=np.float64)

    def _predict(self, conf: FloatArray) -> FloatArray:
        return np.interp(conf, self.x_thresholds_, self.y_thresholds_)

    def _check_state(self) -> None:
        x, y = self.x_thresholds_, self.y_thresholds_
        if x.size == 0 or x.size != y.size:
            raise ValueError(f"keys 'state.x_thresholds' and 'state.y_thresholds' must be "
                             f"non-empty and of the same length, got {x.size} and {y.size}")
        if np.any(np.diff(x) <= 0) or x[0] < 0 or x[-1] > 1:
            raise ValueError("key 'state.x_thresholds' must increase strictly within [0, 1]")
        if np.any(np.diff(y) < 0) or y[0] < 0 or y[-1] > 1:
            raise ValueError("key 'state.y_thresholds' must be non-decreasing within [0, 1]")
