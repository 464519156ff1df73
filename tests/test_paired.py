"""Paired comparison: the same question resamples for both predictors."""

from __future__ import annotations

import numpy as np
import pytest

from recal.metrics import brier_score, smooth_ece
from recal.metrics.paired import paired_difference


def _data(n: int, seed: int, discrete: bool):
    rng = np.random.default_rng(seed)
    conf = rng.integers(0, 11, n) / 10 if discrete else rng.uniform(0, 1, n)
    correct = (rng.random(n) < conf ** 3).astype(float)  # overconfident
    return conf, correct


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize(("metric", "fn"), [("smooth_ece", smooth_ece),
                                             ("brier_score", brier_score)])
def test_paired_interval_equals_the_loop_over_the_same_resamples(metric, fn, discrete):
    conf, correct = _data(120, 1, discrete)
    repaired = conf ** 3  # the map that calibrates this predictor
    got = paired_difference(metric, (conf, correct), (repaired, correct), n_resamples=200,
                            seed=7)
    picks = np.random.default_rng(7).integers(0, 120, size=(200, 120))
    diffs = [fn(repaired[i], correct[i]) - fn(conf[i], correct[i]) for i in picks]
    assert got.estimate == pytest.approx(fn(repaired, correct) - fn(conf, correct), abs=1e-12)
    tol = 1e-9 if (discrete or metric == "brier_score") else 3e-3  # continuous: quantised cells
    assert got.low == pytest.approx(np.quantile(diffs, 0.025), abs=tol)
    assert got.high == pytest.approx(np.quantile(diffs, 0.975), abs=tol)


def test_a_real_repair_is_better_and_a_copy_is_not_distinguishable():
    conf, correct = _data(300, 2, discrete=True)
    better = paired_difference("smooth_ece", (conf, correct), (conf ** 3, correct), seed=0)
    assert better.direction(higher_is_better=False) == "better" and better.high < 0
    # two exchangeable predictors (the same one, jittered twice): no real difference
    rng = np.random.default_rng(3)
    one, two = (np.clip(conf + rng.normal(0, 0.02, conf.size), 0, 1) for _ in range(2))
    same = paired_difference("brier_score", (one, correct), (two, correct), seed=0)
    assert same.direction(higher_is_better=False) == "not distinguishable"
    assert same.low < 0 < same.high


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="same questions"):
        paired_difference("smooth_ece", ([0.5, 0.6], [1, 0]), ([0.5], [1]))
