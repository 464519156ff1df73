"""Importance reweighting to another sampling temperature, checked against real resampling."""

from __future__ import annotations

import math

import pytest

from recal.confidence import classify
from recal.data.records import Question
from recal.prompts import build_prompt
from recal.samples import SamplingConfig
from recal.sampling_temperature import fit_sampling_temperature, reweight
from recal.semantic import get_collapser

QUESTIONS = [Question(f"q{i}", text, ("a",)) for i, text in enumerate(["abc?", "bad", "cafe?"])]
GRID = (0.8, 1.0, 1.25)


def _items(backend, temperature: float, m: int, grid=GRID):
    config = SamplingConfig(n_samples=m, temperature=temperature, max_new_tokens=2,
                            tau_grid=grid, greedy=False).resolved("concise", chat=False)
    prompts = [build_prompt(q, chat=False) for q in QUESTIONS]
    records = {r.question_id: r for r in backend.generate([q.id for q in QUESTIONS], prompts,
                                                           config)}
    return classify(QUESTIONS, [records[q.id] for q in QUESTIONS], get_collapser("normalized"))


def test_reweighting_at_the_sampling_temperature_changes_nothing(tiny_backend):
    for item in _items(tiny_backend, 1.0, 50):
        point = reweight(item, 1.0, GRID)
        assert point.ess == pytest.approx(50, rel=1e-6)
        label, count = item.counts()[0]
        assert point.answer == label and point.confidence == pytest.approx(count / 50)


def test_reweighted_shares_agree_with_real_resampling(tiny_backend):
    """Samples at T = 1 reweighted to T = 0.8 and 1.25 against samples drawn at those T."""
    m = 1500
    base = _items(tiny_backend, 1.0, m)
    for tau in (0.8, 1.25):
        direct = _items(tiny_backend, tau, m)
        for reweighted_item, direct_item in zip(base, direct, strict=True):
            point = reweight(reweighted_item, tau, GRID)
            total = len(direct_item.labels)
            for label, count in direct_item.counts()[:3]:
                p = count / total
                est = point.shares.get(label, 0.0)
                se = math.sqrt(p * (1 - p) / point.ess + p * (1 - p) / total)
                assert abs(est - p) < 4 * se + 1e-3, (tau, label, est, p, point.ess)
            assert point.ess < m  # moving away from T = 1 costs effective samples


def test_fit_picks_a_grid_temperature_and_refuses_thin_ones(tiny_backend):
    items = _items(tiny_backend, 1.0, 40)
    collapser = get_collapser("normalized")
    fit = fit_sampling_temperature(items, collapser, tau_grid=GRID, tau0=1.0)
    assert fit.tau_ in GRID and len(fit.table) == len(GRID)
    assert all(row["median_ess"] <= 40 + 1e-6 for row in fit.table)
    with pytest.raises(ValueError, match="effective sample size below 1000"):
        fit_sampling_temperature(items, collapser, tau_grid=GRID, tau0=1.0, min_ess=1000)
    with pytest.raises(ValueError, match="criterion must be"):
        fit_sampling_temperature(items, collapser, tau_grid=GRID, tau0=1.0, criterion="ece")


def test_samples_without_a_grid_are_refused(tiny_backend):
    items = _items(tiny_backend, 1.0, 5, grid=())
    with pytest.raises(ValueError, match="sampled without a temperature grid"):
        reweight(items[0], 0.8, GRID)


def test_a_single_class_never_gets_a_share_above_one():
    """Normalised weights can sum to 1.0000000000000002; the share must still be a probability."""
    import numpy as np

    from recal.samples import QuestionSamples, Sample

    rng = np.random.default_rng(0)
    for _ in range(1000):  # find weights whose normalised sum rounds above 1
        log_w = rng.normal(size=13)
        w = np.exp(log_w - log_w.max())
        if sum(float(x) for x in w / w.sum()) > 1.0:
            break
    else:
        pytest.skip("no rounding case found")
    # one-token samples whose log ratio at tau = 1.25 is log_w: z = 0, logprob = 0, lse = -log_w
    samples = tuple(Sample("a", (1,), (0.0,), "stop", logits=(0.0,), lse=((0.0, 0.0, -x),))
                    for x in log_w)
    [item] = classify([QUESTIONS[0]], [QuestionSamples("q0", samples, None)],
                      get_collapser("normalized"))
    point = reweight(item, 1.25, GRID)
    assert point.answer == "a" and point.confidence == 1.0
