"""Recalibrating discrete confidences (modal shares k/M): temperature, Platt and beta read a
share through the smoothed share (k + 1/2) / (M + 1), so their fit does not depend on the
constant that used to clip a share of 1, and a fitted map does not lose to no repair."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from recal.calibrators import (
    BetaCalibration,
    CalibrationWarning,
    PlattScaling,
    Recalibrator,
    TemperatureScaling,
    _numeric,
    get_recalibrator,
)

M = 10
N_FIT = N_HELD = 75
SEEDS = range(200)
LOGIT_MAPS = ["temperature", "platt", "beta"]

# P(correct | modal share s). Half the questions have every sample agree (s = 1); the rest have
# shares 0.3 ... 0.9.
ACCURACY = {
    "calibrated": lambda s: s,
    # A share of 1 is right 95% of the time, 0.9 only 81%: overconfident, most of all mid-range.
    "overconfident": lambda s: np.where(s == 1.0, 0.95, s ** 2),
    # The example: 0.9 is right 71% of the time, a unanimous share 95%.
    "overconfident_below_one": lambda s: np.where(s == 1.0, 0.95, s - 0.19),
}


def _draw(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = N_FIT + N_HELD
    k = np.where(rng.random(n) < 0.5, M, rng.integers(3, M, n))
    share = k / M
    return share, (rng.random(n) < ACCURACY[kind](share)).astype(float)


def _brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def _heldout_excess(name: str, kind: str) -> np.ndarray:
    """Held-out Brier of the fitted map minus that of the unrepaired share, one per seed."""
    out = []
    for seed in SEEDS:
        share, y = _draw(kind, seed)
        fit, held = slice(None, N_FIT), slice(N_FIT, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            model = get_recalibrator(name).fit(share[fit], y[fit])
        out.append(_brier(model.predict_proba(share[held]), y[held])
                   - _brier(share[held], y[held]))
    return np.array(out)


@pytest.mark.parametrize("name", ["temperature", "platt"])
@pytest.mark.parametrize("kind", ["overconfident", "overconfident_below_one"])
def test_a_fitted_map_beats_no_repair_on_an_overconfident_discrete_predictor(name, kind):
    """Held out, the fitted map's Brier score is lower than the raw share's on average, and in
    most of the 200 splits. With a share of 1 read as logit(1 - 1e-12) = 27.6, temperature
    scaling stretches T to about 9 to tame that one logit and loses to no repair."""
    excess = _heldout_excess(name, kind)
    assert excess.mean() < 0.0
    assert np.mean(excess < 0) > 0.5


@pytest.mark.parametrize(("name", "n_params"), [("temperature", 1), ("platt", 2)])
def test_a_fitted_map_costs_no_more_than_its_estimation_noise_on_a_calibrated_predictor(
        name, n_params):
    """On a calibrated predictor no map beats the identity: what a fit can lose is the cost of
    estimating its parameters. For the log loss that cost is about n_params / (2 n) nats
    (Akaike); the Brier score's excess is at most half the log loss's (2 p (1 - p) <= 1/2 near
    the truth), so the mean held-out excess must stay below n_params / (4 n)."""
    excess = _heldout_excess(name, "calibrated")
    assert excess.mean() < n_params / (4 * N_FIT)


@pytest.mark.parametrize("name", LOGIT_MAPS)
def test_the_fitted_map_does_not_depend_on_the_clipping_constant(name, monkeypatch):
    share, y = _draw("overconfident_below_one", 3)
    probe = np.arange(M + 1) / M
    maps = []
    for eps in (1e-12, 1e-3, 0.05):
        monkeypatch.setattr(_numeric, "LOGIT_EPS", eps)
        model = get_recalibrator(name).fit(share[:N_FIT], y[:N_FIT])
        maps.append(model.predict_proba(probe))
    np.testing.assert_array_equal(maps[0], maps[1])
    np.testing.assert_array_equal(maps[0], maps[2])


def test_a_share_is_read_as_the_smoothed_share():
    """At T = 1 temperature scaling returns the probability it reads: (k + 1/2) / (M + 1), the
    Jeffreys posterior mean after k of M samples (a unanimous share of 10 reads 21/22)."""
    model = Recalibrator.from_dict({"name": "temperature", "params": {},
                                    "state": {"n_fit": 75, "temperature": 1.0, "grid": 10}})
    np.testing.assert_allclose(model.predict_proba([0.0, 0.3, 0.5, 1.0]),
                               [0.5 / 11, 3.5 / 11, 0.5, 10.5 / 11], rtol=1e-12)
    platt = Recalibrator.from_dict({"name": "platt", "params": {"ridge": 1e-6},
                                    "state": {"n_fit": 75, "slope": 1.0, "intercept": 0.0,
                                              "grid": 4}})
    np.testing.assert_allclose(platt.predict_proba([1.0]), [4.5 / 5], rtol=1e-12)


def test_a_file_from_before_the_grid_keeps_its_clipped_map():
    old = Recalibrator.from_dict({"name": "temperature", "params": {},
                                  "state": {"n_fit": 75, "temperature": 2.0}})
    assert old.grid_ == 0
    z = np.log(1 - 1e-12) - np.log(1e-12)
    np.testing.assert_allclose(old.predict_proba([1.0]), [1 / (1 + np.exp(-z / 2))], rtol=1e-9)


def test_the_grid_is_found_from_the_shares_or_given():
    from recal.calibrators._numeric import find_grid

    assert find_grid(np.array([0.3, 0.7, 1.0, 0.1])) == 10
    assert find_grid(np.array([0.25, 0.5, 1.0])) == 4
    assert find_grid(np.array([0.0, 1.0])) == 1
    assert find_grid(np.array([0.37, 0.5])) == 100  # percentages
    assert find_grid(np.array([0.123, 0.5])) == 0  # finer than MAX_GRID: continuous
    assert find_grid(np.array([1 / 3, 2 / 3, 1.0])) == 3
    rng = np.random.default_rng(0)
    assert find_grid(rng.random(500)) == 0
    share, y = _draw("overconfident", 1)
    for kind in (TemperatureScaling, PlattScaling, BetaCalibration):
        assert kind().fit(share, y).grid_ == 10
        assert kind(grid=20).fit(share, y).grid_ == 20
        continuous = kind().fit(rng.random(200), rng.random(200) < 0.5)
        assert continuous.grid_ == 0
        assert kind.from_dict(kind(grid=20).fit(share, y).to_dict()).grid_ == 20
    with pytest.raises(ValueError, match="grid must be None"):
        TemperatureScaling(grid=-1)
    with pytest.raises(ValueError, match="grid must be None"):
        PlattScaling(grid=2.5)


def test_platt_on_shares_is_logistic_regression_on_the_empirical_logit():
    """The reference: scikit-learn's logistic regression on log((k + 1/2) / (M - k + 1/2)),
    the empirical logit of k of M, with the same tiny ridge on the slope."""
    from sklearn.linear_model import LogisticRegression

    share, y = _draw("overconfident", 5)
    k = np.round(share * M)
    x = np.log((k + 0.5) / (M - k + 0.5)).reshape(-1, 1)
    reference = LogisticRegression(C=1.0 / (1e-6 * share.size), tol=1e-12,
                                   max_iter=10_000).fit(x, y)
    model = PlattScaling().fit(share, y)
    assert model.slope_ == pytest.approx(reference.coef_[0, 0], rel=1e-5)
    assert model.intercept_ == pytest.approx(reference.intercept_[0], abs=1e-5)
