"""Peer baselines: netcal's and scikit-learn's recalibrators, fitted on the same scores.

========================  ==================================================
netcal:<name>             netcal's temperature, logistic, beta, histogram,
                          isotonic
sklearn:isotonic/platt    scikit-learn's IsotonicRegression and
                          LogisticRegression on logit(confidence)
========================  ==================================================

The libraries are imported when a method is fitted, so ``import recal`` needs neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recal.repairs.base import RepairMethod, register_repair

__all__ = ["Netcal", "SklearnIsotonic", "SklearnPlatt"]

_EPS = 1e-12


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)


@dataclass
class Netcal(RepairMethod):
    factory: Callable[[], Any]
    family: str = "peer"

    def fit_predict(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                    conf: np.ndarray) -> np.ndarray:
        import contextlib
        import io
        import warnings

        model = self.factory()
        # netcal prints its warnings (e.g. one class in a small split) to stdout.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            model.fit(_clip(cal_conf), cal_corr.astype(int))
            out = np.asarray(model.transform(_clip(conf)), dtype=float).reshape(-1)
        return np.clip(out, 0.0, 1.0)


def _netcal(module: str, cls: str, **kwargs: Any) -> Callable[[], Any]:
    def make() -> Any:
        import importlib

        return getattr(importlib.import_module(module), cls)(**kwargs)
    return make


for _name, (_module, _cls, _kw) in {
    "netcal:temperature": ("netcal.scaling", "TemperatureScaling", {}),
    "netcal:logistic": ("netcal.scaling", "LogisticCalibration", {}),
    "netcal:beta": ("netcal.scaling", "BetaCalibration", {}),
    "netcal:histogram": ("netcal.binning", "HistogramBinning", {"bins": 10}),
    "netcal:isotonic": ("netcal.binning", "IsotonicRegression", {}),
}.items():
    register_repair(_name, Netcal(_netcal(_module, _cls, **_kw)), default=True,
                    help=f"peer baseline: netcal's {_module}.{_cls}")


class SklearnIsotonic(RepairMethod):
    family = "peer"

    def fit_predict(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                    conf: np.ndarray) -> np.ndarray:
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        return np.asarray(model.fit(cal_conf, cal_corr).predict(conf), dtype=float)


class SklearnPlatt(RepairMethod):
    """Platt scaling as scikit-learn's CalibratedClassifierCV does it: a logistic regression on
    the logit of the confidence (default L2 penalty, C = 1)."""

    family = "peer"

    def fit_predict(self, cal_conf: np.ndarray, cal_corr: np.ndarray,
                    conf: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        def logit(p: np.ndarray) -> np.ndarray:
            p = _clip(p)
            return np.log(p / (1 - p)).reshape(-1, 1)

        if len(np.unique(cal_corr)) < 2:  # one class: sklearn refuses; predict the base rate
            return np.full(len(conf), float(cal_corr.mean()))
        model = LogisticRegression().fit(logit(cal_conf), cal_corr.astype(int))
        return np.asarray(model.predict_proba(logit(conf))[:, 1], dtype=float)


register_repair("sklearn:isotonic", SklearnIsotonic(), default=True,
                help="peer baseline: scikit-learn's IsotonicRegression")
register_repair("sklearn:platt", SklearnPlatt(), default=True,
                help="peer baseline: Platt scaling as scikit-learn's CalibratedClassifierCV")
