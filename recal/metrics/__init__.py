"""Calibration metrics on ``(confidence, correct)`` arrays, and fast bootstrap intervals for them.

Every metric takes two 1-D arrays of the same length: ``confidence[i]`` in [0, 1] is the model's
stated probability that its answer to question ``i`` is right, and ``correct[i]`` (bool, or 0/1)
says whether it was. Public functions check their input and raise ``ValueError`` naming the
argument; the private ``_..._compute`` versions skip the checks, for loops that have checked once
already.

Which way is better and the range of each metric are recorded in its spec in :data:`METRICS`:

==================  ==========  ============  ===============================================
name                better      range         what
==================  ==========  ============  ===============================================
smooth_ece          lower       [0, 1]        smooth ECE, Błasiok & Nakkiran 2023
ece                 lower       [0, 1]        binned ECE, 15 equal-width bins (as netcal)
ece_mass            lower       [0, 1]        binned ECE, 15 equal-mass bins
mce                 lower       [0, 1]        max calibration error, 15 equal-width bins
debiased_ece        lower       [0, 1]        debiased l2 calibration error, Kumar et al. 2019
brier_score         lower       [0, 1]        mean squared error of the confidence
log_loss            lower       [0, inf)      mean negative log-likelihood of ``correct``
auroc               higher      [0, 1]        how well confidence separates right from wrong
aurc                lower       [0, 1]        area under the risk-coverage curve
prr                 higher      (-inf, 1]     prediction-rejection ratio (0 random, 1 perfect)
selective_accuracy  higher      [0, 1]        accuracy of the 10% most confident answers
_10
accuracy            higher      [0, 1]        fraction correct
mean_confidence     neither     [0, 1]        average confidence
==================  ==========  ============  ===============================================

:func:`bootstrap` and :func:`compute_all` give intervals over 1,000 resamples of 100,000
predictions in well under a second (the noise-floor interval for calibration errors, whose
percentile interval does not cover; the percentile interval for the rest; see
:mod:`recal.metrics.intervals`): rather than materialising a (resamples x n) index array, each
resample is a multinomial count vector over a few hundred *cells* (confidence level x correct), and
every metric is computed for all resamples at once from per-cell sums (see :func:`bootstrap`).

The package, one module per concern (only numpy is imported):

==================  =========================================================================
module              holds
==================  =========================================================================
``validation``      the input checks every metric (and every recalibrator) shares
``point``           accuracy, mean confidence, Brier score, log loss, AUROC, AURC
``binned``          binned ECE (equal width or mass), MCE, debiased l2 error (Kumar et al.)
``smooth``          smooth ECE and its smoothed calibration curve (relplot's computation)
``resampling``      the one bootstrap engine: cells, count draws, batched metrics
``specs``           one :class:`MetricSpec` per metric, registered in ``METRIC_SPECS``
``intervals``       :func:`bootstrap`, :func:`compute_all`, :class:`BootstrapResult`
``selective``       risk-coverage curve, selective accuracy, prediction-rejection ratio
``reliability``     reliability-diagram data (:func:`reliability_data`); drawn by recal.plots
==================  =========================================================================
"""

from __future__ import annotations

from recal.metrics.binned import binned_ece, debiased_ece, mce
from recal.metrics.intervals import (
    INTERVALS,
    BootstrapResult,
    Interval,
    bootstrap,
    compute_all,
)
from recal.metrics.point import (
    LOG_LOSS_EPS,
    accuracy,
    aurc,
    auroc,
    brier_score,
    log_loss,
    mean_confidence,
)
from recal.metrics.reliability import ReliabilityData, reliability_data
from recal.metrics.selective import (
    RiskCoverage,
    prediction_rejection_ratio,
    risk_coverage_curve,
    selective_accuracy,
)
from recal.metrics.smooth import SmoothCurve, smooth_calibration_curve, smooth_ece
from recal.metrics.specs import (
    METRIC_SPECS,
    METRICS,
    MetricInfo,
    MetricSpec,
    register_metric,
)

__all__ = [
    "INTERVALS",
    "LOG_LOSS_EPS",
    "METRICS",
    "METRIC_SPECS",
    "BootstrapResult",
    "Interval",
    "MetricInfo",
    "MetricSpec",
    "ReliabilityData",
    "RiskCoverage",
    "SmoothCurve",
    "accuracy",
    "aurc",
    "auroc",
    "binned_ece",
    "bootstrap",
    "brier_score",
    "compute_all",
    "debiased_ece",
    "log_loss",
    "mce",
    "mean_confidence",
    "prediction_rejection_ratio",
    "register_metric",
    "reliability_data",
    "risk_coverage_curve",
    "selective_accuracy",
    "smooth_calibration_curve",
    "smooth_ece",
]
