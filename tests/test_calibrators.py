"""Recalibrators: recovery of known miscalibrations, agreement with scikit-learn, the shared edge
cases, JSON save/load and the splitting helpers."""

from __future__ import annotations

import itertools
import json
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from recal import __version__
from recal.calibrators import (
    MIN_CLASS_SIZE,
    MIN_RELIABLE_SIZE,
    RECALIBRATORS,
    SCHEMA,
    BetaCalibration,
    CalibrationWarning,
    DegenerateSplitError,
    HistogramBinning,
    IdentityRecalibrator,
    NotFittedError,
    PlattScaling,
    Recalibrator,
    TemperatureScaling,
    cross_val_predict,
    get_recalibrator,
    load,
    save,
    split_calibration,
)
from recal.metrics import smooth_ece

METHODS = ["identity", "temperature", "platt", "isotonic", "histogram", "beta"]
LEARNED = [m for m in METHODS if m != "identity"]
MONOTONE = LEARNED  # histogram is monotone on these data, not by construction (see its docstring)
N = 20_000


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p):
    return np.log(p) - np.log1p(-p)


@pytest.fixture(scope="module")
def truth():
    """True probabilities q ~ Beta(2, 2) and correct ~ Bernoulli(q), seeded."""
    rng = np.random.default_rng(0)
    q = rng.beta(2.0, 2.0, N)
    return q, (rng.random(N) < q).astype(float)


MISCALIBRATIONS = {
    "overconfident": lambda q: q ** (1 / 3),
    "underconfident": lambda q: q**3,
}


