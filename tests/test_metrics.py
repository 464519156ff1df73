"""Tests for recal.metrics: reference implementations, known values, edge cases, bad input and
the bootstrap."""

from __future__ import annotations

import bisect
import itertools
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import relplot
from netcal.metrics import ECE, MCE
from relplot.kernels import ReflectedGaussianKernel
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.metrics import log_loss as sk_log_loss

from recal.metrics import (
    LOG_LOSS_EPS,
    METRICS,
    BootstrapResult,
    SmoothCurve,
    accuracy,
    aurc,
    auroc,
    binned_ece,
    bootstrap,
    brier_score,
    compute_all,
    debiased_ece,
    log_loss,
    mce,
    mean_confidence,
    resampling,
    smooth_calibration_curve,
    smooth_ece,
)
from recal.metrics.smooth import smooth_ece_unchecked
from recal.metrics.specs import METRIC_SPECS

SIZES = [1, 2, 37, 500, 5000]


def make_data(n: int, seed: int, kind: str = "continuous") -> tuple[np.ndarray, np.ndarray]:
    """Over-confident at the top, under-confident at the bottom, so bins disagree in sign."""
    rng = np.random.default_rng(seed)
    conf = rng.beta(4.0, 1.5, n)
    if kind == "discrete":
        conf = np.round(conf * 20) / 20  # verbalised confidences: 0, 0.05, ..., 1
    elif kind == "edges":
        conf = np.round(conf * 30) / 30  # many values exactly on a 15-bin edge
        conf[: max(1, n // 10)] = 1.0
        conf[n // 10 : n // 5] = 0.0
    p_correct = np.clip(0.15 + 0.8 * conf**2, 0, 1)
    return conf, (rng.random(n) < p_correct).astype(float)


# --------------------------------------------------------------------------- references


def kumar_equal_bins(probs: np.ndarray, num_bins: int) -> list[float]:
    """calibration.get_equal_bins (Kumar et al.'s uncertainty-calibration library)."""
    sorted_probs = sorted(probs)
    num_bins = min(num_bins, len(sorted_probs))
    groups = np.array_split(sorted_probs, num_bins)
    bins = [(groups[i][-1] + groups[i + 1][0]) / 2.0 for i in range(len(groups) - 1)]
    bins.append(1.0)
    return sorted(set(bins))


def kumar_binned(probs: np.ndarray, labels: np.ndarray, num_bins: int) -> list[list[tuple]]:
    bins = kumar_equal_bins(probs, num_bins)
    binned: list[list[tuple]] = [[] for _ in bins]
    for p, y in zip(probs, labels, strict=True):
        binned[bisect.bisect_left(bins, p)].append((p, y))
    return binned


def kumar_plugin_ece(probs: np.ndarray, labels: np.ndarray, num_bins: int) -> float:
    n = len(probs)
    return sum(
        len(b) / n * abs(np.mean([p for p, _ in b]) - np.mean([y for _, y in b]))
        for b in kumar_binned(probs, labels, num_bins)
        if b
    )


def kumar_unbiased_square_ce(probs: np.ndarray, labels: np.ndarray, num_bins: int) -> float:
    """calibration.unbiased_square_ce over get_equal_bins bins."""
    n, total = len(probs), 0.0
    for b in kumar_binned(probs, labels, num_bins):
        if len(b) < 2:
            continue
        mean_label = np.mean([y for _, y in b])
        biased = (np.mean([p - y for p, y in b])) ** 2
        total += len(b) / n * (biased - mean_label * (1 - mean_label) / (len(b) - 1))
    return total


def aurc_by_definition(conf: np.ndarray, corr: np.ndarray) -> float:
    """Expected AURC over every ordering of tied confidences, by enumeration (tiny inputs)."""
    n = len(conf)
    values = []
    for perm in itertools.permutations(range(n)):
        if any(conf[perm[i]] < conf[perm[i + 1]] for i in range(n - 1)):
            continue
        errors = np.cumsum(1 - corr[list(perm)])
        values.append(np.mean(errors / np.arange(1, n + 1)))
    return float(np.mean(values))


# --------------------------------------------------------------------------- reference agreement


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["continuous", "discrete", "edges"])
def test_binned_ece_and_mce_match_netcal(n: int, kind: str) -> None:
    conf, corr = make_data(n, seed=n, kind=kind)
    for bins in (15, 10, 7):
        assert binned_ece(conf, corr, n_bins=bins) == pytest.approx(
            ECE(bins).measure(conf, corr), abs=1e-9
        )
        assert mce(conf, corr, n_bins=bins) == pytest.approx(
            MCE(bins).measure(conf, corr), abs=1e-9
        )


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["continuous", "discrete", "edges"])
def test_brier_log_loss_auroc_match_sklearn(n: int, kind: str) -> None:
    conf, corr = make_data(n, seed=n + 1, kind=kind)
    assert brier_score(conf, corr) == pytest.approx(brier_score_loss(corr, conf), abs=1e-12)
    assert log_loss(conf, corr) == pytest.approx(
        sk_log_loss(corr, conf, labels=[0, 1]), abs=1e-12
    )
    if 0 < corr.sum() < n:
        assert auroc(conf, corr) == pytest.approx(roc_auc_score(corr, conf), abs=1e-12)


@pytest.mark.parametrize("n", [5, 37, 500, 5000, 40000])
@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_smooth_ece_matches_relplot(n: int, kind: str) -> None:
    conf, corr = make_data(n, seed=n + 2, kind=kind)
    expected, width = relplot.smECE(conf, corr, return_width=True)
    assert smooth_ece(conf, corr) == pytest.approx(expected, abs=1e-3)
    assert smooth_ece(conf, corr) == pytest.approx(expected, abs=1e-10)  # in fact to rounding
    curve = smooth_calibration_curve(conf, corr)
    assert curve.bandwidth == width
    for sigma in (0.003, 0.02, 0.1, 0.5):
        assert smooth_ece(conf, corr, bandwidth=sigma) == pytest.approx(
            relplot.smECE_sigma(conf, corr, sigma), abs=1e-10
        )


def test_smooth_ece_matches_relplot_at_the_ends_of_the_grid() -> None:
    # Confidences within one grid step of 0 and of 1 (the grid has >= 1001 points): the
    # rounding onto the grid's first and last cells is what is tested.
    rng = np.random.default_rng(21)
    conf = np.concatenate([rng.uniform(0, 0.002, 400), rng.uniform(0.998, 1.0, 400),
                           [0.0, 1.0], rng.uniform(0, 1, 200)])
    corr = (rng.random(conf.size) < 0.5).astype(float)
    for sigma in (0.003, 0.05):
        assert smooth_ece(conf, corr, bandwidth=sigma) == pytest.approx(
            relplot.smECE_sigma(conf, corr, sigma), abs=1e-10)


def test_grid_position_rounds_onto_the_two_nearest_points() -> None:
    from recal.metrics.smooth import grid_position

    lower, frac = grid_position(np.array([0.0, 0.001, 0.5, 0.999, 1.0]), 11)
    np.testing.assert_array_equal(lower, [0, 0, 5, 9, 9])
    np.testing.assert_allclose(frac, [0.0, 0.01, 0.0, 0.99, 1.0])


def test_smooth_ece_well_calibrated_small_bandwidth() -> None:
    rng = np.random.default_rng(11)
    conf = rng.beta(5, 2, 30000)
    corr = (rng.random(conf.size) < conf).astype(float)
    expected, width = relplot.smECE(conf, corr, return_width=True)
    assert width < 0.01  # a finer grid than the default 1001 points
    assert smooth_ece(conf, corr) == pytest.approx(expected, abs=1e-10)


def test_smooth_calibration_curve_matches_relplot_kernel() -> None:
    conf, corr = make_data(3000, seed=3)
    curve = smooth_calibration_curve(conf, corr, grid_size=101)
    kernel = ReflectedGaussianKernel(curve.bandwidth)
    assert isinstance(curve, SmoothCurve)
    np.testing.assert_allclose(curve.grid, np.linspace(0, 1, 101))
    np.testing.assert_allclose(curve.accuracy, kernel.smooth(conf, corr, curve.grid)[0], atol=1e-10)
    np.testing.assert_allclose(curve.density, kernel.kde(conf, curve.grid), atol=1e-10)
    assert curve.smooth_ece == pytest.approx(smooth_ece(conf, corr), abs=1e-12)
    assert np.trapezoid(curve.density, curve.grid) == pytest.approx(1.0, abs=0.02)
    fixed = smooth_calibration_curve(conf, corr, bandwidth=0.1)
    assert fixed.bandwidth == 0.1


@pytest.mark.parametrize("n", [1, 2, 14, 15, 16, 37, 500])
@pytest.mark.parametrize("kind", ["continuous", "discrete", "edges"])
def test_equal_mass_bins_and_debiased_match_kumar(n: int, kind: str) -> None:
    conf, corr = make_data(n, seed=n + 3, kind=kind)
    for bins in (15, 4):
        assert binned_ece(conf, corr, n_bins=bins, binning="mass") == pytest.approx(
            kumar_plugin_ece(conf, corr, bins), abs=1e-9
        )
        square = kumar_unbiased_square_ce(conf, corr, bins)
        assert debiased_ece(conf, corr, n_bins=bins, squared=True) == pytest.approx(
            square, abs=1e-9
        )
        assert debiased_ece(conf, corr, n_bins=bins) == pytest.approx(
            math.sqrt(max(square, 0.0)), abs=1e-9
        )


def test_aurc_without_ties_is_mean_selective_risk() -> None:
    conf, corr = make_data(300, seed=4)
    order = np.argsort(-conf)
    risk = np.cumsum(1 - corr[order]) / np.arange(1, conf.size + 1)
    assert aurc(conf, corr) == pytest.approx(risk.mean(), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_aurc_with_ties_is_expected_over_tie_orders(seed: int) -> None:
    rng = np.random.default_rng(seed)
    conf = rng.choice([0.2, 0.6, 0.9], size=7)
    corr = (rng.random(7) < 0.5).astype(float)
    assert aurc(conf, corr) == pytest.approx(aurc_by_definition(conf, corr), abs=1e-12)


def test_aurc_hand_computed_tie() -> None:
    # Tied pair first: orders (right, wrong) and (wrong, right) give risks (0, 1/2, 1/3) and
    # (1, 1/2, 1/3); the average AURC is (5/6 + 11/6) / 6 = 4/9.
    assert aurc([0.9, 0.9, 0.5], [1, 0, 1]) == pytest.approx(4 / 9, abs=1e-12)


# --------------------------------------------------------------------------- known values


def test_perfectly_calibrated_constant() -> None:
    conf = np.full(10, 0.7)
    corr = np.array([1] * 7 + [0] * 3)
    for fn in (binned_ece, mce, debiased_ece, smooth_ece):
        assert fn(conf, corr) == pytest.approx(0.0, abs=1e-12)
    assert binned_ece(conf, corr, binning="mass") == pytest.approx(0.0, abs=1e-12)
    assert brier_score(conf, corr) == pytest.approx(0.21)
    assert accuracy(conf, corr) == pytest.approx(0.7)
    assert mean_confidence(conf, corr) == pytest.approx(0.7)
    assert auroc(conf, corr) == pytest.approx(0.5)
    assert aurc(conf, corr) == pytest.approx(0.3)


def test_all_correct_with_confidence_one() -> None:
    conf, corr = np.ones(20), np.ones(20, dtype=bool)
    for name in ("ece", "ece_mass", "mce", "debiased_ece", "smooth_ece", "brier_score", "aurc"):
        assert METRICS[name].function(conf, corr) == pytest.approx(0.0, abs=1e-12), name
    assert log_loss(conf, corr) == pytest.approx(0.0, abs=1e-15)
    assert accuracy(conf, corr) == 1.0
    assert math.isnan(auroc(conf, corr))


def test_all_wrong_with_confidence_one() -> None:
    conf, corr = np.ones(20), np.zeros(20, dtype=int)
    for name in ("ece", "ece_mass", "mce", "debiased_ece", "brier_score", "aurc"):
        assert METRICS[name].function(conf, corr) == pytest.approx(1.0, abs=1e-12), name
    assert smooth_ece(conf, corr) == pytest.approx(1.0, abs=1e-3)
    assert log_loss(conf, corr) == pytest.approx(-math.log(LOG_LOSS_EPS), abs=1e-9)
    assert log_loss(conf, corr) == pytest.approx(36.0437, abs=1e-4)
    assert accuracy(conf, corr) == 0.0


def test_hand_computed_two_bins() -> None:
    # Bin [0, 0.5): confidences 0.2, 0.4 (mean 0.3), accuracy 0.5 -> gap 0.2, weight 1/2.
    # Bin [0.5, 1]: confidences 0.6, 0.9 (mean 0.75), accuracy 1.0 -> gap 0.25, weight 1/2.
    conf, corr = [0.2, 0.4, 0.6, 0.9], [0, 1, 1, 1]
    assert binned_ece(conf, corr, n_bins=2) == pytest.approx(0.225)
    assert binned_ece(conf, corr, n_bins=2, binning="mass") == pytest.approx(0.225)
    assert binned_ece(conf, corr, n_bins=2, p=2) == pytest.approx(math.sqrt(0.05125))
    assert binned_ece(conf, corr, n_bins=2, p=math.inf) == pytest.approx(0.25)
    assert mce(conf, corr, n_bins=2) == pytest.approx(0.25)
    # Debiased: 1/2 (0.2^2 - 0.25 / 1) + 1/2 (0.25^2 - 0) = -0.07375, clipped to 0.
    assert debiased_ece(conf, corr, n_bins=2, squared=True) == pytest.approx(-0.07375)
    assert debiased_ece(conf, corr, n_bins=2) == 0.0


def test_confidence_exactly_zero_and_one_land_in_end_bins() -> None:
    conf = np.array([0.0, 0.0, 1.0, 1.0, 0.5])
    corr = np.array([0, 1, 1, 1, 0])
    # Bins of 0.2: {0, 0} acc 0.5 gap 0.5; {0.5} gap 0.5; {1, 1} gap 0.
    assert binned_ece(conf, corr, n_bins=5) == pytest.approx((2 * 0.5 + 0.5) / 5)
    assert binned_ece(conf, corr, n_bins=5) == pytest.approx(ECE(5).measure(conf, corr))
    assert mce(conf, corr, n_bins=5) == pytest.approx(0.5)


def test_one_prediction() -> None:
    values = {name: info.function([0.3], [True]) for name, info in METRICS.items()}
    assert values["ece"] == pytest.approx(0.7)
    assert values["ece_mass"] == pytest.approx(0.7)
    assert values["debiased_ece"] == 0.0  # a bin needs two predictions
    assert values["smooth_ece"] == pytest.approx(relplot.smECE(np.array([0.3]), np.array([1.0])))
    assert values["aurc"] == 0.0
    assert math.isnan(values["auroc"])


def test_auroc_known_values_and_ties() -> None:
    assert auroc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5


def test_inputs_of_other_types_are_accepted() -> None:
    conf, corr = make_data(200, seed=5)
    expected = binned_ece(conf, corr)
    assert binned_ece(list(conf), [bool(c) for c in corr]) == expected
    assert binned_ece(conf, corr.astype(np.int8)) == expected
    single = conf.astype(np.float32)
    assert binned_ece(single, corr) == binned_ece(single.astype(np.float64), corr)
    assert binned_ece(conf, corr.astype(bool)) == expected


def test_metrics_registry() -> None:
    conf, corr = make_data(300, seed=6)
    assert list(METRICS) == [
        "smooth_ece", "ece", "ece_mass", "mce", "debiased_ece", "brier_score", "log_loss",
        "auroc", "aurc", "prr", "selective_accuracy_10", "accuracy", "mean_confidence",
    ]
    for name, info in METRICS.items():
        assert info.name == name
        assert info.higher_is_better in (True, False, None)
        low, high = info.range
        assert low <= info.function(conf, corr) <= high
        assert info.description
    assert METRICS["auroc"].higher_is_better is True
    assert METRICS["ece"].higher_is_better is False
    assert METRICS["mean_confidence"].higher_is_better is None
    with pytest.raises(TypeError):
        METRICS["new"] = METRICS["ece"]  # type: ignore[index]


def test_import_needs_only_numpy() -> None:
    code = (
        "import sys, recal.metrics; "
        "print(sorted(m for m in ('torch', 'scipy', 'sklearn', 'relplot', 'netcal') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- bad input


GOOD_CONF, GOOD_CORR = [0.2, 0.7, 0.9], [0, 1, 1]


@pytest.mark.parametrize(
    ("confidence", "correct", "pattern"),
    [
        ([0.2, float("nan"), 0.9], GOOD_CORR, r"^confidence has 1 non-finite values \(first: nan"),
        ([0.2, float("inf"), 0.9], GOOD_CORR, r"^confidence has 1 non-finite"),
        (
            [0.2, 0.7, 0.9, 0.1, 0.5, 0.5, 0.5, 1.2, -0.1, 3.0],
            [1] * 10,
            r"^confidence has 3 values outside \[0, 1\] \(first: 1\.2 at index 7\)$",
        ),
        ([0.2, 0.7], GOOD_CORR, r"^confidence and correct must have the same length, got 2 and 3"),
        ([], [], r"^confidence and correct are empty"),
        (GOOD_CONF, [0, 0.5, 1], r"^correct must be binary .* \(first: 0\.5 at index 1\)"),
        (GOOD_CONF, [0, 2, 1], r"^correct must be binary .* 1 other values"),
        (GOOD_CONF, [0, float("nan"), 1], r"^correct must be binary .*nan at index 1"),
        (GOOD_CONF, [-1, 0, 1], r"^correct must be binary"),
        ([[0.2, 0.7, 0.9]], GOOD_CORR, r"^confidence must be 1-D, got an array of shape \(1, 3\)"),
        (GOOD_CONF, [[0], [1], [1]], r"^correct must be 1-D"),
        (0.5, 1, r"^confidence must be 1-D"),
        (["a", "b", "c"], GOOD_CORR, r"^confidence must hold numbers"),
        (GOOD_CONF, ["yes", "no", "yes"], r"^correct must hold numbers"),
    ],
)
def test_bad_input_names_the_argument(confidence, correct, pattern: str) -> None:
    for name, info in METRICS.items():
        with pytest.raises(ValueError, match=pattern):
            info.function(confidence, correct)
        with pytest.raises(ValueError, match=pattern):
            bootstrap(name, confidence, correct, n_resamples=2)
    with pytest.raises(ValueError, match=pattern):
        smooth_calibration_curve(confidence, correct)
    with pytest.raises(ValueError, match=pattern):
        compute_all(confidence, correct, n_resamples=2)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: binned_ece(GOOD_CONF, GOOD_CORR, n_bins=0), r"^n_bins must be a positive"),
        (lambda: binned_ece(GOOD_CONF, GOOD_CORR, n_bins=2.5), r"^n_bins must be a positive"),
        (lambda: binned_ece(GOOD_CONF, GOOD_CORR, binning="quantile"), r"^binning must be"),
        (lambda: binned_ece(GOOD_CONF, GOOD_CORR, p=0.5), r"^p must be a number >= 1"),
        (lambda: mce(GOOD_CONF, GOOD_CORR, n_bins=-1), r"^n_bins must be"),
        (lambda: debiased_ece(GOOD_CONF, GOOD_CORR, n_bins=0), r"^n_bins must be"),
        (lambda: smooth_ece(GOOD_CONF, GOOD_CORR, bandwidth=0.0), r"^bandwidth must be"),
        (lambda: smooth_ece(GOOD_CONF, GOOD_CORR, bandwidth=float("nan")), r"^bandwidth must"),
        (lambda: smooth_calibration_curve(GOOD_CONF, GOOD_CORR, grid_size=1), r"^grid_size"),
        (lambda: bootstrap("ece", GOOD_CONF, GOOD_CORR, n_resamples=0), r"^n_resamples must"),
        (lambda: bootstrap("ece", GOOD_CONF, GOOD_CORR, confidence_level=1.0),
         r"^confidence_level must"),
        (lambda: bootstrap("smoth_ece", GOOD_CONF, GOOD_CORR), r"did you mean 'smooth_ece'"),
        (lambda: bootstrap(42, GOOD_CONF, GOOD_CORR), r"^metric must be a name"),
        (lambda: compute_all(GOOD_CONF, GOOD_CORR, n_resamples=-5), r"^n_resamples must"),
    ],
)
def test_bad_arguments(call, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call()


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded() -> None:
    conf, corr = make_data(2000, seed=7)
    first = compute_all(conf, corr, n_resamples=200, seed=3)
    assert first == compute_all(conf, corr, n_resamples=200, seed=3)
    other = compute_all(conf, corr, n_resamples=200, seed=4)
    assert first["ece"].low != other["ece"].low
    # One metric alone uses the same resamples as compute_all.
    assert bootstrap("ece", conf, corr, n_resamples=200, seed=3) == first["ece"]
    assert bootstrap(smooth_ece, conf, corr, n_resamples=200, seed=3) == first["smooth_ece"]
    generic = bootstrap(lambda c, y: float(np.mean(c)), conf, corr, n_resamples=50, seed=1)
    assert generic == bootstrap(lambda c, y: float(np.mean(c)), conf, corr, n_resamples=50, seed=1)


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_bootstrap_interval_contains_estimate(kind: str) -> None:
    conf, corr = make_data(3000, seed=8, kind=kind)
    results = compute_all(conf, corr, n_resamples=300, seed=0, confidence_level=0.9)
    assert list(results) == list(METRICS)
    for name, result in results.items():
        assert isinstance(result, BootstrapResult)
        assert result.n_resamples == 300 and result.confidence_level == 0.9
        assert result.estimate == pytest.approx(METRICS[name].function(conf, corr), abs=1e-12)
        # A percentile interval need not contain the estimate (a biased statistic's draws can
        # all lie above it); at n = 3000 its width is about that of the normal 90% interval.
        assert result.low <= result.high, name
        assert result.std > 0, name
        if not METRIC_SPECS.get(name).calibration_error:  # calibration errors: the floor interval
            width = (result.high - result.low) / (2 * 1.6449 * result.std)
            assert 0.7 < width < 1.3, (name, width)


def test_bootstrap_width_shrinks_with_n() -> None:
    small = compute_all(*make_data(400, seed=9), n_resamples=300)
    large = compute_all(*make_data(20000, seed=9), n_resamples=300)
    for name in METRICS:
        assert large[name].high - large[name].low < small[name].high - small[name].low, name
        assert large[name].std < small[name].std, name


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_fast_bootstrap_agrees_with_resampling_the_data(kind: str) -> None:
    conf, corr = make_data(1500, seed=10, kind=kind)
    fast = compute_all(conf, corr, n_resamples=1000, seed=1)
    for name in ("ece", "brier_score", "auroc", "aurc", "smooth_ece", "debiased_ece"):
        function = METRICS[name].function
        slow = bootstrap(lambda c, y, f=function: f(c, y), conf, corr, n_resamples=300, seed=2)
        # Standard errors from 300 resamples are good to about 10%.
        assert fast[name].std == pytest.approx(slow.std, rel=0.25), name


@pytest.mark.parametrize("n", [1, 9, 300])
@pytest.mark.parametrize("smoothing", ["kernel matrix", "fft"])
def test_resampled_cells_equal_metrics_on_resampled_data(
    n: int, smoothing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With exact levels, each resample's batch value is the metric of that resampled data."""
    use_fft = smoothing == "fft"
    monkeypatch.setattr(resampling.Resamples, "_fft_is_cheaper", lambda self, s, r: use_fft)
    conf, corr = make_data(n, seed=n, kind="discrete")
    cells = resampling.build_cells(conf, corr)
    assert cells.exact
    rng = np.random.default_rng(0)
    weights = np.vstack([rng.multinomial(n, cells.count / n, size=5), cells.count]).astype(float)
    sigma = smooth_ece_unchecked(conf, corr)[1]
    resamples = resampling.Resamples(cells, weights, sigma)
    level_of_cell = np.searchsorted(cells.level_start, np.arange(cells.count.size), "right") - 1
    for name in METRICS:
        batch = METRICS[name].batch(resamples)
        for row, w in zip(batch, weights, strict=True):
            counts = w.astype(int)
            c = np.repeat(cells.level_min[level_of_cell], counts)
            y = np.repeat(cells.right, counts)
            expected = METRICS[name].function(c, y)
            if math.isnan(expected):
                assert math.isnan(row), name
            else:
                assert row == pytest.approx(expected, abs=1e-10), name


def test_quantised_cells_stay_close_to_the_data() -> None:
    conf, corr = make_data(20000, seed=12)
    cells = resampling.build_cells(conf, corr)
    assert not cells.exact
    assert cells.count.size <= 2 * (resampling._WIDTH_LEVELS + resampling._MASS_LEVELS + 15)
    sigma = smooth_ece_unchecked(conf, corr)[1]
    resamples = resampling.Resamples(cells, cells.count[None, :], sigma)
    for name, info in METRICS.items():
        assert METRICS[name].batch(resamples)[0] == pytest.approx(
            info.function(conf, corr), abs=2e-3
        ), name


def test_bootstrap_one_class_and_one_prediction() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = compute_all(np.ones(30), np.ones(30), n_resamples=50)
        single = compute_all([0.4], [0], n_resamples=50, interval="percentile")
        floor = compute_all([0.4], [0], n_resamples=50)
    assert math.isnan(results["auroc"].estimate) and math.isnan(results["auroc"].low)
    assert results["ece"].low == results["ece"].high == 0.0
    assert single["ece"].estimate == pytest.approx(0.4)
    assert single["ece"].low == pytest.approx(0.4) and single["ece"].std == pytest.approx(0)
    # One prediction of confidence 0.4 from a calibrated predictor has ECE 0.4 or 0.6: the
    # noise floor (95% quantile) is 0.6, and the floor interval [0.4 - 0.6, 0.4 + 0.6] is all
    # of [0, 1]: one answer says nothing about calibration.
    assert floor["ece"].interval == "floor" and floor["ece"].noise_floor == pytest.approx(0.6)
    assert (floor["ece"].low, floor["ece"].high) == (0.0, 1.0)
    # Small data: some resamples hold one class; those are left out of the AUROC interval.
    conf, corr = [0.9, 0.8, 0.3, 0.6], [1, 1, 0, 1]
    result = bootstrap("auroc", conf, corr, n_resamples=200)
    assert 0.0 <= result.low <= result.high <= 1.0


def test_batched_bootstrap_of_mass_bins_matches_a_plain_resampling_loop() -> None:
    """Over 400 distinct confidences the engine summarises them as ranges and cuts equal-mass
    bins inside a range by interpolation: its bootstrap spread of ece_mass must match that of
    resampling predictions one by one and recomputing the metric."""
    conf, corr = make_data(3000, seed=31, kind="continuous")
    engine = compute_all(conf, corr, n_resamples=400, seed=0)["ece_mass"]
    rng = np.random.default_rng(5)
    plain = []
    for _ in range(400):
        idx = rng.integers(0, conf.size, conf.size)
        plain.append(binned_ece(conf[idx], corr[idx], binning="mass"))
    assert engine.std == pytest.approx(np.std(plain, ddof=1), rel=0.2)


def test_draw_counts_by_index_has_the_multinomial_moments() -> None:
    from recal.metrics.resampling import draw_counts

    # Mostly distinct cells (the index path): row sums are n, and each cell's count has mean
    # count_i and variance n p (1 - p) of Multinomial(n, count / n).
    count = np.array([1.0] * 60 + [40.0])
    inverse = np.repeat(np.arange(count.size), count.astype(int))
    n = int(count.sum())
    draws = draw_counts(np.random.default_rng(0), count, inverse, 4000)
    assert draws.shape == (4000, count.size) and (draws.sum(axis=1) == n).all()
    p = count / n
    assert (np.abs(draws.mean(axis=0) - count) <= 0.1 * np.sqrt(count)).all()
    assert draws[:, -1].var() == pytest.approx(n * p[-1] * (1 - p[-1]), rel=0.1)
