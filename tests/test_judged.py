"""The judged run: one path from a stored run to arrays, the split and metrics."""

from __future__ import annotations

import numpy as np
import pytest

from recal.calibrators import split_calibration
from recal.data.records import Question
from recal.judged import JudgedRun, Split, arrays, judge, paired_verdict, verdict
from recal.metrics import BootstrapResult, brier_score, smooth_ece
from recal.runstore import RunStore
from recal.samples import QuestionSamples, Sample
from recal.semantic import get_collapser

M = 10


def _sample(text: str) -> Sample:
    return Sample(text=text, token_ids=(1,), logprobs=(-0.1,), finish_reason="stop")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> RunStore:
    """Question i: k_i of 10 answers 'paris', the rest 'lyon'; gold 'Paris' on even i."""
    rng = np.random.default_rng(1)
    questions, records = [], []
    for i in range(40):
        k = int(rng.integers(3, M + 1))
        gold = "Paris" if i % 2 == 0 else "Lyon"
        questions.append(Question(f"q{i}", "Capital?", (gold,)))
        texts = ["paris"] * k + ["lyon"] * (M - k)
        records.append(QuestionSamples(f"q{i}", tuple(_sample(t) for t in texts)))
    manifest = {"model": {"name": "fake", "kind": "chat", "backend": "test", "source": "test",
                          "config_hash": "0"}, "style": "concise", "shots": None,
                "sampling": {"n_samples": M, "temperature": 1.0, "max_new_tokens": 4,
                             "stop_at_newline": True, "greedy": False, "seed": 0, "tau_grid": []},
                "questions": {"dataset": "x", "count": 40, "hash": "x"}}
    run = RunStore.create_or_resume(tmp_path_factory.mktemp("run"), manifest, questions)
    for r in records:
        run.append(r)
    return run


def _expected(store: RunStore) -> tuple[np.ndarray, np.ndarray]:
    """The modal share and its correctness, counted by hand from the stored texts."""
    conf, corr = [], []
    records = store.samples_by_id()
    for q in store.questions():
        texts = [s.text for s in records[q.id].samples]
        k = texts.count("paris")
        modal = "paris" if k >= M - k else "lyon"
        conf.append(max(k, M - k) / M)
        corr.append(float(modal == q.answers[0].lower()))
    return np.array(conf), np.array(corr)


def test_arrays_and_metrics_are_the_modal_share_counted_by_hand(store):
    judged = JudgedRun.from_store(store, get_collapser("normalized"), n_resamples=50, seed=3)
    conf, corr = _expected(store)
    np.testing.assert_allclose(judged.confidence, conf)
    np.testing.assert_array_equal(judged.correct, corr)
    np.testing.assert_array_equal(arrays(judged.predictions)[0], judged.confidence)
    metrics = judged.metrics()
    assert metrics["accuracy"].estimate == pytest.approx(corr.mean())
    assert metrics["brier_score"].estimate == pytest.approx(np.mean((conf - corr) ** 2))
    assert metrics["smooth_ece"].estimate == pytest.approx(smooth_ece(conf, corr), abs=1e-5)
    assert metrics["accuracy"].n_resamples == 50
    assert judged.metrics() is metrics  # computed once


def test_split_is_recal_fits_split(store):
    judged = JudgedRun.from_store(store, get_collapser("normalized"),
                                  split=Split.random(0.3, seed=7))
    cal, held = split_calibration(40, 0.3, 7)
    np.testing.assert_array_equal(judged.calibration_idx, cal)
    np.testing.assert_array_equal(judged.heldout_idx, held)
    assert judged.heldout_ids == [f"q{i}" for i in held]
    _, corr = _expected(store)
    assert judged.base_rate() == pytest.approx(corr[cal].mean())
    assert judged.base_rate_brier() == pytest.approx(np.mean((corr[cal].mean() - corr[held]) ** 2))
    every = Split.all_questions(seed=5)
    assert every.seed == 5 and (every.indices(4)[0] == every.indices(4)[1]).all()


