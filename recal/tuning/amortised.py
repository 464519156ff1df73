"""Amortised confidence: predict the model's own modal share from the question alone.

The reference paper (Nakkiran et al., arXiv 2511.04869) asks whether a model can predict its own
class distribution before answering, with a rank-8 LoRA probe. Here that probe is a confidence
estimator: a LoRA and a linear head ``sigmoid(w . norm(h) + b)`` on the last hidden state ``h``
at the prompt's last token (the prompt the model answers from), trained with the log loss against
the stored runs' modal shares (soft targets) or against whether the modal answer was right. One
forward pass replaces M sampled answers; the answer itself still comes from sampling (or the
greedy decode).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recal.confidence import Classified
from recal.data.records import Question
from recal.prompts import build_prompt
from recal.semantic.base import Collapser
from recal.tuning.base import TUNING_METHODS, Evaluation, TunedModel, TuningMethod
from recal.tuning.config import AmortisedConfig
from recal.tuning.sequences import PromptRow, collate_prompts, encode_prompt, last_hidden

__all__ = ["AmortisedConfidence", "hidden_size"]


def hidden_size(model: Any) -> int:
    """Width of the model's hidden state (read from its input embeddings)."""
    return int(model.get_input_embeddings().weight.shape[1])


@TUNING_METHODS.register("amortised")
class AmortisedConfidence(TuningMethod):
    name = "amortised"
    config_cls = AmortisedConfig

    def __init__(self, config: AmortisedConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.init_bias = 0.0

    def _target(self, item: Classified, collapser: Collapser) -> float:
        label, count = item.counts()[0]
        if self.cfg.target == "correct":
            return float(collapser.is_correct(item.question, label))
        return count / len(item.labels)

    def prepare(self, train_items, all_items, collapser, backend, style, shots):
        self.bind(backend, style, shots)
        self.collapser = collapser
        mean = float(np.mean([self._target(it, collapser) for it in train_items]))
        mean = min(max(mean, 1e-3), 1 - 1e-3)
        self.init_bias = math.log(mean / (1 - mean))  # the head starts at the training mean

    def make_head(self, model: Any) -> torch.nn.Module:
        # Normalised features: the last hidden state has a few very large coordinates, which
        # make a plain linear head on it jump on its first steps.
        linear = torch.nn.Linear(hidden_size(model), 1)
        with torch.no_grad():
            linear.weight.zero_()
            linear.bias.fill_(self.init_bias)
        return torch.nn.Sequential(torch.nn.LayerNorm(hidden_size(model),
                                                      elementwise_affine=False), linear)

    def head_state(self) -> dict[str, Any]:
        return {"init_bias": self.init_bias}

    def load_head_state(self, state: dict[str, Any]) -> None:
        self.init_bias = float(state.get("init_bias", 0.0))

    def _prompt_ids(self, question: Question) -> tuple[int, ...]:
        return encode_prompt(self.backend, build_prompt(
            question, self.style, chat=self.backend.is_chat, shots=self.shots),
            self.cfg.max_length)

    def rows(self, items):
        return self.cached([PromptRow(self._prompt_ids(it.question),
                                      self._target(it, self.collapser)) for it in items])

    def collate(self, rows):
        return collate_prompts(rows, self.pad_id, self.top)

    def logit(self, model: Any, head: torch.nn.Module, batch: dict[str, torch.Tensor]
              ) -> torch.Tensor:
        h = last_hidden(model, batch)
        return head(h.to(next(head.parameters()).dtype))[:, 0]

    def loss(self, model, head, batch):
        if head is None:
            raise ValueError("the amortised method trains a head; none was given")
        z = self.logit(model, head, batch)
        target = batch["target"].to(z.device)
        return (torch.nn.functional.binary_cross_entropy_with_logits(z, target),
                torch.tensor(float(len(target))))

    @torch.no_grad()
    def confidence(self, tuned, questions, answers=None, batch_size: int = 16):
        if tuned.head is None:
            raise ValueError("this amortised adapter has no head weights")
        self.bind(tuned.backend, tuned.style, tuned.shots)
        rows = [PromptRow(self._prompt_ids(q)) for q in questions]
        out = [torch.sigmoid(self.logit(tuned.model, tuned.head, collate_prompts(
            rows[i:i + batch_size], self.pad_id))).cpu().numpy()
            for i in range(0, len(rows), batch_size)]
        return np.concatenate(out) if out else np.zeros(0)

    def evaluate(self, tuned: TunedModel, heldout: Sequence[Classified], collapser: Collapser,
                 out: Path, progress: bool = True) -> Evaluation:
        labels = [it.counts()[0] for it in heldout]
        modal = np.array([c / len(it.labels) for it, (_, c) in zip(heldout, labels, strict=True)])
        correct = np.array([collapser.is_correct(it.question, lab)
                            for it, (lab, _) in zip(heldout, labels, strict=True)], dtype=float)
        rows = self.cached([PromptRow(self._prompt_ids(it.question)) for it in heldout])
        with torch.no_grad():
            predicted = np.concatenate([torch.sigmoid(self.logit(
                tuned.model, tuned.head, collate_prompts(rows[i:i + 16], self.pad_id, self.top))
            ).cpu().numpy() for i in range(0, len(rows), 16)])
        corr = (float(np.corrcoef(predicted, modal)[0, 1])
                if predicted.std() > 0 and modal.std() > 0 else float("nan"))
        return Evaluation({"modal share (sampled)": (modal, correct),
                           "amortised (one pass)": (predicted, correct)},
                          "amortised (one pass)",
                          {"mae_vs_modal_share": float(np.abs(predicted - modal).mean()),
                           "pearson_vs_modal_share": corr})
