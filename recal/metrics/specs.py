"""One spec per metric: its checked function, its unchecked compute, its batched bootstrap compute,
its direction and its range, registered once in :data:`METRIC_SPECS`.

:data:`METRICS` is the same set in registration order (the order of :func:`compute_all`'s result
and of reports). A new metric is one :func:`register_metric` call here; the contract tests in
``tests/test_metric_specs.py`` then check it (direction and range declared, the batched compute
equal to the point compute on the full sample, values inside the range).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy.typing as npt

from recal.metrics.binned import (
    DEFAULT_BINS,
    binned_ece,
    binned_ece_unchecked,
    debiased_ece,
    debiased_ece_unchecked,
    debiased_from_sums,
    ece_from_sums,
    mce,
    mce_unchecked,
)
from recal.metrics.point import (
    accuracy,
    accuracy_unchecked,
    aurc,
    aurc_from_blocks,
    aurc_unchecked,
    auroc,
    auroc_from_blocks,
    auroc_unchecked,
    brier_score,
    brier_score_unchecked,
    log_loss,
    log_loss_unchecked,
    mean_confidence,
    mean_confidence_unchecked,
    value_blocks,
)
from recal.metrics.resampling import Resamples
from recal.metrics.selective import (
    SELECTIVE_COVERAGE,
    prediction_rejection_ratio,
    prr_from_blocks,
    selective_accuracy,
    selective_accuracy_from_blocks,
)
from recal.metrics.smooth import smooth_ece, smooth_ece_unchecked
from recal.metrics.validation import FloatArray
from recal.registry import Registry

__all__ = ["METRICS", "METRIC_SPECS", "MetricInfo", "MetricSpec", "register_metric",
           "resolve_metric"]


@dataclass(frozen=True)
class MetricSpec:
    """Everything recal knows about one metric, in one registered object.

    ``function(confidence, correct)`` checks its input and returns the metric; ``compute(conf,
    corr)`` is the same number on arrays already checked (float64, 1-D, same length);
    ``batch(resamples)`` gives the metric of every row of a :class:`Resamples` at once (the
    bootstrap engine's fast path; its last row is the data itself). ``higher_is_better`` is
    ``None`` for a descriptive number (mean confidence). ``calibration_error`` marks the metrics
    whose plug-in estimate is biased upward (the bias-aware interval is their default).
    """

    name: str
    function: Callable[[npt.ArrayLike, npt.ArrayLike], float]
    compute: Callable[[FloatArray, FloatArray], float]
    batch: Callable[[Resamples], FloatArray]
    higher_is_better: bool | None
    range: tuple[float, float]
    description: str
    calibration_error: bool = False


#: The former name of :class:`MetricSpec` (``METRICS[name].function`` etc. still work).
MetricInfo = MetricSpec

METRIC_SPECS: Registry[MetricSpec] = Registry("metric")
_IN_ORDER: dict[str, MetricSpec] = {}
#: Every registered metric, name -> spec, in registration order (read-only view).
METRICS: Mapping[str, MetricSpec] = MappingProxyType(_IN_ORDER)


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to :data:`METRIC_SPECS` and :data:`METRICS`; a taken name is refused."""
    if spec.name != spec.name.lower():
        raise ValueError(f"metric names are lower case, got {spec.name!r}")
    low, high = spec.range
    if not low < high:
        raise ValueError(f"metric {spec.name!r} has an empty range {spec.range!r}")
    METRIC_SPECS.register(spec.name, spec)
    _IN_ORDER[spec.name] = spec
    return spec


def resolve_metric(metric: str | Callable[..., float]) -> MetricSpec | None:
    """The spec of ``metric`` (a registered name, or a registered spec's ``function``); ``None``
    for any other callable. An unknown name raises ``ValueError`` with "did you mean"."""
    if isinstance(metric, str):
        if metric in METRICS:
            return METRICS[metric]
        close = difflib.get_close_matches(metric, list(METRICS), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"metric {metric!r} is not in METRICS{hint} (known: "
                         f"{', '.join(METRICS)})")
    if not callable(metric):
        raise ValueError(f"metric must be a name in METRICS or a callable, got {metric!r}")
    for spec in METRICS.values():
        if spec.function is metric:
            return spec
    return None


# --------------------------------------------------------------------------- the metrics


def _ece_mass(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Binned ECE with 15 equal-mass bins (:func:`binned_ece` with ``binning="mass"``)."""
    return binned_ece(confidence, correct, binning="mass")


def _descending(r: Resamples) -> tuple[FloatArray, FloatArray]:
    """Per-level (count, wrong) of every resample, most confident level first."""
    count = r.level_count[:, ::-1]
    return count, count - r.level_right[:, ::-1]


def _aurc_batch(r: Resamples) -> FloatArray:
    return aurc_from_blocks(*_descending(r), r.cells.n)


def _selective_accuracy_10(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Accuracy among the 10% most confident answers (:func:`selective_accuracy`)."""
    return selective_accuracy(confidence, correct, SELECTIVE_COVERAGE)


def _selective_accuracy_10_unchecked(conf: FloatArray, corr: FloatArray) -> float:
    count, right = value_blocks(conf, corr)
    return float(selective_accuracy_from_blocks(count[::-1], (count - right)[::-1], conf.size))


def _prr_unchecked(conf: FloatArray, corr: FloatArray) -> float:
    count, right = value_blocks(conf, corr)
    return float(prr_from_blocks(count[::-1], (count - right)[::-1], conf.size))


UNIT = (0.0, 1.0)

register_metric(MetricSpec(
    "smooth_ece", smooth_ece, lambda c, y: smooth_ece_unchecked(c, y)[0],
    lambda r: r.smooth_ece(), False, UNIT,
    "smooth ECE with its automatic bandwidth (Błasiok & Nakkiran 2023)", calibration_error=True,
))
register_metric(MetricSpec(
    "ece", binned_ece, binned_ece_unchecked,
    lambda r: ece_from_sums(*r.width_bins(DEFAULT_BINS), 1), False, UNIT,
    "binned ECE, 15 equal-width bins (netcal's ECE)", calibration_error=True,
))
register_metric(MetricSpec(
    "ece_mass", _ece_mass, lambda c, y: binned_ece_unchecked(c, y, binning="mass"),
    lambda r: ece_from_sums(*r.mass_bins(DEFAULT_BINS), 1), False, UNIT,
    "binned ECE, 15 equal-mass bins", calibration_error=True,
))
register_metric(MetricSpec(
    "mce", mce, mce_unchecked,
    lambda r: ece_from_sums(*r.width_bins(DEFAULT_BINS), math.inf), False, UNIT,
    "maximum calibration error over 15 equal-width bins", calibration_error=True,
))
register_metric(MetricSpec(
    "debiased_ece", debiased_ece, debiased_ece_unchecked,
    lambda r: debiased_from_sums(*r.mass_bins(DEFAULT_BINS), False), False, UNIT,
    "debiased l2 calibration error, 15 equal-mass bins (Kumar et al. 2019)",
    calibration_error=True,
))
register_metric(MetricSpec(
    "brier_score", brier_score, brier_score_unchecked,
    lambda r: r.linear(r.cells.brier_mean), False, UNIT,
    "mean squared difference between confidence and correctness",
))
register_metric(MetricSpec(
    "log_loss", log_loss, log_loss_unchecked,
    lambda r: r.linear(r.cells.log_loss_mean), False, (0.0, math.inf),
    "mean negative log-likelihood of correctness under the confidence",
))
register_metric(MetricSpec(
    "auroc", auroc, auroc_unchecked,
    lambda r: auroc_from_blocks(r.level_count, r.level_right), True, UNIT,
    "how well confidence ranks right answers above wrong ones (nan: 1 class)",
))
register_metric(MetricSpec(
    "aurc", aurc, aurc_unchecked, _aurc_batch, False, UNIT,
    "area under the risk-coverage curve (Geifman & El-Yaniv 2017)",
))
register_metric(MetricSpec(
    "prr", prediction_rejection_ratio, _prr_unchecked,
    lambda r: prr_from_blocks(*_descending(r), r.cells.n), True, (-math.inf, 1.0),
    "prediction-rejection ratio: share of the way from a random to a perfect ranking (nan: 1 "
    "class)",
))
register_metric(MetricSpec(
    "selective_accuracy_10", _selective_accuracy_10, _selective_accuracy_10_unchecked,
    lambda r: selective_accuracy_from_blocks(*_descending(r), r.cells.n), True, UNIT,
    "accuracy among the 10% most confident answers (HELM's selective accuracy)",
))
register_metric(MetricSpec(
    "accuracy", accuracy, accuracy_unchecked, lambda r: r.linear(r.cells.right), True, UNIT,
    "fraction of correct answers",
))
register_metric(MetricSpec(
    "mean_confidence", mean_confidence, mean_confidence_unchecked,
    lambda r: r.linear(r.cells.conf_mean), None, UNIT,
    "average confidence (compare with accuracy)",
))
