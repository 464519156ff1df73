"""The batched sampler on a tiny random model: stopping, batching, seeds, log-probabilities."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from recal.prompts import build_prompt
from recal.samples import SamplingConfig

QUESTIONS = ["abc?", "a", "dead beef cafe?", "bad", "face ace?", "c"]


def _run(backend, config: SamplingConfig, questions=QUESTIONS, style="concise"):
    resolved = config.resolved(style, chat=backend.is_chat)
    prompts = [build_prompt(q, style, chat=backend.is_chat) for q in questions]
    ids = [f"q{i}" for i in range(len(questions))]
    out = {r.question_id: r for r in backend.generate(ids, prompts, resolved)}
    assert sorted(out) == sorted(ids)  # every question exactly once
    return out, prompts, resolved


def _full_logits(backend, prompt, tokens):
    """Logits of every position from one plain forward pass, no cache, no padding."""
    ids = backend.encode(prompt) + list(tokens)
    with torch.no_grad():
        logits = backend.model(torch.tensor([ids])).logits[0].float()
    start = len(ids) - len(tokens)
    return logits[start - 1:len(ids) - 1]  # the logits that produced each generated token


def test_every_sequence_stops_at_its_own_condition(tiny_backend):
    out, _, cfg = _run(tiny_backend, SamplingConfig(n_samples=20, max_new_tokens=12))
    reasons = Counter()
    for record in out.values():
        assert len(record.samples) == 20 and record.greedy is not None
        for s in [*record.samples, record.greedy]:
            reasons[s.finish_reason] += 1
            assert len(s.token_ids) == len(s.logprobs) <= cfg.max_new_tokens
            assert "\n" not in s.text and s.text == s.text.strip()
            text_so_far = ""
            for k, tok in enumerate(s.token_ids):
                piece = tiny_backend.tokenizer.decode([tok])
                before_newline = (text_so_far + piece.split("\n")[0]).strip()
                is_stop = tok == 2 or ("\n" in piece and bool(before_newline))
                if k < len(s.token_ids) - 1:
                    assert not is_stop, f"sample ran past a stop at token {k}: {s}"
                text_so_far += piece
            if s.finish_reason == "stop":
                assert is_stop
            else:
                assert len(s.token_ids) == cfg.max_new_tokens and not is_stop
    assert reasons["stop"] > 0 and reasons["length"] > 0  # both paths exercised


def test_batch_size_and_order_do_not_change_samples(tiny_backend):
    big, _, _ = _run(tiny_backend, SamplingConfig(n_samples=12, max_new_tokens=10, batch_rows=500))
    small, _, _ = _run(tiny_backend, SamplingConfig(n_samples=12, max_new_tokens=10, batch_rows=5))
    # The same questions, asked in another order under the same ids.
    config = SamplingConfig(n_samples=12, max_new_tokens=10).resolved(
        "concise", chat=tiny_backend.is_chat)
    order = [3, 0, 5, 1, 4, 2]
    shuffled = {r.question_id: r for r in tiny_backend.generate(
        [f"q{i}" for i in order],
        [build_prompt(QUESTIONS[i], "concise", chat=tiny_backend.is_chat) for i in order],
        config)}
    assert sorted(shuffled) == sorted(big)
    for qid in big:
        for a, b in zip(big[qid].samples, small[qid].samples, strict=True):
            assert a.token_ids == b.token_ids
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
        assert [s.token_ids for s in big[qid].samples] == [
            s.token_ids for s in shuffled[qid].samples]


def test_seed_reproduces_and_changes_samples(tiny_backend):
    a, _, _ = _run(tiny_backend, SamplingConfig(n_samples=10, max_new_tokens=8, seed=1))
    b, _, _ = _run(tiny_backend, SamplingConfig(n_samples=10, max_new_tokens=8, seed=1))
    c, _, _ = _run(tiny_backend, SamplingConfig(n_samples=10, max_new_tokens=8, seed=2))
    texts = {k: [s.token_ids for s in v.samples] for k, v in a.items()}
    assert texts == {k: [s.token_ids for s in v.samples] for k, v in b.items()}
    assert texts != {k: [s.token_ids for s in v.samples] for k, v in c.items()}


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_a_separate_forward_pass(tiny_backend, temperature):
    # Prompts of different lengths share a batch, so left padding is exercised too.
    out, prompts, _ = _run(tiny_backend, SamplingConfig(n_samples=6, max_new_tokens=10,
                                                        temperature=temperature))
    for i, prompt in enumerate(prompts):
        record = out[f"q{i}"]
        for s in record.samples:
            logits = _full_logits(tiny_backend, prompt, s.token_ids)
            expected = torch.log_softmax(logits / temperature, -1)
            expected = expected.gather(1, torch.tensor(s.token_ids)[:, None])[:, 0]
            np.testing.assert_allclose(s.logprobs, expected.numpy(), atol=2e-4)
        g = record.greedy
        logits = _full_logits(tiny_backend, prompt, g.token_ids)
        assert g.token_ids == tuple(logits.argmax(-1).tolist())  # greedy is the argmax path
        expected = torch.log_softmax(logits, -1).gather(1, torch.tensor(g.token_ids)[:, None])
        np.testing.assert_allclose(g.logprobs, expected[:, 0].numpy(), atol=2e-4)


def test_greedy_matches_transformers_generate(tiny_backend):
    out, prompts, cfg = _run(tiny_backend, SamplingConfig(n_samples=1, max_new_tokens=10))
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([tiny_backend.encode(prompt)])
        ref = tiny_backend.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                          max_new_tokens=len(out[f"q{i}"].greedy.token_ids),
                                          eos_token_id=2, pad_token_id=0)
        assert tuple(ref[0, ids.shape[1]:].tolist()) == out[f"q{i}"].greedy.token_ids


def test_first_token_frequencies_follow_the_softmax(tiny_backend):
    """Exact sampling: 4,000 first tokens against softmax(logits / T) (chi-square test)."""
    m, temperature = 4000, 1.3
    out, prompts, _ = _run(tiny_backend, SamplingConfig(n_samples=m, max_new_tokens=1,
                                                        temperature=temperature, greedy=False,
                                                        batch_rows=4000), questions=["abc?"])
    counts = Counter(s.token_ids[0] for s in out["q0"].samples)
    with torch.no_grad():
        logits = tiny_backend.model(torch.tensor([tiny_backend.encode(prompts[0])])).logits[0, -1]
    p = torch.softmax(logits / temperature, -1).numpy().astype(float)
    expected = m * p
    keep = expected >= 5
    observed = np.array([counts.get(i, 0) for i in range(len(p))], dtype=float)
    chi2 = (((observed - expected) ** 2 / expected)[keep]).sum()
    dof = keep.sum() - 1
    # 99.9% quantile of chi-square via the Wilson-Hilferty approximation
    z = 3.09
    limit = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < limit, (chi2, limit)
    assert observed[~keep].sum() <= max(10.0, 3 * expected[~keep].sum())


def test_tau_grid_records_scaled_log_sum_exp(tiny_backend):
    taus = (0.5, 1.0, 2.0)
    out, prompts, _ = _run(tiny_backend, SamplingConfig(n_samples=3, max_new_tokens=6,
                                                        tau_grid=taus), questions=QUESTIONS[:2])
    for i, prompt in enumerate(prompts):
        s = out[f"q{i}"].samples[0]
        logits = _full_logits(tiny_backend, prompt, s.token_ids)
        chosen = logits.gather(1, torch.tensor(s.token_ids)[:, None])[:, 0]
        np.testing.assert_allclose(s.logits, chosen.numpy(), atol=1e-4)
        for j, tau in enumerate(taus):
            lse = torch.logsumexp(logits / tau, -1).numpy()
            np.testing.assert_allclose([step[j] for step in s.lse], lse, atol=1e-4)
        # log p_tau(y) = z / tau - lse(z / tau): at tau = 1 it is the recorded log-probability
        np.testing.assert_allclose(np.array(s.logits) - np.array([x[1] for x in s.lse]),
                                   s.logprobs, atol=2e-4)


def test_chat_template_prompts_and_newline_free_cot(tiny_chat_backend):
    out, prompts, cfg = _run(tiny_chat_backend, SamplingConfig(n_samples=4, max_new_tokens=8),
                             style="cot")
    assert cfg.stop_at_newline is False and prompts[0].is_chat
    tok = tiny_chat_backend.tokenizer
    rendered = tok.apply_chat_template([{"role": "user", "content": prompts[0].messages[0][1]}],
                                       add_generation_prompt=True, tokenize=False)
    assert rendered.startswith("<s>user: abc?") and rendered.endswith("<s>assistant: ")
    assert tiny_chat_backend.encode(prompts[0]) == tok(rendered, add_special_tokens=False)[
        "input_ids"]
    for record in out.values():
        for s in record.samples:
            assert s.finish_reason == "length" or s.token_ids[-1] == 2


def test_unresolved_config_and_mismatched_inputs_are_refused(tiny_backend):
    prompt = build_prompt("a", chat=False)
    with pytest.raises(ValueError, match="resolve the sampling config"):
        list(tiny_backend.generate(["q"], [prompt], SamplingConfig()))
    cfg = SamplingConfig().resolved("concise", chat=False)
    with pytest.raises(ValueError, match="1 question ids for 2 prompts"):
        list(tiny_backend.generate(["q"], [prompt, prompt], cfg))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_samples": 0}, "n_samples"), ({"temperature": 0.0}, "temperature must be > 0"),
     ({"temperature": float("nan")}, "finite"), ({"max_new_tokens": 0}, "max_new_tokens"),
     ({"tau_grid": (1.0, -1.0)}, "tau_grid"), ({"batch_rows": 0}, "batch_rows")],
)
def test_sampling_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kwargs)
