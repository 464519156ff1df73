"""Interval types of recal.metrics.intervals: known answers, coverage, and the API around them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recal.metrics import INTERVALS, METRICS, binned_ece, bootstrap, compute_all
from recal.metrics.intervals import bootstrap_intervals, default_interval

# --------------------------------------------------------------------------- known answers


def test_floor_interval_by_hand_two_answers_at_one_half() -> None:
    """Two answers at confidence 0.5 (one bin). A calibrated predictor gets k ~ Bin(2, 1/2) right:
    ECE = |0.5 - k/2| is 0.5 (prob 1/2: k = 0 or 2) or 0 (prob 1/2), so the 95% noise floor is
    0.5 and the floor interval is [ECE - 0.5, ECE + 0.5] clipped to [0, 1]."""
    one_right = bootstrap("ece", [0.5, 0.5], [1, 0], n_resamples=2000, interval="floor")
    assert one_right.estimate == 0.0 and one_right.noise_floor == 0.5
    assert (one_right.low, one_right.high) == (0.0, 0.5)
    both_right = bootstrap("ece", [0.5, 0.5], [1, 1], n_resamples=2000, interval="floor")
    assert both_right.estimate == 0.5 and (both_right.low, both_right.high) == (0.0, 1.0)


def test_basic_and_percentile_by_hand_two_answers_at_one_half() -> None:
    """Resampling [1, 0]: k* ~ Bin(2, 1/2) right, ECE* is 0 or 0.5 with probability 1/2 each, so
    the 95% percentile interval is [0, 0.5] and the basic one [2*0 - 0.5, 2*0 - 0] -> [0, 0]."""
    results = bootstrap_intervals("ece", [0.5, 0.5], [1, 0], n_resamples=2000)
    assert (results["percentile"].low, results["percentile"].high) == (0.0, 0.5)
    assert (results["basic"].low, results["basic"].high) == (0.0, 0.0)
    assert [r.interval for r in results.values()] == list(INTERVALS)


def test_floor_of_a_certain_predictor_is_zero() -> None:
    # Confidence 1 and always right: every calibrated dataset is the data itself.
    result = bootstrap("smooth_ece", np.ones(20), np.ones(20), n_resamples=50)
    assert result.interval == "floor" and result.noise_floor == 0.0
    assert result.low == result.high == result.estimate


@pytest.mark.parametrize("discrete", [True, False], ids=["k/10", "continuous"])
def test_batched_floor_matches_simulating_labels(discrete: bool) -> None:
    """The engine's calibrated datasets (binomial counts per level) against drawing each label
    as Bernoulli(confidence) and calling the plain function (the callable path)."""
    rng = np.random.default_rng(5)
    conf = rng.uniform(size=300) if not discrete else np.round(rng.uniform(size=300) * 10) / 10
    corr = (rng.uniform(size=300) < conf).astype(float)
    fast = bootstrap("ece", conf, corr, n_resamples=3000, seed=1)
    slow = bootstrap(lambda c, y: binned_ece(c, y), conf, corr, n_resamples=1500, seed=2,
                     interval="floor")
    assert fast.noise_floor == pytest.approx(slow.noise_floor, rel=0.08)


# --------------------------------------------------------------------------- coverage


def coverage(metric: str, draw, truth: float, replications: int, interval: str | None) -> float:
    rng = np.random.default_rng(11)
    hits = 0
    for r in range(replications):
        conf, corr = draw(rng)
        result = bootstrap(metric, conf, corr, n_resamples=100, seed=r, interval=interval)
        hits += result.low <= truth <= result.high
    return hits / replications


def calibrated_k10(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    conf = rng.integers(3, 11, size=200) / 10
    return conf, (rng.uniform(size=200) < conf).astype(float)


def overconfident_at_08(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every answer at confidence 0.8, right with probability 0.6: true ECE 0.2 exactly."""
    return np.full(100, 0.8), (rng.uniform(size=100) < 0.6).astype(float)


@pytest.mark.parametrize("metric,replications", [("ece", 40), ("smooth_ece", 10)])
def test_floor_interval_covers_a_calibrated_predictor_and_percentile_does_not(
    metric: str, replications: int
) -> None:
    # True calibration error 0; expected coverage 0.95 for the floor interval.
    assert coverage(metric, calibrated_k10, 0.0, replications, None) >= 0.8  # the default
    assert coverage(metric, calibrated_k10, 0.0, replications, "percentile") == 0.0


def test_floor_interval_covers_a_miscalibrated_predictor() -> None:
    assert coverage("ece", overconfident_at_08, 0.2, 40, "floor") >= 0.85


# --------------------------------------------------------------------------- API


def test_defaults_and_labels() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=400)
    corr = (rng.uniform(size=400) < conf).astype(float)
    results = compute_all(conf, corr, n_resamples=100)
    for name, result in results.items():
        spec = METRICS[name]
        assert result.interval == default_interval(spec)
        assert result.interval == ("floor" if spec.calibration_error else "percentile")
        assert math.isnan(result.noise_floor) == (result.interval != "floor")
        assert result.low <= result.estimate <= result.high
    assert {r.interval for r in compute_all(conf, corr, n_resamples=50,
                                            interval="basic").values()} == {"basic"}
    percentile = compute_all(conf, corr, n_resamples=100, interval="percentile")
    assert percentile["brier_score"] == results["brier_score"]  # same resamples, same seed
    assert percentile["ece"].std == results["ece"].std
    floor = compute_all(conf, corr, n_resamples=100, interval="floor")
    assert floor["ece"] == results["ece"] and floor["auroc"].interval == "percentile"
    for kind, result in bootstrap_intervals("smooth_ece", conf, corr, n_resamples=100).items():
        assert result == bootstrap("smooth_ece", conf, corr, n_resamples=100, interval=kind)


def test_bad_interval_arguments() -> None:
    with pytest.raises(ValueError, match="interval must be one of 'percentile', 'basic'"):
        bootstrap("ece", [0.5], [1], interval="bca")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'floor' is for calibration errors; 'auroc'"):
        bootstrap("auroc", [0.5, 0.6], [1, 0], interval="floor")
    with pytest.raises(ValueError, match="interval must be one of"):
        compute_all([0.5], [1], interval="wide")  # type: ignore[arg-type]


def test_percentile_bounds_are_the_central_quantiles():
    from recal.metrics.intervals import percentile_bounds

    values = np.arange(1001) / 1000.0  # its q-quantile is q exactly
    np.testing.assert_allclose(percentile_bounds(values, 0.9), [0.05, 0.95])
    np.testing.assert_allclose(percentile_bounds(values, 0.5), [0.25, 0.75])
    rows = np.stack([values, 2 * values])
    np.testing.assert_allclose(percentile_bounds(rows, 0.8, axis=1), [[0.1, 0.2], [0.9, 1.8]])