def _quiet_fit(name, conf, corr, weight=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        return get_recalibrator(name, **params).fit(conf, corr, weight)


def _small_data(seed=1, n=300):
    rng = np.random.default_rng(seed)
    q = rng.beta(2.0, 2.0, n)
    return np.round(q ** 0.5, 3), (rng.random(n) < q).astype(float)  # ties, overconfident


# --------------------------------------------------------------------------- import and registry


def test_import_does_not_load_sklearn_scipy_or_torch():
    code = ("import sys, recal.calibrators; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_holds_every_method_and_suggests_names():
    assert list(RECALIBRATORS) == sorted(METHODS)
    for name in METHODS:
        assert get_recalibrator(name).name == name
    with pytest.raises(KeyError, match="did you mean 'temperature'"):
        get_recalibrator("temprature")
    assert get_recalibrator("histogram", n_bins=5).get_params() == {
        "n_bins": 5, "prior_strength": 1.0}


def test_hyperparameters_are_keyword_only_and_checked():
    with pytest.raises(TypeError):
        HistogramBinning(5)  # type: ignore[misc]
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        HistogramBinning(n_bins=0)
    with pytest.raises(ValueError, match="prior_strength must be a finite number >= 0"):
        HistogramBinning(prior_strength=-1.0)
    with pytest.raises(ValueError, match="ridge must be a finite number"):
        PlattScaling(ridge=float("nan"))
    with pytest.raises(ValueError, match="ridge"):
        BetaCalibration(ridge=-1e-3)
    assert repr(PlattScaling()) == "PlattScaling(ridge=1e-06, grid=None)"


# --------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("case", sorted(MISCALIBRATIONS))
@pytest.mark.parametrize("name", ["isotonic", "histogram", "beta", "platt"])
def test_recovers_known_miscalibration(truth, name, case):
    q, y = truth
    conf = MISCALIBRATIONS[case](q)
    fit, held = slice(0, N // 2), slice(N // 2, N)
    before = smooth_ece(conf[held], y[held])
    after = smooth_ece(_quiet_fit(name, conf[fit], y[fit]).predict_proba(conf[held]), y[held])
    assert before > 0.25
    if name == "platt" and case == "underconfident":
        # sigmoid(a logit(c) + b) cannot undo c = q**3: even fitted on 400,000 predictions its
        # smooth ECE stays at 0.020 (beta: 0.006), so only "nearly" holds here (0.021).
        assert after < 0.03
    else:
        assert after < 0.02  # the noise floor (the true q on this half) is 0.015


@pytest.mark.parametrize("case", sorted(MISCALIBRATIONS))
def test_temperature_at_least_halves_power_miscalibration(truth, case):
    # A power map moves confidence across 1/2, which no temperature can undo (0.27 -> 0.11).
    q, y = truth
    conf = MISCALIBRATIONS[case](q)
    fit, held = slice(0, N // 2), slice(N // 2, N)
    before = smooth_ece(conf[held], y[held])
    after = smooth_ece(_quiet_fit("temperature", conf[fit], y[fit]).predict_proba(conf[held]),
                       y[held])
    assert after < 0.5 * before


def test_temperature_recovers_a_pure_temperature_miscalibration(truth):
    q, y = truth
    conf = _sigmoid(_logit(q) * 2.0)
    model = TemperatureScaling().fit(conf, y)
    assert model.temperature_ == pytest.approx(2.0, rel=0.05)
    fit, held = slice(0, N // 2), slice(N // 2, N)
    calibrated = TemperatureScaling().fit(conf[fit], y[fit]).predict_proba(conf[held])
    assert smooth_ece(calibrated, y[held]) < 0.02


# --------------------------------------------------------------------------- agreement with sklearn


def test_platt_matches_sklearn_logistic_regression(truth):
    from sklearn.linear_model import LogisticRegression

    q, y = truth
    conf = q ** (1 / 3)
    model = PlattScaling().fit(conf, y)
    x = _logit(conf)[:, None]
    # The same objective: C * sum(log loss) + a**2 / 2, i.e. ridge = 1 / (C * n).
    reference = LogisticRegression(C=1.0 / (1e-6 * N), tol=1e-12, max_iter=10_000).fit(x, y)
    grid = np.linspace(0.001, 0.999, 999)
    expected = reference.predict_proba(_logit(grid)[:, None])[:, 1]
    np.testing.assert_allclose(model.predict_proba(grid), expected, rtol=0, atol=1e-6)
    assert model.slope_ == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    # and a much weaker penalty changes nothing visible
    loose = LogisticRegression(C=1e10, tol=1e-12, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(model.predict_proba(grid),
                               loose.predict_proba(_logit(grid)[:, None])[:, 1], atol=1e-3)


def _pav(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted pool-adjacent-violators written out here (recal's isotonic calls scikit-learn,
    so comparing the two would compare scikit-learn with itself): the non-decreasing fit at each
    distinct x, ties pooled first."""
    xs = np.unique(x)
    blocks = [[float(np.sum(w[x == v] * y[x == v])), float(np.sum(w[x == v])), 1] for v in xs]
    merged: list[list[float]] = []
    for b in blocks:
        merged.append(b)
        while len(merged) > 1 and merged[-2][0] / merged[-2][1] > merged[-1][0] / merged[-1][1]:
            top = merged.pop()
            merged[-1] = [merged[-1][0] + top[0], merged[-1][1] + top[1], merged[-1][2] + top[2]]
    fitted = np.concatenate([[sy / sw] * int(k) for sy, sw, k in merged])
    return xs, fitted


def test_isotonic_matches_an_independent_pool_adjacent_violators(truth):
    q, y = truth
    conf = np.round(q**3, 4)  # with ties
    weight = np.random.default_rng(3).uniform(0.5, 2.0, N)
    model = get_recalibrator("isotonic").fit(conf, y, weight)
    xs, fitted = _pav(conf, y, weight)
    np.testing.assert_allclose(model.predict_proba(xs), fitted, atol=1e-12)
    # Between fitted points the map interpolates linearly; outside them it is clipped.
    mid = (xs[:-1] + xs[1:]) / 2
    np.testing.assert_allclose(model.predict_proba(mid), (fitted[:-1] + fitted[1:]) / 2,
                               atol=1e-12)
    assert model.predict_proba(np.array([0.0]))[0] == pytest.approx(fitted[0])
    assert model.predict_proba(np.array([1.0]))[0] == pytest.approx(fitted[-1])


def test_isotonic_on_a_case_worked_by_hand():
    # Outcomes 1 0 0 1 0 1 at 0.1 ... 0.6: the first three pool to 1/3, the next two to 1/2,
    # the last stays 1; between points the map is linear, outside them clipped.
    model = get_recalibrator("isotonic").fit(np.linspace(0.1, 0.6, 6),
                                             np.array([1, 0, 0, 1, 0, 1]))
    np.testing.assert_allclose(
        model.predict_proba(np.array([0.05, 0.25, 0.35, 0.45, 0.55, 0.9])),
        [1 / 3, 1 / 3, 5 / 12, 1 / 2, 3 / 4, 1.0], atol=1e-12)


# --------------------------------------------------------------------------- structure of the maps


@pytest.mark.parametrize("name", MONOTONE)
def test_maps_are_non_decreasing(truth, name):
    q, y = truth
    grid = np.concatenate([[0.0, 1e-15, 1e-12], np.linspace(0, 1, 20_001), [1 - 1e-13, 1.0]])
    grid.sort()
    for case in MISCALIBRATIONS.values():
        model = _quiet_fit(name, case(q), y)
        assert np.all(np.diff(model.predict_proba(grid)) >= 0)
    if name != "histogram":  # monotone by construction, even when confidence points the wrong way
        model = _quiet_fit(name, 1.0 - q, y)
        assert np.all(np.diff(model.predict_proba(grid)) >= 0)


def test_anti_informative_confidence_gives_platt_and_beta_a_flat_map(truth):
    q, y = truth
    for model in (PlattScaling().fit(1 - q, y), BetaCalibration().fit(1 - q, y)):
        out = model.predict_proba(np.linspace(0, 1, 101))
        assert np.ptp(out) < 0.05
        assert out.mean() == pytest.approx(y.mean(), abs=0.02)


@pytest.mark.parametrize("name", METHODS)
def test_integer_weights_equal_repeated_rows(name):
    conf, corr = _small_data()
    weight = np.random.default_rng(2).integers(0, 4, conf.size)  # zeros drop the row
    weighted = _quiet_fit(name, conf, corr, weight.astype(float))
    repeated = _quiet_fit(name, np.repeat(conf, weight), np.repeat(corr, weight))
    probe = np.linspace(0, 1, 1001)
    if name in ("isotonic", "histogram", "identity"):
        np.testing.assert_array_equal(weighted.predict_proba(probe), repeated.predict_proba(probe))
    else:
        np.testing.assert_allclose(weighted.predict_proba(probe), repeated.predict_proba(probe),
                                   rtol=0, atol=1e-7)
    assert weighted.n_fit_ == int(np.count_nonzero(weight))  # rows of positive weight
    assert repeated.n_fit_ == int(weight.sum())


def test_histogram_bins_hold_equal_mass_and_smooth_toward_the_rate():
    conf = np.linspace(0.005, 0.995, 100)
    corr = (np.arange(100) % 4 == 0).astype(float)
    model = HistogramBinning(n_bins=4, prior_strength=0.0).fit(conf, corr)
    assert model.edges_.size == 3
    counts = np.bincount(np.searchsorted(model.edges_, conf, side="left"))
    assert counts.tolist() == [25, 25, 25, 25]
    np.testing.assert_allclose(model.values_, [7 / 25, 6 / 25, 6 / 25, 6 / 25])
    smoothed = HistogramBinning(n_bins=4, prior_strength=25.0).fit(conf, corr)
    np.testing.assert_allclose(smoothed.values_, (model.values_ + 0.25) / 2)
    # more bins than distinct values: bins merge, none is empty
    few = HistogramBinning(n_bins=50).fit(np.repeat([0.2, 0.6, 0.9], 10), np.tile([0, 1], 15))
    assert few.edges_.tolist() == [0.2, 0.6]


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize(("outcome", "reason"), [(0.0, "no correct answer"),
                                                   (1.0, "no wrong answer")])
@pytest.mark.parametrize("name", LEARNED)
def test_one_class_labels_are_refused_not_replaced_by_the_identity(name, outcome, reason):
    """All wrong (or all right) says nothing about how confidence relates to being right: a map
    fitted there is no repair, so fit refuses with the reason a table can show."""
    conf, _ = _small_data()
    corr = np.full(conf.size, outcome)
    with pytest.raises(DegenerateSplitError) as info:
        get_recalibrator(name).fit(conf, corr)
    assert str(info.value).startswith(
        f"not fitted: the calibration split has {reason} ({conf.size} questions")
    assert isinstance(info.value, ValueError)
    assert (info.value.method, info.value.n) == (name, conf.size)
    assert info.value.n_correct == (0 if outcome == 0.0 else conf.size)
    assert not get_recalibrator(name).is_fitted


@pytest.mark.parametrize("name", LEARNED)
def test_a_lone_correct_or_wrong_answer_is_refused_and_two_are_fitted(name):
    conf = np.linspace(0.05, 0.95, 40)
    one_right = (np.arange(40) == 39).astype(float)
    with pytest.raises(DegenerateSplitError, match=r"has only 1 correct answer \(40 questions"):
        get_recalibrator(name).fit(conf, one_right)
    with pytest.raises(DegenerateSplitError, match="has only 1 wrong answer"):
        get_recalibrator(name).fit(conf, 1.0 - one_right)
    # Zero-weight rows are dropped first: they do not make up the count.
    two_right = one_right.copy()
    two_right[0] = 1.0
    with pytest.raises(DegenerateSplitError, match="only 1 correct"):
        get_recalibrator(name).fit(conf, two_right, np.r_[0.0, np.ones(39)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_recalibrator(name).fit(conf, two_right).is_fitted


def test_identity_never_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = IdentityRecalibrator().fit([0.3], [1])
    np.testing.assert_array_equal(model.predict_proba([0.0, 0.25, 1.0]), [0.0, 0.25, 1.0])


@pytest.mark.parametrize("name", LEARNED)
def test_constant_confidence_maps_to_the_accuracy(name):
    conf = np.full(50, 0.8)
    corr = (np.arange(50) < 45).astype(float)  # 90% right
    with pytest.warns(CalibrationWarning, match="one value"):
        model = get_recalibrator(name).fit(conf, corr)
    assert model.predict_proba([0.8])[0] == pytest.approx(0.9, abs=1e-6)


def test_constant_confidence_temperature_cannot_cross_one_half():
    conf = np.full(50, 0.8)
    corr = (np.arange(50) < 15).astype(float)  # 30% right: only T -> infinity comes close
    with pytest.warns(CalibrationWarning):
        model = TemperatureScaling().fit(conf, corr)
    assert model.temperature_ == pytest.approx(100.0, rel=1e-6)
    assert model.predict_proba([0.8])[0] == pytest.approx(0.5, abs=0.01)
    with pytest.warns(CalibrationWarning):
        assert TemperatureScaling().fit(np.full(4, 0.5), [0, 1, 1, 0]).temperature_ == 1.0


@pytest.mark.parametrize("name", METHODS)
def test_confidences_of_exactly_zero_and_one(name):
    rng = np.random.default_rng(4)
    conf = rng.choice([0.0, 0.3, 0.7, 1.0], 400)
    corr = (rng.random(400) < np.clip(conf, 0.1, 0.9)).astype(float)  # some "100%" are wrong
    model = _quiet_fit(name, conf, corr)
    out = model.predict_proba([0.0, 1e-300, 0.5, 1.0])
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    assert np.all(np.diff(out) >= 0)
    if name != "identity":
        assert 0.0 < out[-1] < 1.0  # a "100%" that was wrong 10% of the time is not kept at 1


@pytest.mark.parametrize("name", LEARNED)
def test_tiny_calibration_sets_warn(name):
    with pytest.warns(CalibrationWarning, match="fewer than 10 is unreliable"):
        model = get_recalibrator(name).fit([0.2, 0.4, 0.6, 0.9, 0.7], [0, 1, 0, 1, 1])
    out = model.predict_proba(np.linspace(0, 1, 11))
    assert np.all((out >= 0) & (out <= 1))


STEEP = ["temperature", "platt", "isotonic", "beta"]  # maximum-likelihood maps: 0 and 1


@pytest.mark.parametrize("n_wrong", [2, 3, 4])
@pytest.mark.parametrize("name", LEARNED)
def test_a_few_separable_predictions_are_refused_by_the_steep_maps(name, n_wrong):
    # every wrong answer below every right one: no finite maximum-likelihood map exists
    conf = np.r_[np.linspace(0.1, 0.3, n_wrong), np.linspace(0.7, 0.9, 5)]
    corr = np.r_[np.zeros(n_wrong), np.ones(5)]
    assert conf.size < MIN_RELIABLE_SIZE
    if name in STEEP:
        with pytest.raises(DegenerateSplitError, match=(
                rf"not fitted: on the calibration split \({conf.size} questions\) the confidence "
                rf"separates the 5 correct from the {n_wrong} wrong answers, so {name} would map "
                rf"them to 0 and 1; it needs at least 10")) as info:
            get_recalibrator(name).fit(conf, corr)
        assert info.value.separable and info.value.n == conf.size
        assert pickle.loads(pickle.dumps(info.value)).args == info.value.args
        # one overlapping pair (a wrong answer above a right one) is fitted, with a warning
        overlap = corr.copy()
        overlap[[0, -1]] = 1.0 - overlap[[0, -1]]
        with pytest.warns(CalibrationWarning, match="fewer than 10"):
            get_recalibrator(name).fit(conf, overlap)
    else:
        # histogram binning: 10 bins for fewer than 10 distinct confidences, one answer a bin;
        # each bin's one answer y is pulled toward the rate r of right answers by one
        # pseudo-answer (prior_strength 1): (y + r) / 2, never 0 or 1
        rate = 5 / (5 + n_wrong)
        out = _quiet_fit(name, conf, corr).predict_proba([0.0, 0.2, 0.8, 1.0])
        np.testing.assert_allclose(out, [rate / 2, rate / 2, (1 + rate) / 2, (1 + rate) / 2])


@pytest.mark.parametrize("name", STEEP)
def test_ten_separable_predictions_are_fitted(name):
    conf = np.linspace(0.05, 0.95, 10)
    corr = (conf > 0.5).astype(float)
    out = get_recalibrator(name).fit(conf, corr).predict_proba(conf)
    assert np.all(np.isfinite(out)) and np.all(np.diff(out) >= 0)


def test_a_separable_training_fold_is_named_in_cross_fitting():
    conf = np.r_[0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
    corr = (conf > 0.5).astype(float)
    with pytest.raises(DegenerateSplitError, match=r"on the training part of fold 1 of 2 \(4 "
                       r"questions\) the confidence separates") as info:
        cross_val_predict(PlattScaling(), conf, corr, n_splits=2)
    assert info.value.separable


def _tiny_sets():
    """Every labelling of 1 to 5 predictions, at distinct, tied, constant and end-point
    confidences."""
    levels = {"distinct": [0.15, 0.35, 0.55, 0.75, 0.95], "ties": [0.3, 0.3, 0.7, 0.7, 0.7],
              "constant": [0.6] * 5, "ends": [0.0, 1.0, 0.0, 1.0, 0.5],
              "grid": [0.2, 0.4, 0.6, 0.8, 1.0]}
    for n in range(1, 6):
        for labels in itertools.product([0.0, 1.0], repeat=n):
            for kind, conf in levels.items():
                yield kind, np.array(conf[:n]), np.array(labels)


@pytest.mark.parametrize("name", METHODS)
def test_tiny_sets_are_refused_or_give_finite_probabilities(name):
    refused = 0
    for kind, conf, corr in _tiny_sets():
        n_correct = int(corr.sum())
        few = min(n_correct, conf.size - n_correct) < MIN_CLASS_SIZE
        separable = not few and conf[corr == 0].max() < conf[corr == 1].min()
        must_refuse = name != "identity" and (few or (separable and name in STEEP))
        try:
            model = _quiet_fit(name, conf, corr)
        except DegenerateSplitError:
            assert must_refuse, (kind, conf, corr)
            refused += 1
            continue
        assert not must_refuse, (kind, conf, corr)
        out = model.predict_proba(np.linspace(0, 1, 21))
        assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1)), (kind, conf, corr)
        if name == "identity":
            np.testing.assert_array_equal(out, np.linspace(0, 1, 21))
        elif kind == "constant":  # documented: the observed accuracy (temperature: 1/2 side)
            expected = n_correct / conf.size
            if name == "temperature" and expected <= 0.5:
                assert out[12] == pytest.approx(0.5, abs=0.01)  # T at its bound
            else:
                assert out[12] == pytest.approx(expected, abs=1e-5)  # the ridge moves it
    # 62 labellings of 1 to 5 answers x 5 confidence patterns; 2 + 4 + 8 + 10 + 12 = 36
    # labellings have fewer than 2 of a class (n = 4: all but the 6 with 2 of each; n = 5: the
    # 2 + 10 with 0 or 1 of a class), refused by every learned map
    if name == "identity":
        assert refused == 0
    elif name == "histogram":
        assert refused == 36 * 5
    else:
        assert refused > 36 * 5


@pytest.mark.parametrize("name", LEARNED)
def test_a_single_prediction_is_refused(name):
    with pytest.raises(DegenerateSplitError, match=r"no wrong answer \(1 question;"):
        get_recalibrator(name).fit([0.7], [1])


BAD_DATA = [
    ([0.2, float("nan")], [0, 1], "confidence has 1 non-finite values"),
    ([0.2, 1.2], [0, 1], r"confidence has 1 values outside \[0, 1\] \(first: 1.2 at index 1\)"),
    ([0.2, 0.3], [0, 1, 1], "same length, got 2 and 3"),
    ([], [], "empty"),
    ([0.2, 0.3], [0, 2], "correct must be binary"),
    ([[0.2, 0.3]], [[0, 1]], "confidence must be 1-D"),
]


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize(("conf", "corr", "message"), BAD_DATA)
def test_bad_data_is_refused_by_the_shared_checks(name, conf, corr, message):
    with pytest.raises(ValueError, match=message):
        get_recalibrator(name).fit(conf, corr)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize(("weight", "message"), [
    ([1.0, -1.0, 1.0], r"sample_weight has 1 negative values \(first: -1.0 at index 1\)"),
    ([1.0, float("nan"), 1.0], "sample_weight has 1 non-finite values"),
    ([1.0, 1.0], r"sample_weight must have one value per prediction \(3\), got 2"),
    ([0.0, 0.0, 0.0], "sample_weight is zero everywhere"),
    (["a", "b", "c"], "sample_weight must hold numbers"),
])
def test_bad_sample_weight_is_refused(name, weight, message):
    with pytest.raises(ValueError, match=message):
        get_recalibrator(name).fit([0.2, 0.5, 0.9], [0, 1, 1], weight)


@pytest.mark.parametrize("name", METHODS)
def test_predict_proba_checks_its_input_and_fitting(name):
    model = get_recalibrator(name)
    with pytest.raises(NotFittedError, match="not fitted yet") as info:
        model.predict_proba([0.5])
    assert isinstance(info.value, ValueError)
    with pytest.raises(NotFittedError):
        model.to_dict()
    conf, corr = _small_data()
    model = _quiet_fit(name, conf, corr)
    with pytest.raises(ValueError, match=r"confidence has 1 values outside \[0, 1\]"):
        model.predict_proba([0.5, -0.1])
    with pytest.raises(ValueError, match="confidence has 1 non-finite values"):
        model.predict_proba([float("inf")])
    assert model.predict_proba([]).shape == (0,)
    out = model.predict_proba((0.1, 0.5))
    assert out.dtype == np.float64 and out.shape == (2,)


# --------------------------------------------------------------------------- save and load


def _fitted_variants():
    conf, corr = _small_data()
    conf = np.concatenate([conf, [0.0, 1.0, 1.0]])
    corr = np.concatenate([corr, [0.0, 1.0, 0.0]])
    for name in METHODS:
        yield name, _quiet_fit(name, conf, corr)
    yield "histogram-7-bins", _quiet_fit("histogram", conf, corr, n_bins=7)
    yield "histogram-one-bin", _quiet_fit("histogram", conf, corr, n_bins=1)
    two_right = (np.arange(conf.size) % 50 == 0).astype(float)  # the fewest right answers
    yield "isotonic-few-right", _quiet_fit("isotonic", conf, two_right)


@pytest.mark.parametrize(("label", "model"), list(_fitted_variants()), ids=lambda v: str(v)[:20])
def test_json_round_trip_predicts_bit_for_bit(tmp_path, label, model):
    path = save(model, tmp_path / "map.json")
    text = path.read_text()
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, indent=2) + "\n"
    assert document["schema"] == SCHEMA and document["recal_version"] == __version__
    assert document["name"] == model.name and document["params"] == model.get_params()
    loaded = load(path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    probe = np.concatenate([np.random.default_rng(5).random(2000), [0.0, 1e-13, 0.5, 1.0]])
    assert loaded.predict_proba(probe).tobytes() == model.predict_proba(probe).tobytes()
    again = Recalibrator.from_dict(model.to_dict())
    assert again.predict_proba(probe).tobytes() == model.predict_proba(probe).tobytes()


def _saved(tmp_path, name="temperature"):
    model = _quiet_fit(name, *_small_data())
    path = save(model, tmp_path / "map.json")
    return path, json.loads(path.read_text())


def _rewrite(path, document):
    path.write_text(json.dumps(document))
    return path


def test_load_unknown_name_suggests_the_closest(tmp_path):
    path, document = _saved(tmp_path)
    document["name"] = "temprature"
    with pytest.raises(ValueError, match=r"map\.json: key 'name': unknown recalibrator "
                                         r"'temprature'; did you mean 'temperature'"):
        load(_rewrite(path, document))


def test_load_newer_schema_asks_for_an_upgrade(tmp_path):
    path, document = _saved(tmp_path)
    document["schema"] = SCHEMA + 1
    document["recal_version"] = "9.0.0"
    with pytest.raises(ValueError, match=r"has schema 2 \(written by recal 9\.0\.0\), newer .* "
                                         r"upgrade recal"):
        load(_rewrite(path, document))


def test_load_warns_about_unknown_keys_and_ignores_them(tmp_path):
    path, document = _saved(tmp_path, "histogram")
    model = load(path)
    document["params"]["new_option"] = True
    document["state"]["new_array"] = [1.0]
    document["created_by"] = "future recal"
    with pytest.warns(UserWarning) as record:
        loaded = load(_rewrite(path, document))
    messages = [str(w.message) for w in record]
    assert any("ignoring unknown histogram parameter(s) 'new_option'" in m for m in messages)
    assert any("state key(s) 'new_array'" in m for m in messages)
    assert any("ignoring unknown key(s) 'created_by'" in m for m in messages)
    assert all(str(path) in m for m in messages)
    np.testing.assert_array_equal(loaded.predict_proba([0.1, 0.9]), model.predict_proba([0.1, 0.9]))


def test_load_truncated_json_names_the_file(tmp_path):
    path, _ = _saved(tmp_path)
    path.write_text(path.read_text()[:40])
    with pytest.raises(ValueError, match=r"map\.json is not valid JSON .* truncated"):
        load(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("schema"), "key 'schema' is missing"),
    (lambda d: d.update(schema="1"), "key 'schema' must be a positive integer"),
    (lambda d: d.pop("state"), "key 'state' is missing"),
    (lambda d: d["state"].pop("temperature"), "key 'state.temperature' is missing"),
    (lambda d: d["state"].update(temperature="hot"), "key 'state.temperature' must be a finite"),
    (lambda d: d["state"].update(temperature=-1.0), "key 'state.temperature' must be positive"),
    (lambda d: d["state"].update(n_fit=0), "key 'state.n_fit' must be a positive integer"),
    (lambda d: d.update(params=[]), "key 'params' must be an object"),
    (lambda d: d.update(name=3), "key 'name' must be a string"),
])
def test_load_malformed_content_names_file_and_key(tmp_path, edit, message):
    path, document = _saved(tmp_path)
    edit(document)
    with pytest.raises(ValueError, match=message) as info:
        load(_rewrite(path, document))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("name", "edit", "message"), [
    ("histogram", lambda s: s.update(values=s["values"][:-1]), "key 'state.values' must have"),
    ("histogram", lambda s: s.update(edges=s["edges"][::-1]), "key 'state.edges' must increase"),
    ("isotonic", lambda s: s.update(y_thresholds=[2.0] * len(s["y_thresholds"])),
     "key 'state.y_thresholds' must be non-decreasing within"),
    ("isotonic", lambda s: s.update(x_thresholds=[]), "must be non-empty"),
    ("isotonic", lambda s: s.update(x_thresholds=[*s["x_thresholds"][:-1], 1.2]),
     "key 'state.x_thresholds' must increase strictly within"),
    ("isotonic", lambda s: s.update(x_thresholds=[-0.1, *s["x_thresholds"][1:]]),
     "key 'state.x_thresholds' must increase strictly within"),
    ("beta", lambda s: s.update(a=-0.5), "key 'state.a' must be >= 0"),
    ("platt", lambda s: s.update(slope=[1.0]), "key 'state.slope' must be a finite number"),
    ("histogram", lambda s: s.update(values=[0.5, None]), "must hold finite numbers"),
])
def test_load_inconsistent_state_names_the_key(tmp_path, name, edit, message):
    path, document = _saved(tmp_path, name)
    edit(document["state"])
    with pytest.raises(ValueError, match=message):
        load(_rewrite(path, document))


def test_load_bad_params_and_from_dict_of_the_wrong_kind(tmp_path):
    path, document = _saved(tmp_path, "histogram")
    document["params"]["n_bins"] = 0
    with pytest.raises(ValueError, match=r"key 'params': n_bins must be a positive integer"):
        load(_rewrite(path, document))
    platt = PlattScaling().fit(*_small_data())
    with pytest.raises(ValueError, match="describes 'platt', which is not a TemperatureScaling"):
        TemperatureScaling.from_dict(platt.to_dict())


# --------------------------------------------------------------------------- splitting


class _Spy(Recalibrator):
    """Records what each copy is fitted on and asked about (not registered)."""

    name = "spy"
    _uses_labels = False  # never refused: this test is about which rows each copy sees
    log: list[tuple[str, frozenset]] = []

    def _fit(self, conf, corr, weight):
        _Spy.log.append(("fit", frozenset(conf.tolist())))

    def _predict(self, conf):
        _Spy.log.append(("predict", frozenset(conf.tolist())))
        return conf


@pytest.mark.parametrize("stratified", [True, False])
def test_cross_val_predict_never_predicts_a_row_it_was_fitted_on(stratified):
    n = 103
    conf = np.linspace(0.01, 0.99, n)  # distinct, so rows can be told apart by confidence
    corr = (np.arange(n) % 3 == 0).astype(float) if stratified else np.r_[1.0, np.zeros(n - 1)]
    _Spy.log.clear()
    spy = _Spy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cross_val_predict(spy, conf, corr, n_splits=5, seed=1)
    assert not spy.is_fitted  # the one passed in is only copied
    fits, predicts = _Spy.log[0::2], _Spy.log[1::2]
    assert [kind for kind, _ in fits] == ["fit"] * 5
    assert [kind for kind, _ in predicts] == ["predict"] * 5
    everything = frozenset(conf.tolist())
    for (_, fitted), (_, asked) in zip(fits, predicts, strict=True):
        assert not fitted & asked and fitted | asked == everything
    folds = [asked for _, asked in predicts]
    assert sum(len(f) for f in folds) == n and frozenset().union(*folds) == everything
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1
    if stratified:  # every fold gets both classes in proportion
        right = frozenset(conf[corr == 1].tolist())
        assert all(6 <= len(f & right) <= 7 for f in folds)


def test_cross_val_predict_is_out_of_fold_and_seeded():
    conf, corr = _small_data(n=200)
    out = cross_val_predict(get_recalibrator("isotonic"), conf, corr, n_splits=4, seed=2)
    assert out.shape == conf.shape and np.all((out >= 0) & (out <= 1))
    np.testing.assert_array_equal(
        out, cross_val_predict(get_recalibrator("isotonic"), conf, corr, n_splits=4, seed=2))
    in_sample = get_recalibrator("isotonic").fit(conf, corr).predict_proba(conf)
    assert not np.array_equal(out, in_sample)
    with pytest.raises(ValueError, match="n_splits must be an integer >= 2"):
        cross_val_predict(get_recalibrator("platt"), conf, corr, n_splits=1)
    with pytest.raises(ValueError, match=r"n_splits \(300\) must not exceed"):
        cross_val_predict(get_recalibrator("platt"), conf, corr, n_splits=300)
    with pytest.raises(ValueError, match="sample_weight has 1 negative"):
        cross_val_predict(get_recalibrator("platt"), conf, corr,
                          sample_weight=np.r_[-1.0, np.ones(199)])


def test_split_calibration_is_disjoint_covering_and_seeded():
    cal, held = split_calibration(101, fraction=0.3, seed=4)
    assert cal.size == 30 and held.size == 71
    assert np.intersect1d(cal, held).size == 0
    np.testing.assert_array_equal(np.union1d(cal, held), np.arange(101))
    again = split_calibration(101, fraction=0.3, seed=4)
    np.testing.assert_array_equal(again[0], cal)
    assert not np.array_equal(split_calibration(101, fraction=0.3, seed=5)[0], cal)
    assert [a.size for a in split_calibration(2, fraction=0.01)] == [1, 1]
    for bad in (0.0, 1.0, float("nan"), True):
        with pytest.raises(ValueError, match="fraction must be strictly between 0 and 1"):
            split_calibration(10, fraction=bad)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        split_calibration(1)


def test_cross_val_predict_refuses_a_degenerate_set_and_names_a_degenerate_fold():
    conf = np.linspace(0.05, 0.95, 30)
    with pytest.raises(DegenerateSplitError, match="calibration split has no correct answer"):
        cross_val_predict(get_recalibrator("platt"), conf, np.zeros(30), n_splits=3)
    # Two right answers, not stratified (fewer than n_splits): a fold holding both leaves its
    # training part with none; the error says which fold.
    corr = np.zeros(30)
    corr[[0, 1]] = 1.0
    failures = []
    for seed in range(20):
        try:
            cross_val_predict(get_recalibrator("platt"), conf, corr, n_splits=3, seed=seed)
        except DegenerateSplitError as err:
            failures.append(str(err))
    assert failures and all(re.match(r"not fitted: the training part of fold \d of 3 has "
                                     r"(no|only 1) correct answer", f) for f in failures)
    # The identity reads no labels and is never refused.
    np.testing.assert_array_equal(
        cross_val_predict(IdentityRecalibrator(), conf, np.zeros(30), n_splits=3), conf)


def test_find_grid_reaches_the_largest_grid_and_refuses_beyond_it():
    from recal.calibrators._numeric import MAX_GRID, find_grid

    # 1/M is a multiple of 1/m only for m = M: the search must reach MAX_GRID itself.
    assert find_grid(np.array([1 / MAX_GRID, 1.0])) == MAX_GRID
    assert find_grid(np.array([1 / (MAX_GRID - 1), 1.0])) == MAX_GRID - 1
    assert find_grid(np.array([1 / (MAX_GRID + 1), 1.0])) == 0
    assert find_grid(np.array([0.3, 0.7])) == 10
