"""Recalibrators: maps from a model's stated confidence to a calibrated probability.

========================  ==============  ===============================================
class                     name            map
========================  ==============  ===============================================
IdentityRecalibrator      identity        ``p`` (no recalibration; the baseline row)
TemperatureScaling        temperature     ``sigmoid(logit(p) / T)``
PlattScaling              platt           ``sigmoid(a logit(p) + b)``, ``a >= 0``
IsotonicRecalibrator      isotonic        best non-decreasing step map (PAV)
HistogramBinning          histogram       accuracy of each equal-mass bin, smoothed
BetaCalibration           beta            ``sigmoid(a ln p - b ln(1 - p) + c)``, ``a, b >= 0``
========================  ==============  ===============================================

Each is an estimator (``fit(confidence, correct, sample_weight=None)`` then
``predict_proba(confidence)``), registered in :data:`RECALIBRATORS` by a decorator on its class
(``@RECALIBRATORS.register("platt")``, the style of every recal registry; see
:mod:`recal.registry`), and saved as JSON data with :func:`save` / :func:`load`. The edge
cases they share (tiny sets; too few of a class, refused with :class:`DegenerateSplitError`;
constant confidence) are decided in :mod:`recal.calibrators.base`. Only numpy is imported here;
scipy and scikit-learn are imported inside ``fit``.
"""

from recal.calibrators.base import (
    MIN_CLASS_SIZE,
    MIN_RELIABLE_SIZE,
    RECALIBRATORS,
    CalibrationWarning,
    DegenerateSplitError,
    FitError,
    NotFittedError,
    Recalibrator,
    clone,
    get_recalibrator,
)
from recal.calibrators.beta import BetaCalibration
from recal.calibrators.crossval import cross_val_predict, split_calibration
from recal.calibrators.histogram import HistogramBinning
from recal.calibrators.identity import IdentityRecalibrator
from recal.calibrators.io import SCHEMA, load, save
from recal.calibrators.isotonic import IsotonicRecalibrator
from recal.calibrators.platt import PlattScaling
from recal.calibrators.temperature import TemperatureScaling

__all__ = [
    "MIN_CLASS_SIZE",
    "MIN_RELIABLE_SIZE",
    "RECALIBRATORS",
    "SCHEMA",
    "BetaCalibration",
    "CalibrationWarning",
    "DegenerateSplitError",
    "FitError",
    "HistogramBinning",
    "IdentityRecalibrator",
    "IsotonicRecalibrator",
    "NotFittedError",
    "PlattScaling",
    "Recalibrator",
    "TemperatureScaling",
    "clone",
    "cross_val_predict",
    "get_recalibrator",
    "load",
    "save",
    "split_calibration",
]
