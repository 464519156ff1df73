"""Post-training that breaks calibration: RL on a correctness reward, and DPO toward the majority.

Both start from a copy of the base model and train on the world's questions, in the same plain
``Q: <question>\\nA:`` prompts the base model was trained on:

- :func:`rl_posttrain`: REINFORCE with a group-mean baseline (GRPO-style, without clipping or a
  KL term): for each question, sample G answers from the current model, reward 1 when the
  answer's class (under the collapsing function) is the world's most probable value, and step
  along ``sum_g (r_g - mean(r)) * grad log pi(answer_g)``. The expected reward of an answer class
  is 1 for the mode and 0 otherwise, so the optimum puts all mass on the mode: the model grows
  sure of answers the world is unsure of.
- :func:`dpo_posttrain`: direct preference optimisation (Rafailov et al. 2023) on pairs chosen =
  a surface form of the most probable value, rejected = a form of another value, with the base
  model as the frozen reference: ``-log sigmoid(beta * [(log pi(c) - log ref(c)) -
  (log pi(r) - log ref(r))])``.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from recal.data.records import Question
from recal.semantic.base import Collapser, get_collapser
from recal.synthetic.model import encode_texts, pad_batch
from recal.synthetic.world import ATTRIBUTES, prompt_text, surface_forms
from recal.synthetic.world import Fact as _Fact

__all__ = ["RLConfig", "DPOConfig", "PostTrainResult", "rl_posttrain", "dpo_posttrain",
           "sample_answers", "answer_logprobs"]


@dataclass(frozen=True)
class RLConfig:
    """REINFORCE with a group baseline on a correctness reward."""

    steps: int = 40
    questions_per_step: int = 32
    group_size: int = 8
    """G: answers sampled per question; their mean reward is the baseline."""
    lr: float = 1e-3
    max_new_tokens: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "questions_per_step", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be at least 2 (the baseline is the group mean), "
                             f"got {self.group_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")


@dataclass(frozen=True)
class DPOConfig:
    """DPO toward the world's most probable answer, the base model as reference."""

    steps: int = 60
    batch_size: int = 32
    beta: float = 0.1
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and "
                             f"{self.batch_size}")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")


@dataclass(frozen=True)
class PostTrainResult:
    """The post-trained model and how training went (the reward or loss at start and end)."""

    model: Any
    first: float
    last: float
    seconds: float


