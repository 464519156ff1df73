"""Distribution matching: fine-tune the model so its distribution over meaning classes matches a
target on the training questions.

For each question the target gives mass ``w_c`` to a few classes c, each represented by an answer
text the model (or the reference model) wrote; the loss is the target-weighted negative
log-likelihood ``-sum_c w_c log p(text_c + end | prompt)``, the cross-entropy from the target to
the model over the represented classes. The representatives are whole, well-formed answers that
end with the model's own end-of-answer token, so the tuned model keeps answering in that form.

Targets:

- ``reference``: another model's class shares on the same questions (a base model's, which the
  reference paper finds calibrated). Classes are compared as text under the collapsing function,
  so the two models need not share a tokenizer.
- ``sharpen``: the model's own shares raised to a power, ``p_c^beta / sum p^beta``, with beta
  fitted on the graded training questions so that the sharpened modal share is calibrated (log
  loss); the class-level analogue of the sampling temperature.
- ``correct_mix``: ``(1 - mix) p + mix u``, u uniform over the question's correct classes among
  the samples (questions with none keep p).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from recal.confidence import Classified, classify_run
from recal.data.records import Question
from recal.prompts import build_prompt
from recal.runstore import RunStore
from recal.samples import QuestionSamples, SamplingConfig
from recal.semantic.base import Collapser
from recal.tuning.base import TUNING_METHODS, Evaluation, TunedModel, TuningMethod
from recal.tuning.config import DistributionConfig
from recal.tuning.sequences import (
    AnswerRow,
    answer_ids,
    answer_logprobs,
    collate_answers,
    encode_prompt,
    terminator_id,
)

__all__ = ["DistributionMatching", "fit_sharpening", "sharpen"]


def sharpen(shares: np.ndarray, beta: float) -> np.ndarray:
    """``p^beta / sum(p^beta)`` (in log space, so large beta does not underflow)."""
    logp = beta * np.log(np.clip(shares, 1e-12, None))
    logp -= logp.max()
    out = np.exp(logp)
    return out / out.sum()


def fit_sharpening(shares: Sequence[np.ndarray], correct: Sequence[bool],
                   bounds: tuple[float, float] = (0.2, 8.0)) -> float:
    """beta minimising the log loss of the sharpened modal share against modal correctness."""
    from scipy.optimize import minimize_scalar

    if not shares:
        raise ValueError("fitting the sharpening power needs at least one graded question")
    y = np.asarray(correct, dtype=float)
    logs = [np.log(np.clip(s, 1e-12, None)) for s in shares]

    def loss(log_beta: float) -> float:
        beta = math.exp(log_beta)
        conf = np.array([np.exp(beta * lg.max() - np.logaddexp.reduce(beta * lg)) for lg in logs])
        conf = np.clip(conf, 1e-6, 1 - 1e-6)
        return float(-np.mean(y * np.log(conf) + (1 - y) * np.log(1 - conf)))

    res = minimize_scalar(loss, bounds=(math.log(bounds[0]), math.log(bounds[1])),
                          method="bounded")
    if not res.success:
        raise RuntimeError(f"fitting the sharpening power failed: {res.message}")
    return float(math.exp(res.x))


def _stopped_sample_ids(item: Classified, label: str) -> tuple[int, ...] | None:
    for s, lab in zip(item.record.samples, item.labels, strict=True):
        if lab == label and s.finish_reason == "stop" and s.token_ids:
            return tuple(s.token_ids)
    return None


@TUNING_METHODS.register("distribution")
class DistributionMatching(TuningMethod):
    name = "distribution"
    config_cls = DistributionConfig

    def __init__(self, config: DistributionConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.beta: float | None = None
        self.targets: dict[str, list[tuple[tuple[int, ...], float, str]]] = {}
        self.reference: dict[str, Classified] = {}

    # -- targets ---------------------------------------------------------------------------------

    def prepare(self, train_items, all_items, collapser, backend, style, shots):
        self.bind(backend, style, shots)
        self.terminator = terminator_id(all_items, backend)
        if self.cfg.target == "sharpen":
            graded = [(np.array([c for _, c in it.counts()], float) / len(it.labels),
                       collapser.is_correct(it.question, it.counts()[0][0])) for it in train_items]
            self.beta = fit_sharpening([g[0] for g in graded], [g[1] for g in graded])
        if self.cfg.target == "reference":
            ref = RunStore.open(cast(str, self.cfg.reference))
            wanted = {it.question.id for it in all_items}
            have = set(ref.samples_by_id()) & wanted
            if not have:
                raise ValueError(f"the reference run {ref.path} holds none of the training "
                                 "questions (matched by question id)")
            self.reference = {it.question.id: it for it in classify_run(ref, collapser, have)}
        self.targets = {}
        for item in all_items:
            target = self._target(item, collapser)
            if target:
                self.targets[item.question.id] = target

    def target_distribution(self, item: Classified, collapser: Collapser) -> dict[str, float]:
        """The target class shares of one question (before keeping ``max_classes``)."""
        source = self.reference.get(item.question.id) if self.cfg.target == "reference" else item
        if source is None:
            return {}
        counts = source.counts()
        labels = [lab for lab, _ in counts]
        p = np.array([c for _, c in counts], float) / len(source.labels)
        if self.cfg.target == "sharpen":
            p = sharpen(p, cast(float, self.beta))
        elif self.cfg.target == "correct_mix":
            right = np.array([collapser.is_correct(item.question, lab) for lab in labels])
            if right.any():
                p = (1 - self.cfg.mix) * p + self.cfg.mix * right / right.sum()
        return dict(zip(labels, p.tolist(), strict=True))

    def _target(self, item: Classified, collapser: Collapser
                ) -> list[tuple[tuple[int, ...], float, str]]:
        dist = self.target_distribution(item, collapser)
        source = self.reference.get(item.question.id) if self.cfg.target == "reference" else item
        out = []
        for label, mass in sorted(dist.items(), key=lambda kv: -kv[1]):
            if len(out) == self.cfg.max_classes:
                break
            ids = None if source is not item else _stopped_sample_ids(item, label)
            if ids is None:
                text = cast(Classified, source).text_of(label).strip()
                if not text:
                    continue  # an empty answer is not a well-formed target
                ids = answer_ids(self.backend, text, self.terminator)
            out.append((ids, mass, label))
        total = sum(m for _, m, _ in out)
        return [(ids, m / total, lab) for ids, m, lab in out] if total > 0 else []

    # -- training --------------------------------------------------------------------------------

    def rows(self, items):
        out = []
        for item in items:
            if item.question.id not in self.targets:
                continue
            prompt = encode_prompt(self.backend, build_prompt(
                item.question, self.style, chat=self.backend.is_chat, shots=self.shots),
                self.cfg.max_length)
            out.extend(AnswerRow(prompt, ids, mass) for ids, mass, _ in
                       self.targets[item.question.id])
        return self.cached(out)

    def collate(self, rows):
        return collate_answers(rows, self.pad_id, self.cfg.max_length, self.top)

    def loss(self, model, head, batch):
        logp = answer_logprobs(model, batch)
        weight = batch["weight"].to(logp.device)
        total = weight.sum()
        return -(weight * logp).sum() / total.clamp(min=1e-9), total

    # -- judging ---------------------------------------------------------------------------------

    def confidence(self, tuned, questions, answers):
        raise NotImplementedError("distribution matching changes the model's answers: its "
                                  "confidence is the modal share of the tuned model's samples "
                                  "(sample it with TunedModel.sampling_backend())")

    def evaluate(self, tuned: TunedModel, heldout: Sequence[Classified], collapser: Collapser,
                 out: Path, progress: bool = True) -> Evaluation:
        from recal.sampling import sample_run

        m = self.cfg.eval_samples
        items = list(heldout)
        questions: list[Question] = [it.question for it in items]
        store = sample_run(tuned.sampling_backend(), questions, out=out / "heldout-samples",
                           config=SamplingConfig(n_samples=m, greedy=False), style=tuned.style,
                           shots=tuned.shots, dataset="heldout", progress=progress)
        after = classify_run(store, collapser, [q.id for q in questions])
        # The same number of answers per question before and after (the first m stored ones).
        before = _first_samples(items, m, collapser)
        rows = {"before (stored samples)": _modal_arrays(before, collapser),
                "after (tuned model samples)": _modal_arrays(after, collapser)}
        if self.cfg.target != "reference":
            rows["target on the stored samples"] = self._target_arrays(before, collapser)
        return Evaluation(rows, "after (tuned model samples)", {
            "eval_samples": m, "beta": self.beta,
            "well_formed_before": _well_formed(before), "well_formed_after": _well_formed(after),
            "mean_answer_tokens_before": _mean_tokens(before),
            "mean_answer_tokens_after": _mean_tokens(after),
            "heldout_samples": str(store.path)})

    def _target_arrays(self, items: Sequence[Classified], collapser: Collapser
                       ) -> tuple[np.ndarray, np.ndarray]:
        conf, corr = [], []
        for item in items:
            dist = self.target_distribution(item, collapser)
            label = max(dist, key=lambda k: dist[k])
            conf.append(dist[label])
            corr.append(collapser.is_correct(item.question, label))
        return np.array(conf), np.array(corr, dtype=float)

    def head_state(self) -> dict[str, Any]:
        return {"beta": self.beta}


def _first_samples(items: Sequence[Classified], m: int, collapser: Collapser
                   ) -> list[Classified]:
    from recal.confidence import classify

    records = [replace(it.record, samples=it.record.samples[:m], greedy=None) for it in items]
    return classify([it.question for it in items], cast(list[QuestionSamples], records),
                    collapser)


def _modal_arrays(items: Sequence[Classified], collapser: Collapser
                  ) -> tuple[np.ndarray, np.ndarray]:
    conf, corr = [], []
    for item in items:
        label, count = item.counts()[0]
        conf.append(count / len(item.labels))
        corr.append(collapser.is_correct(item.question, label))
    return np.array(conf), np.array(corr, dtype=float)


def _well_formed(items: Sequence[Classified]) -> float:
    """Share of answers that ended by themselves (not cut at the token cap) and are not empty."""
    flags = [s.finish_reason == "stop" and bool(s.text.strip())
             for it in items for s in it.record.samples]
    return float(np.mean(flags)) if flags else float("nan")


def _mean_tokens(items: Sequence[Classified]) -> float:
    lens = [len(s.token_ids) for it in items for s in it.record.samples]
    return float(np.mean(lens)) if lens else float("nan")


