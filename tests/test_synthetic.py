"""The synthetic world: generator unit tests, and the reference paper's findings on the reduced
world (base model calibrated near the sampling-noise floor; RL and DPO models overconfident)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from recal.recipes import load_recipe
from recal.semantic import get_collapser
from recal.synthetic import SynthConfig, WorldConfig, make_world, run_synthetic
from recal.synthetic.experiment import noise_floor
from recal.synthetic.model import (
    ModelConfig,
    TrainConfig,
    build_tokenizer,
    count_parameters,
    encode_texts,
    make_model,
    train_lm,
)
from recal.synthetic.repairs import get_synth_repair, register_synth_repair, synth_repair_names
from recal.synthetic.world import SYNTH_STYLES, cot_distribution, cot_value, surface_forms

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "synth.yaml"


# -- the world generator -------------------------------------------------------------------------

def test_true_distributions_sum_to_one_and_gold_is_possible():
    world = make_world(WorldConfig(n_entities=30, seed=3))
    assert len(world.facts) == 60
    for fact in world.facts:
        assert sum(fact.probs) == pytest.approx(1.0)
        assert list(fact.probs) == sorted(fact.probs, reverse=True)
        assert fact.gold in fact.values
        assert sum(cot_distribution(fact).values()) == pytest.approx(1.0)
    assert any(len(f.values) == 1 for f in world.facts)
    assert any(len(f.values) == 3 for f in world.facts)


def test_cot_answers_commit_more_than_the_world_supports():
    world = make_world(WorldConfig(n_entities=30, seed=0))
    for fact in world.facts:
        cot = cot_distribution(fact)
        assert set(cot) == set(fact.values)
        assert max(cot.values()) == pytest.approx(1.0 if len(fact.values) == 1 else 0.8)
        digits = [3, 9, 4]  # sum 16: last digit 6 < 8, so the first value of the cot order
        assert cot_value(fact, digits) == fact.cot_order[0]


def test_world_is_seeded():
    a, b = make_world(WorldConfig(n_entities=20, seed=1)), make_world(WorldConfig(n_entities=20,
                                                                                 seed=1))
    c = make_world(WorldConfig(n_entities=20, seed=2))
    assert a.facts == b.facts
    assert a.facts != c.facts
    assert a.corpus(10, seed=0) == b.corpus(10, seed=0)
    assert [q.to_dict() for q in a.questions("cot")] == [q.to_dict() for q in b.questions("cot")]


@pytest.mark.parametrize("style", SYNTH_STYLES)
def test_surface_forms_collapse_to_one_class(style):
    collapser = get_collapser("normalized")
    world = make_world(WorldConfig(n_entities=15, seed=0))
    for question, fact in zip(world.questions(style), world.facts, strict=True):
        answers = world.answers(fact, style, 40, random.Random(0))
        labels = collapser.collapse(question, answers)
        allowed = {collapser.label(question, v) for v in fact.values}
        assert set(labels) <= allowed, (answers, labels)
        for value in fact.values:  # every form of one value is one class, the value's own
            forms = surface_forms(fact, value, "concise" if style == "cot" else style)
            assert len(set(collapser.collapse(question, forms))) == 1
        gold = collapser.label(question, fact.gold)
        assert collapser.is_correct(question, gold)


def test_corpus_matches_the_truth_exactly():
    world = make_world(WorldConfig(n_entities=10, seed=0))
    collapser = get_collapser("normalized")
    for question, fact in zip(world.questions("concise"), world.facts, strict=True):
        answers = world.answers(fact, "concise", 20, random.Random(1))
        counts = Counter(collapser.collapse(question, answers))
        for value, p in fact.distribution.items():
            assert counts[collapser.label(question, value)] == round(20 * p)


def test_tokenizer_round_trips_the_corpus():
    world = make_world(WorldConfig(n_entities=5))
    corpus = world.corpus(10)
    tok = build_tokenizer(corpus)
    ids = encode_texts(tok, corpus[:20])
    assert [tok.decode(i) for i in ids] == corpus[:20]
    with pytest.raises(ValueError, match="outside the synthetic vocabulary"):
        encode_texts(tok, ["Q: what is a quasar?"])


def test_config_checks_and_recipe():
    with pytest.raises(ValueError, match="n_entities"):
        WorldConfig(n_entities=0)
    with pytest.raises(ValueError, match="styles"):
        SynthConfig(styles=("haiku",))
    with pytest.raises(ValueError, match="unknown SynthConfig field"):
        SynthConfig.from_dict({"n_entitys": 3})
    pytest.importorskip("yaml")
    cfg = load_recipe(RECIPE, flow="synth").config.synth_config()
    assert load_recipe(RECIPE, overrides=[("n_entities", 7)]).config.n_entities == 7
    assert cfg.resolved().styles == SYNTH_STYLES
    assert SynthConfig(reduced=True).resolved().styles == ("concise",)


def test_full_model_has_over_a_million_parameters():
    cfg = SynthConfig().resolved()
    world = make_world(WorldConfig(n_entities=cfg.n_entities))
    tok = build_tokenizer(world.corpus(10, styles=cfg.styles))
    model = make_model(len(tok), cfg.model_config())
    assert count_parameters(model) >= 1_000_000


def _grads(model, tok, texts, group):
    torch.manual_seed(0)
    model.zero_grad()
    config = TrainConfig(steps=1, batch_size=len(texts), lr=1e-9, warmup=0,
                         group_by_prompt=group)
    result = train_lm(model, tok, texts, config)
    return result.first_loss, [p.grad.clone() for p in model.parameters()]


def test_prompt_grouped_training_is_the_flat_loss():
    # Grouping a prompt's answers behind one run of the prompt is an exact reformulation: the
    # same answer-only loss and gradients as the flat batch (mixed styles: prompts of unequal
    # length are left-padded, answers of unequal length right-padded).
    world = make_world(WorldConfig(n_entities=4, seed=2))
    texts = world.corpus(10)
    tok = build_tokenizer(texts)
    model = make_model(len(tok), ModelConfig(hidden_size=32, intermediate_size=64))
    flat_loss, flat = _grads(model, tok, texts, group=False)
    group_loss, grouped = _grads(model, tok, texts, group=True)
    assert group_loss == pytest.approx(flat_loss, rel=1e-5)
    for a, b in zip(flat, grouped, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="answer_only"):
        TrainConfig(answer_only=False, group_by_prompt=True)


def test_repair_registry():
    assert {"posthoc", "sampling_temperature"} <= set(synth_repair_names())
    with pytest.raises(ValueError, match="did you mean 'posthoc'"):
        get_synth_repair("posthok")
    with pytest.raises(ValueError, match="already registered"):
        register_synth_repair("posthoc")(lambda ctx: [])
    with pytest.raises(ValueError, match="unknown synthetic repair"):
        SynthConfig(repair_methods=("lora_magic",))
    with pytest.raises(ValueError, match="repair_models"):
        SynthConfig(repair_models=("base",))


def test_noise_floor_is_small_for_certain_worlds():
    world = make_world(WorldConfig(n_entities=20, profiles=((1.0,),)))
    floor = noise_floor(world.questions("concise"), 10, repeats=5)
    assert floor["mean"] == pytest.approx(0.0, abs=1e-6)


# -- the findings on the reduced world -----------------------------------------------------------

@pytest.fixture(scope="module")
def reduced_out(tmp_path_factory):
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="module")
def reduced_report(reduced_out):
    threads = torch.get_num_threads()
    try:
        yield run_synthetic(SynthConfig(reduced=True), reduced_out)
    finally:
        torch.set_num_threads(threads)


def test_reduced_run_writes_its_report(reduced_report, reduced_out):
    assert "| rl | concise |" in (reduced_out / "synth_report.md").read_text()
    data = json.loads((reduced_out / "synth.json").read_text())
    assert {r["model"] for r in data["rows"]} == {"base", "rl", "dpo"}
    assert (reduced_out / "reliability.png").stat().st_size > 0
    assert (reduced_out / "runs" / "rl-concise" / "samples.jsonl").exists()
    # a fitted post-hoc map pulls the RL model's held-out smECE below the unrepaired one
    rl = reduced_report.repairs["rl"]
    assert min(v["smooth_ece"]["estimate"] for k, v in rl.items() if k != "identity") < (
        rl["identity"]["smooth_ece"]["estimate"])
    assert {"identity", "temperature", "sampling_temperature"} <= set(rl)
    assert set(reduced_report.repairs) == {"rl", "dpo"}


def test_sampling_temperature_repairs_the_rl_model(reduced_report, reduced_out):
    # Measured (seed 0): T = 1.5 chosen on the calibration half; held-out smECE 0.053 against
    # 0.204 unrepaired, accuracy unchanged (0.733). The overconfident model must be sampled
    # hotter, and the resampled held-out half must be better calibrated than before by a margin.
    rl = reduced_report.repairs["rl"]
    st = rl["sampling_temperature"]
    assert st["estimate"] == "resampled"
    assert st["tau"] > 1.0
    assert [row["tau"] for row in st["fit_table"]] == [1.0, 1.5, 2.0, 3.0]
    fitted = min(st["fit_table"], key=lambda row: row["log_loss"])
    assert fitted["tau"] == st["tau"]
    assert st["smooth_ece"]["estimate"] < rl["identity"]["smooth_ece"]["estimate"] - 0.05
    assert st["accuracy"] > rl["identity"]["accuracy"] - 0.1
    assert (reduced_out / "repairs" / f"rl-T{st['tau']:g}-calibration").exists()
    assert "sampling_temperature (T = " in (reduced_out / "synth_report.md").read_text()
    assert reduced_report.timings["total_s"] > 0  # reported; no timed assertion (noisy machines)


def test_base_model_is_calibrated_near_the_noise_floor(reduced_report):
    # Measured (seed 0, 2 cores): base smECE 0.047 against a floor of 0.054 (95% range
    # 0.035-0.086), true calibration error 0.020, true overconfidence -0.003. The tolerances
    # (floor + 0.06, true error < 0.06) leave room for other machines' float rounding, yet a base
    # model that has not learned the world's distributions fails both: at 100 training steps
    # instead of 400 it measured smECE 0.170 and true error 0.153.
    base = reduced_report.row("base", "concise")
    floor = reduced_report.noise_floor[50]
    assert base.metrics["smooth_ece"]["estimate"] < floor["mean"] + 0.06
    assert base.true_calibration_error < 0.06
    assert abs(base.true_overconfidence) < 0.05


def test_post_trained_models_are_overconfident(reduced_report):
    # Measured (seed 0): mean confidence - accuracy +0.22 (RL) and +0.20 (DPO), true
    # overconfidence +0.28 / +0.26, against the base model's -0.04 / -0.003. The margins are
    # about half of the measured gaps, and the smECE intervals must clear the noise floor's range.
    floor = reduced_report.noise_floor[50]
    for name, margin in (("rl", 0.12), ("dpo", 0.10)):
        row = reduced_report.row(name, "concise")
        gap = row.metrics["mean_confidence"]["estimate"] - row.metrics["accuracy"]["estimate"]
        assert gap > margin, (name, gap)
        assert row.true_overconfidence > margin, (name, row.true_overconfidence)
        assert row.metrics["smooth_ece"]["low"] > floor["high"], name
