"""Batch size and sampling on the real SmolLM2 in float32: what README's "The sampler" states.

The draws (sample j of question q) come from a counter-based stream, so the batch cannot change
them; the log-probabilities they are compared with can, by float rounding, because a padded
batch's forward pass sums in another order. README states that bound; this test holds it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from conftest import load_smollm2_or_skip

from recal.prompts import build_prompt
from recal.samples import SamplingConfig

README = Path(__file__).resolve().parents[1] / "README.md"
QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?",
             "Who wrote Hamlet?"]


def _stated_tolerance() -> float:
    """The bound README gives for log-probabilities across batch sizes ("within 1e-4")."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    match = re.search(r"log-probabilities (?:\S+ ){0,12}?within (\d(?:\.\d+)?e-\d+)", text)
    assert match, "README's sampler section no longer states the batch-size tolerance"
    return float(match.group(1))


def _sample(backend, batch_rows: int):
    config = SamplingConfig(n_samples=4, batch_rows=batch_rows).resolved(
        "concise", chat=backend.is_chat)
    prompts = [build_prompt(q, "concise", chat=backend.is_chat) for q in QUESTIONS]
    ids = [f"q{i}" for i in range(len(QUESTIONS))]
    return {r.question_id: r for r in backend.generate(ids, prompts, config)}


def test_batch_size_keeps_the_draws_and_the_log_probabilities_within_the_stated_bound():
    tolerance = _stated_tolerance()
    backend = load_smollm2_or_skip()
    assert backend.identity.dtype == "float32"
    together = _sample(backend, 500)  # all 3 questions (15 rows) in one padded batch
    apart = _sample(backend, 7)  # one question (5 rows) at a time
    worst = 0.0
    for qid, record in together.items():
        other = apart[qid]
        pairs = [*zip(record.samples, other.samples, strict=True), (record.greedy, other.greedy)]
        for a, b in pairs:
            assert a.token_ids == b.token_ids, (qid, a.text, b.text)
            assert a.text == b.text
            diff = np.abs(np.asarray(a.logprobs) - np.asarray(b.logprobs))
            worst = max(worst, float(diff.max()))
    assert worst <= tolerance, f"log-probabilities differ by {worst:.2e} across batch sizes"
    print(f"batch_size_logprob_max_abs_diff: {worst:.2e} (README bound {tolerance:g})")
