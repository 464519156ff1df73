"""Abstention with a known risk: the threshold rule, its binomial bounds, and its guarantee's
coverage in the synthetic world over many seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from recal.abstention import (
    AbstentionConfig,
    AbstentionRule,
    binomial_cdf,
    choose_threshold,
    risk_upper_bound,
)
from recal.synthetic.world import WorldConfig, make_world


@pytest.mark.parametrize(("k", "n", "p"), [(0, 22, 0.1), (3, 40, 0.1), (17, 300, 0.05),
                                           (250, 1000, 0.3)])
def test_binomial_tail_and_clopper_pearson_match_scipy(k: int, n: int, p: float) -> None:
    assert binomial_cdf(k, n, p) == pytest.approx(stats.binom.cdf(k, n, p), rel=1e-9)
    # One-sided upper bound: the (1 - delta) quantile of Beta(k + 1, n - k).
    assert risk_upper_bound(k, n, 0.1) == pytest.approx(stats.beta.ppf(0.9, k + 1, n - k),
                                                        abs=1e-9)


def test_hand_derived_thresholds() -> None:
    # All right: (1 - 0.1)**n <= 0.1 needs n >= 22, so 30 right answers pass at every level
    # answering at least 22, down to the lowest: every question is answered.
    conf = np.linspace(1.0, 0.3, 30)
    rule = choose_threshold(conf, np.ones(30), AbstentionConfig(0.1, 0.1))
    assert rule.threshold == pytest.approx(0.3) and rule.calibration_answered == 30
    assert rule.risk_upper_bound == pytest.approx(1 - 0.1 ** (1 / 30))
    # 21 questions can never show a risk below 0.1 at 90%: no rule, with the reason.
    rule = choose_threshold(conf[:21], np.ones(21), AbstentionConfig(0.1, 0.1))
    assert rule.threshold is None and "at least 22 answered" in rule.reason
    assert not rule.answers(0.99)
    # 40 right answers above 0.5, then 40 wrong: the threshold stops where the errors start
    # to show. With k errors among 40 + k answered, P(Bin(40 + k, 0.1) <= k) <= 0.1 holds for
    # k = 0 and 1 (0.015, 0.066) and fails at k = 2 (0.18): answer down to the first error.
    conf = np.concatenate([np.linspace(1.0, 0.6, 40), np.linspace(0.5, 0.1, 40)])
    corr = np.concatenate([np.ones(40), np.zeros(40)])
    rule = choose_threshold(conf, corr, AbstentionConfig(0.1, 0.1))
    assert stats.binom.cdf(1, 41, 0.1) <= 0.1 < stats.binom.cdf(2, 42, 0.1)
    assert rule.threshold == pytest.approx(0.5) and rule.calibration_errors == 1
    assert rule.answers(0.5) and not rule.answers(0.49) and not rule.answers(None)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="target_risk must be a probability"):
        AbstentionConfig(target_risk=0.0)
    with pytest.raises(ValueError, match="delta must be a probability"):
        AbstentionConfig(delta=1.5)


def test_rule_round_trips_through_json_and_judges_held_out() -> None:
    conf = np.linspace(1.0, 0.3, 30)
    rule = choose_threshold(conf, np.ones(30)).judge([0.9, 0.2, 0.5], [1, 1, 0])
    assert rule.heldout == {"n": 3, "answered": 2, "errors": 1, "risk": 0.5,
                            "coverage": pytest.approx(2 / 3),
                            "risk_upper_bound": pytest.approx(risk_upper_bound(1, 2, 0.1))}
    doc = rule.to_dict()
    assert doc["calibration_coverage"] == 1.0 and doc["calibration_risk"] == 0.0
    assert AbstentionRule.from_dict(doc) == rule


# --------------------------------------------------------------------------- the guarantee

M = 10


def _world_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Per fact of the synthetic world: an overconfident model's answer distribution (the true
    one squared and renormalised, as post-training sharpens a model) and the true distribution,
    over the fact's values (padded to 3 with zeros)."""
    world = make_world(WorldConfig(n_entities=200, seed=0))
    truth = np.zeros((len(world.facts), 3))
    for i, fact in enumerate(world.facts):
        truth[i, :len(fact.probs)] = fact.probs
    answer = truth**2 / (truth**2).sum(axis=1, keepdims=True)
    return answer, truth


ANSWER, TRUTH = _world_arrays()


def synthetic_population(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` questions of the synthetic world answered by the overconfident model: each a fact
    drawn at random, gold realised from the fact's true distribution, M answers from the model;
    the modal share and whether the mode is right (ties for the mode broken at random)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ANSWER), size=n)
    counts = rng.multinomial(M, ANSWER[picks])
    mode = np.argmax(counts + rng.uniform(0, 0.5, size=counts.shape), axis=1)
    gold = (rng.uniform(size=(n, 1)) > np.cumsum(TRUTH[picks], axis=1)).sum(axis=1)
    return counts.max(axis=1) / M, (mode == np.minimum(gold, 2)).astype(float)


def test_the_risk_guarantee_covers_in_the_synthetic_world() -> None:
    """Over 200 calibration draws of 300 questions, the chosen threshold's true risk (on a
    population of 200,000) exceeds the target in at most delta of them (plus Monte Carlo slack),
    and the rule is not vacuous: it answers a real share of the questions."""
    config = AbstentionConfig(target_risk=0.2, delta=0.1)
    pop_conf, pop_corr = synthetic_population(10_000, 200_000)
    levels = np.unique(pop_conf)
    true_risk = {float(t): float(1 - pop_corr[pop_conf >= t].mean()) for t in levels}
    assert 1 - pop_corr.mean() > 0.3  # answering everything would break the target
    seeds = 200
    violations, coverages, heldout_risks = 0, [], []
    for seed in range(seeds):
        cal_conf, cal_corr = synthetic_population(seed, 300)
        rule = choose_threshold(cal_conf, cal_corr, config)
        if rule.threshold is None:
            coverages.append(0.0)
            continue
        risk = true_risk[min(t for t in true_risk if t >= rule.threshold)]
        violations += risk > config.target_risk
        coverages.append(float((pop_conf >= rule.threshold).mean()))
        held = rule.judge(*synthetic_population(seed + 5_000, 300)).heldout
        if held["risk"] is not None:
            heldout_risks.append(held["risk"])
    slack = 3 * math.sqrt(config.delta * (1 - config.delta) / seeds)
    assert violations / seeds <= config.delta + slack, violations
    assert np.mean(coverages) > 0.3, np.mean(coverages)
    assert np.mean(heldout_risks) <= config.target_risk