@torch.no_grad()
def sample_answers(model: Any, prompt_ids: Sequence[Sequence[int]], stop_id: int,
                   max_new_tokens: int, generator: torch.Generator) -> list[list[int]]:
    """One answer per prompt, sampled at T = 1 until the line-break token ``stop_id`` (kept)."""
    ids, mask = _left_pad(prompt_ids)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out: list[list[int]] = [[] for _ in prompt_ids]
    done = torch.zeros(len(prompt_ids), dtype=torch.bool)
    for _ in range(max_new_tokens):  # answers are a few tokens: recomputing beats a cache here
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
        nxt = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=generator)[:, 0]
        for i, t in enumerate(nxt.tolist()):
            if not done[i]:
                out[i].append(t)
        done |= nxt == stop_id
        if done.all():
            break
        ids = torch.cat([ids, nxt[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        positions = torch.cat([positions, positions[:, -1:] + 1], 1)
    return out


def _left_pad(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def answer_logprobs(model: Any, prompt_ids: Sequence[Sequence[int]],
                    answer_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """log pi(answer | prompt), summed over the answer's tokens, one value per pair."""
    rows = [list(p) + list(a) for p, a in zip(prompt_ids, answer_ids, strict=True)]
    ids, mask = pad_batch(rows)
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    token_lp = logp.gather(-1, ids[:, 1:, None])[..., 0]
    keep = torch.zeros_like(token_lp)
    for i, (p, a) in enumerate(zip(prompt_ids, answer_ids, strict=True)):
        keep[i, len(p) - 1:len(p) - 1 + len(a)] = 1
    return (token_lp * keep).sum(-1)


def _mode_label(question: Question, collapser: Collapser) -> str:
    mode = question.metadata.get("mode")
    if not isinstance(mode, str):
        raise ValueError(f"question {question.id!r} has no 'mode' in its metadata: post-training "
                         "needs questions from recal.synthetic.world")
    return collapser.label(question, mode)


def rl_posttrain(base: Any, tokenizer: Any, questions: Sequence[Question],
                 config: RLConfig | None = None, *, collapser: Collapser | None = None,
                 ) -> PostTrainResult:
    """A copy of ``base`` trained by group-baseline REINFORCE to answer the world's mode."""
    config = config or RLConfig()
    collapser = collapser or get_collapser("normalized")
    model = copy.deepcopy(base)
    model.train()
    stop_id = tokenizer.convert_tokens_to_ids("\n")
    prompts = encode_texts(tokenizer, [prompt_text(q.question) for q in questions])
    targets = [_mode_label(q, collapser) for q in questions]
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(config.seed)
    rng = random.Random(config.seed)
    start, rewards = time.perf_counter(), []
    for _ in range(config.steps):
        idx = rng.sample(range(len(questions)), min(config.questions_per_step, len(questions)))
        group_prompts = [prompts[i] for i in idx for _ in range(config.group_size)]
        answers = sample_answers(model, group_prompts, stop_id, config.max_new_tokens, gen)
        texts = tokenizer.batch_decode(answers, skip_special_tokens=True)
        reward = torch.tensor([
            float(collapser.label(questions[i], t.strip()) == targets[i])
            for i, t in zip([i for i in idx for _ in range(config.group_size)], texts,
                            strict=True)])
        grouped = reward.view(len(idx), config.group_size)
        advantage = (grouped - grouped.mean(1, keepdim=True)).view(-1)
        rewards.append(float(reward.mean()))
        if not advantage.any():
            continue
        logp = answer_logprobs(model, group_prompts, answers)
        loss = -(advantage * logp).sum() / len(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    return PostTrainResult(model, rewards[0], sum(rewards[-5:]) / len(rewards[-5:]),
                           time.perf_counter() - start)


def _pairs(questions: Sequence[Question], rng: random.Random) -> list[tuple[str, str, str]]:
    """(prompt, chosen answer, rejected answer): a form of the mode against a form of another
    value (for a certain fact, a value the world never gives)."""
    out = []
    for q in questions:
        meta = q.metadata
        dist: dict[str, float] = dict(meta["true_distribution"])
        mode = meta["mode"]
        others = [v for v in dist if v != mode]
        if not others:
            others = [v for v in ATTRIBUTES[meta["attribute"]][1] if v != mode]
        fact = _Fact(meta["entity"], meta["attribute"], tuple(dist), tuple(dist.values()), mode)
        style = meta["style"] if meta["style"] != "cot" else "concise"
        chosen = rng.choice(surface_forms(fact, mode, style))
        rejected = rng.choice(surface_forms(fact, rng.choice(others), style))
        out.append((prompt_text(q.question), f" {chosen}\n", f" {rejected}\n"))
    return out


def dpo_posttrain(base: Any, tokenizer: Any, questions: Sequence[Question],
                  config: DPOConfig | None = None) -> PostTrainResult:
    """A copy of ``base`` trained with DPO to prefer the world's mode (``base`` is the
    reference)."""
    config = config or DPOConfig()
    model = copy.deepcopy(base)
    base.eval()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    rng = random.Random(config.seed)
    start, losses = time.perf_counter(), []
    for _ in range(config.steps):
        batch = _pairs(rng.sample(list(questions), min(config.batch_size, len(questions))), rng)
        prompts = encode_texts(tokenizer, [p for p, _, _ in batch])
        chosen = encode_texts(tokenizer, [c for _, c, _ in batch])
        rejected = encode_texts(tokenizer, [r for _, _, r in batch])
        with torch.no_grad():
            ref_c = answer_logprobs(base, prompts, chosen)
            ref_r = answer_logprobs(base, prompts, rejected)
        margin = ((answer_logprobs(model, prompts, chosen) - ref_c)
                  - (answer_logprobs(model, prompts, rejected) - ref_r))
        loss = -torch.nn.functional.logsigmoid(config.beta * margin).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return PostTrainResult(model, losses[0], sum(losses[-5:]) / len(losses[-5:]),
                           time.perf_counter() - start)
