"""The LoRA repairs of the synthetic world (recal.synthetic.lora_repairs) on a tiny world: one
real confidence-head tune, and the guards that refuse a wrong model or a different split."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("peft")

from recal.semantic import get_collapser  # noqa: E402
from recal.synthetic import SynthConfig, WorldConfig, make_world  # noqa: E402
from recal.synthetic.experiment import _measure, _repair_context  # noqa: E402
from recal.synthetic.lora_repairs import (  # noqa: E402
    NO,
    YES,
    LoraSettings,
    lora_repair,
    weights_digest,
)
from recal.synthetic.model import (  # noqa: E402
    ModelConfig,
    TrainConfig,
    as_backend,
    build_tokenizer,
    make_model,
    train_lm,
)
from recal.synthetic.posttrain import RLConfig, rl_posttrain  # noqa: E402
from recal.synthetic.repairs import synth_repair_names  # noqa: E402
from recal.synthetic.world import prompt_text  # noqa: E402

LORA = ("lora_confidence_head", "lora_amortised", "lora_distribution")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 40-entity world, a 2-layer base model, its RL model and the RL model's measured run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("synth-lora")
        cfg = SynthConfig(reduced=True, n_entities=40, n_samples=20, m_sweep=(20,),
                          n_resamples=100).resolved()
        collapser = get_collapser("normalized")
        world = make_world(WorldConfig(n_entities=40, seed=0))
        corpus = world.corpus(20, styles=("concise",), seed=0)
        tok = build_tokenizer(corpus + [prompt_text(q.question)
                                        for q in world.questions("concise")])
        base = make_model(len(tok), ModelConfig(hidden_size=64, intermediate_size=128,
                                                num_hidden_layers=2), seed=0)
        train_lm(base, tok, corpus, TrainConfig(steps=250, lr=3e-3, warmup=20))
        rl = rl_posttrain(base, tok, world.questions("concise"),
                          RLConfig(steps=15, seed=0), collapser=collapser).model
        _measure("rl", "concise", as_backend(rl, tok, "synthetic-rl"), world, cfg, out,
                 collapser)
        yield _repair_context("rl", rl, base, tok, world, out, cfg, collapser)
    finally:
        torch.set_num_threads(threads)


def test_lora_repairs_are_registered_and_run_in_the_full_reproduction_only():
    assert set(LORA) <= set(synth_repair_names())
    assert set(LORA) <= set(SynthConfig().resolved().repair_methods or ())
    assert not set(LORA) & set(SynthConfig(reduced=True).resolved().repair_methods or ())


def test_confidence_head_repair_tunes_a_copy_on_the_same_split(tiny):
    from recal.tuning import load_tuned
    from recal.tuning.sequences import first_token

    backend = as_backend(tiny.model, tiny.tokenizer, "synthetic-rl")
    yes, no = first_token(backend, YES), first_token(backend, NO)
    assert yes != no and tiny.tokenizer.unk_token_id not in (yes, no)
    before = weights_digest(tiny.model)
    result = lora_repair(tiny, "confidence_head",
                         LoraSettings(learning_rate=5e-3, max_epochs=3, patience=3))
    assert weights_digest(tiny.model) == before  # tune trained a copy
    assert result.method == "lora_confidence_head"
    sm = result.smooth_ece
    assert 0 <= sm["low"] <= sm["estimate"] <= sm["high"] <= 1
    rows = result.detail["rows"]
    assert list(rows) == ["modal share (sampled)", "P(yes), frozen model", "P(yes), tuned"]
    reference, _ = tiny.reference()
    # The same held-out questions as the other repairs: the unrepaired row is the reference.
    assert rows["modal share (sampled)"]["smooth_ece"] == pytest.approx(
        reference["smooth_ece"].estimate)
    assert result.accuracy == pytest.approx(reference["accuracy"].estimate)
    # The verdict follows from the figures by its rule (recal.judged.verdict): it names a
    # smooth ECE that is not lower than the unrepaired one's, and only then.
    tuned_sm, reference_sm = (rows["P(yes), tuned"]["smooth_ece"],
                              rows["modal share (sampled)"]["smooth_ece"])
    assert sm["estimate"] == pytest.approx(tuned_sm)
    assert ("does not lower smooth ECE" in result.verdict) == (tuned_sm >= reference_sm)
    assert result.verdict.startswith(("good (", "fails: "))
    assert result.verdict.endswith("(point estimates, not paired)")

    # P(yes) is a real readout: it varies across held-out questions, and the adapter moved it.
    assert result.detail["best_epoch"] >= 1
    tuned = load_tuned(tiny.out / "rl-lora-confidence_head" / "adapter", backend=backend)
    questions = tiny.questions(tiny.heldout_ids[:12])
    answers = [q.metadata["mode"] for q in questions]
    after = tuned.confidence(questions, answers)
    with tuned.model.disable_adapter():
        frozen = tuned.confidence(questions, answers)
    assert np.ptp(frozen) > 1e-4
    assert np.abs(after - frozen).max() > 1e-3
    assert weights_digest(tiny.model) == before


def test_lora_repair_refuses_another_model_or_split(tiny):
    with pytest.raises(ValueError, match="not the model that sampled it"):
        lora_repair(replace(tiny, model=tiny.base), "amortised")
    shifted = (*tiny.heldout_ids[1:], tiny.calibration_ids[0])
    with pytest.raises(RuntimeError, match="splits .* differently"):
        lora_repair(replace(tiny, heldout_ids=shifted), "amortised")
    with pytest.raises(ValueError, match="unknown LoRA repair method"):
        lora_repair(tiny, "magic")


@pytest.mark.parametrize("method", ["amortised", "distribution"])
def test_amortised_and_distribution_repairs_train(tiny, method):
    """The other two LoRA repairs train for real on the tiny world: the optimiser moved the
    adapter (LoRA B starts at zero), on a copy, and the row is judged on the shared split."""
    from safetensors.torch import load_file

    before = weights_digest(tiny.model)
    result = lora_repair(tiny, method, LoraSettings(learning_rate=5e-3, max_epochs=2,
                                                    patience=2))
    assert weights_digest(tiny.model) == before
    assert result.method == f"lora_{method}"
    assert result.detail["epochs"] >= 1 and len(result.detail["history"]) >= 1
    assert np.isfinite(result.detail["best_val_loss"])
    [last] = (tiny.out / f"rl-lora-{method}").glob("**/checkpoints/last")
    tensors = load_file(str(last / "adapter_model.safetensors"))
    moved = max(t.abs().max().item() for k, t in tensors.items() if "lora_B" in k)
    assert moved > 0
    reference, _ = tiny.reference()
    if method == "amortised":  # a confidence read before answering: the answers are the run's
        assert result.accuracy == pytest.approx(reference["accuracy"].estimate)
    sm = result.smooth_ece
    assert 0 <= sm["low"] <= sm["high"] <= 1
