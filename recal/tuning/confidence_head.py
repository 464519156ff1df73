"""Confidence head: calibration tuning in the style of Kapoor et al. 2024 ("Large Language Models
Must Be Taught to Know What They Don't Know", arXiv 2406.08391).

The model is shown a question and a proposed answer and asked whether the answer is correct; its
confidence is ``P(yes) = sigmoid(z_yes - z_no)`` read from the next-token logits of the two reply
tokens in one forward pass. A LoRA is trained on graded (question, answer, correct) triples with
the log loss of that probability, plus a regulariser ``kl_weight * KL(frozen || tuned)`` of the
next-token distributions along the model's own answers to the plain questions, so that with the
adapter on, the model still answers as it did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recal.confidence import Classified
from recal.data.records import Question
from recal.prompts import Prompt, build_prompt
from recal.semantic.base import Collapser
from recal.tuning.base import TUNING_METHODS, Evaluation, TunedModel, TuningMethod
from recal.tuning.config import ConfidenceHeadConfig
from recal.tuning.sequences import (
    AnswerRow,
    PromptRow,
    collate_answers,
    collate_prompts,
    encode_prompt,
    first_token,
    last_logits,
    token_logprobs,
)

__all__ = ["ConfidenceHead", "ask_prompt", "ASK"]

ASK = ("Question: {q}\nProposed answer: {a}\n"
       "Is the proposed answer correct? Reply with yes or no.")


def ask_prompt(question: str, answer: str, *, chat: bool) -> Prompt:
    """The yes/no prompt: one user turn for chat models, text ending in 'Answer:' for base."""
    body = ASK.format(q=question, a=answer)
    return Prompt(messages=(("user", body),)) if chat else Prompt(text=body + "\nAnswer:")


_KL_QUESTIONS = 50  # held-out questions whose first answer measures how far answers moved


@dataclass(frozen=True)
class _Row:
    ask: PromptRow
    own: AnswerRow | None


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)


@TUNING_METHODS.register("confidence_head")
class ConfidenceHead(TuningMethod):
    name = "confidence_head"
    config_cls = ConfidenceHeadConfig

    def __init__(self, config: ConfidenceHeadConfig) -> None:
        super().__init__(config)
        self.cfg = config

    def bind(self, backend, style, shots) -> None:
        super().bind(backend, style, shots)
        self.yes_id = first_token(backend, self.cfg.yes)
        self.no_id = first_token(backend, self.cfg.no)
        if self.yes_id == self.no_id:
            raise ValueError(f"the replies {self.cfg.yes!r} and {self.cfg.no!r} begin with the "
                             "same token; choose replies the model tells apart")

    def prepare(self, train_items, all_items, collapser, backend, style, shots):
        self.bind(backend, style, shots)
        self.collapser = collapser

    def _ask_ids(self, question: str, answer: str) -> tuple[int, ...]:
        return encode_prompt(self.backend, ask_prompt(question, answer,
                                                      chat=self.backend.is_chat),
                             self.cfg.max_length)

    def rows(self, items):
        out = []
        for item in items:
            prompt = encode_prompt(self.backend, build_prompt(
                item.question, self.style, chat=self.backend.is_chat, shots=self.shots),
                self.cfg.max_length)
            for label, _ in item.counts()[: self.cfg.answers_per_question]:
                own = next((s for s, lab in zip(item.record.samples, item.labels, strict=True)
                            if lab == label and s.token_ids), None)
                right = float(self.collapser.is_correct(item.question, label))
                out.append(_Row(PromptRow(self._ask_ids(item.question.question,
                                                        item.text_of(label)), right),
                                AnswerRow(prompt, tuple(own.token_ids)) if own else None))
        asks = self.cached([r.ask for r in out])
        own_rows = self.cached([r.own for r in out if r.own is not None]
                               if self.cfg.kl_weight > 0 else [])
        owns = iter(own_rows)
        return [_Row(a, next(owns) if r.own is not None and own_rows else None)
                for a, r in zip(asks, out, strict=True)]

    def collate(self, rows):
        batch = collate_prompts([r.ask for r in rows], self.pad_id, self.top)
        own = [r.own for r in rows if r.own is not None]
        if own:
            answers = collate_answers(own, self.pad_id, self.cfg.max_length, self.top)
            batch.update({f"own_{k}": v for k, v in answers.items()})
        return batch

    def yes_logit(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = last_logits(model, batch)
        return logits[:, self.yes_id] - logits[:, self.no_id]

    def loss(self, model, head, batch):
        z = self.yes_logit(model, batch)
        target = batch["target"].to(z.device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, target)
        if self.cfg.kl_weight > 0 and "own_input_ids" in batch:
            own = {k[4:]: v for k, v in batch.items() if k.startswith("own_")}
            loss = loss + self.cfg.kl_weight * answer_kl(model, own)
        return loss, torch.tensor(float(len(target)))

    # -- scoring ---------------------------------------------------------------------------------

    @torch.no_grad()
    def _p_yes(self, model: Any, questions: Sequence[Question], answers: Sequence[str],
               batch_size: int = 16) -> np.ndarray:
        rows = [PromptRow(self._ask_ids(q.question, a)) for q, a in
                zip(questions, answers, strict=True)]
        return self._p_yes_rows(model, rows, None, batch_size)

    @torch.no_grad()
    def _p_yes_rows(self, model: Any, rows: Sequence[PromptRow], top: int | None,
                    batch_size: int = 16) -> np.ndarray:
        out = []
        for i in range(0, len(rows), batch_size):
            out.append(torch.sigmoid(self.yes_logit(model, collate_prompts(
                rows[i:i + batch_size], self.pad_id, top))).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def confidence(self, tuned, questions, answers):
        if answers is None or len(answers) != len(questions):
            raise ValueError("the confidence head judges a proposed answer: pass one answer per "
                             "question")
        self.bind(tuned.backend, tuned.style, tuned.shots)
        return self._p_yes(tuned.model, questions, answers)

    def evaluate(self, tuned: TunedModel, heldout: Sequence[Classified], collapser: Collapser,
                 out: Path, progress: bool = True) -> Evaluation:
        labels = [it.counts()[0] for it in heldout]
        modal = np.array([c / len(it.labels) for it, (_, c) in zip(heldout, labels, strict=True)])
        correct = np.array([collapser.is_correct(it.question, lab)
                            for it, (lab, _) in zip(heldout, labels, strict=True)], dtype=float)
        texts = [it.text_of(lab) for it, (lab, _) in zip(heldout, labels, strict=True)]
        # Right after training the frozen layers' output can be reused (cached once for both
        # readouts); a loaded adapter runs the whole model.
        asks = self.cached([PromptRow(self._ask_ids(it.question.question, text))
                            for it, text in zip(heldout, texts, strict=True)])
        after = self._p_yes_rows(tuned.model, asks, self.top)
        with _unwrap(tuned.model).disable_adapter():
            before = self._p_yes_rows(tuned.model, asks, self.top)
        # How far the adapter moved the answers: KL per answer token on the held-out answers.
        rows = [AnswerRow(encode_prompt(self.backend, build_prompt(
            it.question, self.style, chat=self.backend.is_chat, shots=self.shots),
            self.cfg.max_length), tuple(s.token_ids))
            for it in heldout[:_KL_QUESTIONS] for s in it.record.samples[:1] if s.token_ids]
        rows = self.cached(rows)
        kls = []
        with torch.no_grad():
            for i in range(0, len(rows), 16):
                kls.append(float(answer_kl(tuned.model, collate_answers(
                    rows[i:i + 16], self.pad_id, self.cfg.max_length, self.top))))
        return Evaluation({"modal share (sampled)": (modal, correct),
                           "P(yes), frozen model": (before, correct),
                           "P(yes), tuned": (after, correct)},
                          "P(yes), tuned",
                          {"answer_kl_per_token": float(np.mean(kls)) if kls else None})


def answer_kl(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over answer tokens of KL(frozen || tuned) between next-token distributions."""
    logp, _ = token_logprobs(model, batch)
    with torch.no_grad(), _unwrap(model).disable_adapter():
        frozen, _ = token_logprobs(model, batch)
    return (frozen.exp() * (frozen - logp)).sum(-1).mean()
