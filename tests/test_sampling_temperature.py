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


def test_fit_bench_and_synthetic_refit_the_sampling_temperature_alike(tiny_backend, tmp_path):
    """One run sampled with a temperature grid; recal fit, recal bench and the synthetic
    world's repair choose the same temperature, refuse the same thin ones and judge the same
    held-out questions to the same figures."""
    import json

    import numpy as np

    from recal.bench import BenchConfig, run_bench
    from recal.calibrators import split_calibration
    from recal.confidence import classify_run
    from recal.metrics import smooth_ece
    from recal.repair import FitConfig, fit_methods
    from recal.runstore import RunStore
    from recal.synthetic.repairs import RepairContext, sampling_temperature_repair

    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"{'abcd'[i % 4]} {i}?",
                                        "answers": ["3"] if i % 2 else ["a", "i"]}) + "\n"
                            for i in range(24)))
    sampling = SamplingConfig(n_samples=12, max_new_tokens=2, tau_grid=GRID, seed=0)
    collapser = get_collapser("normalized")

    def bench(min_ess: float):
        return run_bench(BenchConfig(
            models=("tiny",), datasets=(str(data),), limit=None, scorers=("modal_share",),
            methods=("sampling_temperature",), peers=(), sampling=sampling, n_resamples=50,
            diagrams=False, progress=False, out=str(tmp_path / "bench"), min_ess=min_ess),
            loader=lambda name: tiny_backend)

    [row] = bench(0.0).rows
    store = RunStore.open(next((tmp_path / "bench" / "runs").iterdir()))
    # refuse the temperature chosen without refusal, when it is not the sampled one
    table = fit_methods(store, FitConfig(n_resamples=50, min_ess=0.0)).temperature.table
    best = min(table, key=lambda r: r["log_loss"])
    min_ess = best["median_ess"] + 1e-6 if best["tau"] != 1.0 else 0.0
    [row] = bench(min_ess).rows

    fitted = fit_methods(store, FitConfig(n_resamples=50, min_ess=min_ess))
    [fit_row] = [r for r in fitted.results if r.method == "sampling_temperature"]
    ids = [item.question.id for item in classify_run(store, collapser)]
    cal, held = split_calibration(len(ids), 0.5, 0)
    ctx = RepairContext(name="tiny", model=None, base=None, tokenizer=None, world=None,
                        run=store.path, out=tmp_path / "synth",
                        calibration_ids=tuple(ids[i] for i in cal),
                        heldout_ids=tuple(ids[i] for i in held), collapser=collapser,
                        n_samples=12, seed=0, n_resamples=50, tau_grid=GRID, min_ess=min_ess)
    [synth] = sampling_temperature_repair(ctx)

    tau = row.detail["tau"]
    assert fit_row.detail["tau"] == synth.detail["tau"] == tau == fitted.temperature.tau_
    if best["tau"] != 1.0:
        assert best["tau"] in row.detail["refused_below"] and tau != best["tau"]
    assert row.detail["refused_below"] == fit_row.detail["refused_below"] == (
        synth.detail["refused_below"])
    for metric in ("smooth_ece", "accuracy", "brier_score"):
        assert row.heldout[metric] == fit_row.heldout[metric]
    assert synth.smooth_ece["estimate"] == row.heldout["smooth_ece"].estimate
    assert synth.accuracy == row.heldout["accuracy"].estimate
    # and the figure is the reweighted modal share of the held-out questions at that tau
    items = classify_run(store, collapser, ids=[ids[i] for i in held])
    points = [reweight(item, tau, GRID) for item in items]
    conf = np.array([p.confidence for p in points])
    corr = np.array([collapser.is_correct(item.question, p.answer)
                     for item, p in zip(items, points, strict=True)])
    # (the bootstrap engine's batched kernel agrees with the plain function to ~1e-6)
    assert row.heldout["smooth_ece"].estimate == pytest.approx(smooth_ece(conf, corr), abs=1e-5)
    assert row.heldout["accuracy"].estimate == pytest.approx(corr.mean())