def test_a_scorer_that_asks_the_model_needs_one(store):
    with pytest.raises(ValueError, match="asks the model"):
        JudgedRun.from_store(store, get_collapser("normalized"), "p_true")


def _m(smooth: float, brier: float, auroc: float) -> dict[str, BootstrapResult]:
    def r(x: float) -> BootstrapResult:
        return BootstrapResult(x, x, x, 0.0, 1, 0.95)

    return {"smooth_ece": r(smooth), "brier_score": r(brier), "auroc": r(auroc)}


def test_verdict_names_each_failure():
    reference = _m(0.2, 0.3, 0.7)
    point = " (point estimates, not paired)"
    assert verdict(_m(0.1, 0.2, 0.7), reference, 0.25) == "good" + point
    assert verdict(_m(0.1, 0.2, 0.695), reference, 0.25) == "good" + point  # within tolerance
    out = verdict(_m(0.2, 0.26, 0.6), reference, 0.25)
    assert out == ("fails: does not lower smooth ECE; Brier not below the base-rate "
                   "predictor's; lowers AUROC" + point)
    assert verdict(reference, reference, 0.25, is_reference=True) == "reference (no repair)"


def test_judge_is_every_metric_with_an_interval():
    rng = np.random.default_rng(0)
    conf = rng.random(200)
    corr = (rng.random(200) < conf).astype(float)
    out = judge(conf, corr, n_resamples=100, seed=0)
    assert out["brier_score"].estimate == pytest.approx(brier_score(conf, corr))
    assert all(r.low <= r.estimate <= r.high for r in out.values() if np.isfinite(r.estimate))


def test_a_change_within_the_noise_is_not_called_better():
    """A calibrated predictor and a 'repair' that only jitters it: the point estimates can favour
    the repair (the old verdict said "good"), the paired interval of the change includes 0."""

    from recal.metrics.paired import paired_difference

    rng = np.random.default_rng(5)
    conf = rng.integers(1, 10, 75) / 10
    correct = (rng.random(75) < conf).astype(float)  # calibrated by construction
    for seed in range(50):  # a jitter whose point estimates happen to look like a repair
        jitter = np.clip(conf + np.random.default_rng(seed).normal(0, 0.03, 75), 0, 1)
        point = verdict(_m(smooth_ece(jitter, correct), brier_score(jitter, correct), 0.7),
                        _m(smooth_ece(conf, correct), brier_score(conf, correct), 0.7), 0.3)
        if point.startswith("good"):
            break
    else:
        pytest.fail("no jitter looked like a repair on point estimates")
    paired = {m: paired_difference(m, (conf, correct), (jitter, correct), seed=0)
              for m in ("smooth_ece", "brier_score")}
    assert paired_verdict(paired).startswith("not distinguishable from no repair")


def test_paired_verdict_words():
    from recal.metrics.paired import PairedDifference

    def d(metric: str, low: float, high: float) -> PairedDifference:
        return PairedDifference(metric, (low + high) / 2, low, high, 0.95, 100)

    ece, brier = "smooth_ece", "brier_score"
    both = {ece: d(ece, -0.1, -0.05), brier: d(brier, -0.02, -0.01)}
    assert paired_verdict(both).startswith("better (smooth_ece -0.075 [-0.100, -0.050]")
    one = {ece: d(ece, -0.1, -0.05), brier: d(brier, -0.02, 0.01)}
    assert paired_verdict(one).startswith("better (")
    mixed = {ece: d(ece, -0.1, -0.05), brier: d(brier, 0.01, 0.02)}
    assert paired_verdict(mixed).startswith("mixed (")
    worse = {ece: d(ece, 0.01, 0.05), brier: d(brier, -0.01, 0.01)}
    assert paired_verdict(worse).startswith("worse (")
