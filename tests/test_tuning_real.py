"""A few tuning steps on the real SmolLM2-135M-Instruct (cached in ~/.cache/recal): the methods
run on a real chat model's tokenizer, template and layers, and reload identically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import load_smollm2_or_skip

from recal.data.loaders import load_questions
from recal.runstore import RunStore
from recal.samples import QuestionSamples, Sample
from recal.tuning import AmortisedConfig, ConfidenceHeadConfig, load_tuned, tune
from recal.tuning.trainer import HEAD_FILE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return load_smollm2_or_skip()


def _lora_b_norm(adapter: Path) -> float:
    """The largest |B| entry of the saved LoRA matrices: B starts at zero, so a positive value
    means training moved the adapter."""
    from safetensors.torch import load_file

    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    b = [t.abs().max().item() for k, t in tensors.items() if "lora_B" in k]
    assert b, f"no lora_B tensor in {sorted(tensors)[:5]}"
    return max(b)


@pytest.fixture(scope="module")
def real_store(smollm2, tmp_path_factory) -> RunStore:
    """Eight built-in questions; half answered with the gold answer, half with a wrong one, in
    SmolLM2's own tokens ending with its end-of-turn token."""
    questions = load_questions("builtin", limit=8)
    end = smollm2.tokenizer.convert_tokens_to_ids("<|im_end|>")
    records = []
    for i, q in enumerate(questions):
        text = q.answers[0] if i % 2 == 0 else "Banana"
        ids = (*smollm2.tokenizer(text, add_special_tokens=False)["input_ids"], end)
        sample = Sample(text, ids, tuple(-0.1 for _ in ids), "stop")
        other = Sample("Paris", (*smollm2.tokenizer("Paris", add_special_tokens=False)
                                 ["input_ids"], end), (-0.1, -0.1), "stop")
        records.append(QuestionSamples(q.id, (sample, sample, sample, other)))
    manifest = {"model": smollm2.identity.to_dict(), "style": "concise", "shots": None,
                "sampling": {"n_samples": 4, "temperature": 1.0, "max_new_tokens": 32,
                             "greedy": False, "seed": 0, "stop_at_newline": True,
                             "tau_grid": []},
                "questions": {"dataset": "builtin", "count": 8, "hash": "x"}}
    store = RunStore.create_or_resume(tmp_path_factory.mktemp("real") / "run", manifest,
                                      questions)
    for r in records:
        store.append(r)
    return store


def test_amortised_few_steps_on_smollm2_reloads_identically(smollm2, real_store, tmp_path):
    config = AmortisedConfig(max_steps=2, train_layers=2, batch_size=4, eval_limit=2,
                             n_resamples=20)
    report = tune(real_store, config, tmp_path / "out", backend=smollm2, progress=False)
    assert report.training.steps == 2 and math.isfinite(report.training.best_val_loss)
    questions = [q for q in real_store.questions()[:2]]
    one = load_tuned(tmp_path / "out" / "adapter", backend=smollm2).confidence(questions)
    two = load_tuned(tmp_path / "out" / "adapter", backend=smollm2).confidence(questions)
    np.testing.assert_array_equal(one, two)
    assert ((one > 0) & (one < 1)).all()
    # Training changed the adapter (LoRA B starts at zero); the exported adapter is the best
    # epoch's, the untrained one when no epoch beat it on validation.
    [last] = (tmp_path / "out").glob("**/checkpoints/last")
    assert _lora_b_norm(last) > 0
    exported = _lora_b_norm(tmp_path / "out" / "adapter")
    assert (exported > 0) == (report.training.best_epoch > 0)
    # The confidence goes through the adapter: with the trained weights in (the best epoch's
    # head may be the untrained one, a constant prior), switching the adapter off changes it.
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    tuned = load_tuned(tmp_path / "out" / "adapter", backend=smollm2)
    set_peft_model_state_dict(tuned.model, load_file(str(last / "adapter_model.safetensors")))
    tuned.head.load_state_dict(load_file(str(last / HEAD_FILE)))  # the trained head too
    on = tuned.confidence(questions)
    with tuned.model.disable_adapter():
        off = tuned.confidence(questions)
    assert not np.array_equal(on, off)


def test_confidence_head_few_steps_on_smollm2_keeps_answers(smollm2, real_store, tmp_path):
    config = ConfidenceHeadConfig(max_steps=2, train_layers=2, batch_size=4, eval_limit=2,
                                  n_resamples=20)
    report = tune(real_store, config, tmp_path / "out", backend=smollm2, progress=False)
    assert report.training.steps == 2
    p = report.heldout["P(yes), tuned"]["brier_score"].estimate
    assert 0 <= p <= 1
    # Two small steps with the KL regulariser barely move the model's own answers.
    assert report.extra["answer_kl_per_token"] < 0.05
    [last] = (tmp_path / "out").glob("**/checkpoints/last")
    assert _lora_b_norm(last) > 0  # the two steps moved the adapter
