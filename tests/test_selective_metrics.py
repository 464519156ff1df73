"""Selective-prediction metrics: the risk-coverage curve, selective accuracy and PRR.

Expected values come from hand derivations, from enumerating every ordering of tied confidences,
and from short transcriptions of the reference implementations (HELM's ``get_selective_stats``
from Kumar et al.'s uncertainty-calibration library; LM-Polygraph's ``PredictionRejectionArea``
and its normalisation against an oracle and random shuffles), which neither library's package
can be installed here to run.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from recal.metrics import (
    METRICS,
    aurc,
    compute_all,
    prediction_rejection_ratio,
    risk_coverage_curve,
    selective_accuracy,
)


def helm_selective_accuracy(probs: np.ndarray, correct: np.ndarray) -> float:
    """HELM's selective accuracy at 10% as uncertainty-calibration computes it."""
    order = np.argsort(-probs)
    accs = np.cumsum(correct[order]) / np.arange(1, len(probs) + 1)
    return float(accs[int(0.1 * len(probs))])


def polygraph_pra(uncertainty: np.ndarray, target: np.ndarray) -> float:
    """LM-Polygraph's area under the prediction-rejection curve (target 0/1, both present)."""
    order = np.argsort(uncertainty)
    scores = (np.cumsum(target[order]) / np.arange(1, len(target) + 1))[::-1]
    return float(np.sum(scores) / len(target))


def polygraph_prr(conf: np.ndarray, correct: np.ndarray, shuffles: int = 4000) -> float:
    rng = np.random.default_rng(0)
    mine = polygraph_pra(-conf, correct)
    oracle = polygraph_pra(-correct, correct)
    ranks = np.arange(len(conf), dtype=float)
    random = np.mean([polygraph_pra(rng.permutation(ranks), correct) for _ in range(shuffles)])
    return float((mine - random) / (oracle - random))


def expected_over_tie_orders(conf: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """Mean risk at each coverage over every ordering of tied confidences (tiny inputs)."""
    n = len(conf)
    curves = []
    for perm in itertools.permutations(range(n)):
        if any(conf[perm[i]] < conf[perm[i + 1]] for i in range(n - 1)):
            continue
        curves.append(np.cumsum(1 - corr[list(perm)]) / np.arange(1, n + 1))
    return np.mean(curves, axis=0)


def test_hand_computed_values() -> None:
    # Ranked right, right, wrong, wrong: perfect ranking; reversed: the worst.
    conf = [0.9, 0.8, 0.2, 0.1]
    assert prediction_rejection_ratio(conf, [1, 1, 0, 0]) == pytest.approx(1.0)
    # reversed: risks 1, 1, 2/3, 1/2 -> AURC 19/24; best 0, 0, 1/3, 1/2 -> 5/24; random 1/2
    assert prediction_rejection_ratio(conf, [0, 0, 1, 1]) == pytest.approx(
        (0.5 - 19 / 24) / (0.5 - 5 / 24))
    # A tie of one right and one wrong answer on top: risk 1/2 at k = 1 and 2, then 1/3.
    curve = risk_coverage_curve([0.9, 0.9, 0.5], [1, 0, 1])
    np.testing.assert_allclose(curve.risk, [0.5, 0.5, 1 / 3])
    np.testing.assert_allclose(curve.best_risk, [0.0, 0.0, 1 / 3])
    np.testing.assert_allclose(curve.coverage, [1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(curve.threshold, [0.9, 0.9, 0.5])
    assert curve.aurc == pytest.approx(4 / 9) and curve.best_aurc == pytest.approx(1 / 9)
    # PRR = (1/3 - 4/9) / (1/3 - 1/9) = -1/2
    assert curve.prr == pytest.approx(-0.5)
    # Top 10% of three answers is one answer: the tied top pair, right half the time.
    assert selective_accuracy([0.9, 0.9, 0.5], [1, 0, 1]) == pytest.approx(0.5)
    # 20 answers, the two most confident (10%) one right, one wrong.
    conf20 = np.linspace(1.0, 0.05, 20)
    corr20 = np.ones(20)
    corr20[1] = 0
    assert selective_accuracy(conf20, corr20) == pytest.approx(0.5)
    assert selective_accuracy(conf20, corr20, coverage=1.0) == pytest.approx(0.95)


def test_degenerate_data_is_named_not_hidden() -> None:
    assert math.isnan(prediction_rejection_ratio([0.2, 0.9], [1, 1]))
    assert math.isnan(prediction_rejection_ratio([0.2, 0.9], [0, 0]))
    assert selective_accuracy([0.3], [1]) == 1.0
    # Every confidence equal: any ranking is random, PRR 0.
    assert prediction_rejection_ratio([0.5] * 6, [1, 0, 1, 1, 0, 0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="coverage must be a fraction"):
        selective_accuracy([0.3, 0.4], [1, 0], coverage=0.0)
    with pytest.raises(ValueError, match="outside"):
        risk_coverage_curve([1.3, 0.4], [1, 0])


@pytest.mark.parametrize("seed", range(6))
def test_curve_with_ties_is_the_expectation_over_tie_orders(seed: int) -> None:
    rng = np.random.default_rng(seed)
    conf = rng.choice([0.2, 0.5, 0.8], size=7)
    corr = (rng.uniform(size=7) < conf).astype(float)
    curve = risk_coverage_curve(conf, corr)
    np.testing.assert_allclose(curve.risk, expected_over_tie_orders(conf, corr), atol=1e-12)
    assert curve.aurc == pytest.approx(float(np.mean(curve.risk)), abs=1e-12)
    assert curve.aurc == pytest.approx(aurc(conf, corr), abs=1e-12)
    k = math.ceil(0.3 * 7)
    assert selective_accuracy(conf, corr, coverage=0.3) == pytest.approx(
        1 - expected_over_tie_orders(conf, corr)[k - 1] , abs=1e-12)


@pytest.mark.parametrize("n", [95, 333, 1001])
def test_selective_accuracy_matches_helm(n: int) -> None:
    rng = np.random.default_rng(n)
    conf = rng.uniform(size=n)
    corr = (rng.uniform(size=n) < conf).astype(float)
    assert selective_accuracy(conf, corr) == pytest.approx(helm_selective_accuracy(conf, corr),
                                                           abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_prr_matches_lm_polygraph(seed: int) -> None:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(size=150)
    corr = (rng.uniform(size=150) < conf**2).astype(float)
    # The area under the rejection curve is 1 - AURC exactly ...
    assert polygraph_pra(-conf, corr) == pytest.approx(1 - aurc(conf, corr), abs=1e-12)
    # ... and the normalised ratio agrees within the shuffles' Monte Carlo error.
    assert prediction_rejection_ratio(conf, corr) == pytest.approx(polygraph_prr(conf, corr),
                                                                   abs=0.02)


def test_registered_with_direction_and_intervals() -> None:
    assert METRICS["prr"].higher_is_better is True
    assert METRICS["selective_accuracy_10"].higher_is_better is True
    rng = np.random.default_rng(9)
    conf = rng.uniform(size=400)
    corr = (rng.uniform(size=400) < conf).astype(float)
    result = compute_all(conf, corr, n_resamples=200, seed=0)
    for name in ("prr", "selective_accuracy_10", "aurc"):
        r = result[name]
        assert r.low <= r.estimate <= r.high
    # A calibrated, informative confidence ranks far better than random.
    assert result["prr"].low > 0.2
    assert result["selective_accuracy_10"].estimate > result["accuracy"].estimate
