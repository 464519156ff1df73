"""The work behind one proxied request: the upstream answer and its calibrated confidence.

The confidence is the exported scorer's, computed as at fitting time: the last user message is
the question, the scorer's prompt style turns it into a prompt, M answers are sampled from the
upstream model with the scorer's sampling settings, collapsed with its collapsing function B and
scored, and the recalibrator maps the score to a probability of being right.

The upstream's own answer (a choice) is placed in a class under the same B. When it is the modal
class, its confidence is the scorer's calibrated confidence. When it is another class, its
confidence is null, with the reason in ``note``: the map was fitted and judged on the modal
class's confidence (is the *modal* answer right?), and nothing has checked that it maps another
class's share to that class's chance of being right (with ``modal_share`` the share itself is
still given as ``raw_confidence``).

With an abstention threshold (exported with the scorer, :mod:`recal.abstention`) the proxy can
flag or withhold answers below it (``ServeConfig.abstain``); an answer with a null confidence is
below every threshold.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from recal.abstention import AbstentionRule
from recal.data.records import Question
from recal.models.base import Backend
from recal.prompts import build_prompt
from recal.samples import QuestionSamples, SamplingConfig
from recal.scorer import CalibratedScorer

__all__ = ["Confidence", "ConfidenceService", "FORWARDED_FIELDS", "ModelMismatchError",
           "NON_MODAL_NOTE", "message_text"]

FORWARDED_FIELDS = frozenset({
    "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
    "n", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "user",
})
"""Request fields passed to the upstream model; every other field is dropped (and ``model`` is
always the upstream's own), so a request cannot name a file, a grammar or an adapter to load."""


NON_MODAL_NOTE = ("the answer is not the modal class of the samples: the scorer's map was fitted "
                  "and checked on the modal class's confidence only")


class ModelMismatchError(ValueError):
    """The scorer was fitted on another model than the upstream serves."""


@dataclass(frozen=True)
class Confidence:
    """The calibrated confidence of one answer, as the response's ``recal`` field carries it."""

    answer: str
    """The answer's class under the scorer's collapsing function."""
    confidence: float | None
    """Calibrated probability that the answer is right (null when it cannot be given)."""
    raw_confidence: float | None
    """The scorer's confidence before recalibration."""
    agrees_with_modal: bool
    """Whether the answer is in the modal class of the M samples."""
    note: str | None = None
    """Why ``confidence`` is null, when it is."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ConfidenceService:
    """An exported scorer with the upstream backend it samples."""

    scorer: CalibratedScorer
    backend: Backend

    def __post_init__(self) -> None:
        fitted = self.scorer.model.get("config_hash")
        here = self.backend.identity.config_hash
        if fitted != here:
            raise ModelMismatchError(
                f"the scorer was fitted on {self.scorer.model.get('name')!r} "
                f"({self.scorer.model.get('backend')}, config hash {fitted}) but the upstream is "
                f"{self.backend.identity.name!r} ({self.backend.identity.backend}, config hash "
                f"{here}); fit and export a scorer on a run of this upstream (see README, 'A "
                "model behind a server'), or pass --allow-model-mismatch")
        if getattr(self.scorer, "adapter", None) is not None:
            raise ValueError("this scorer uses a LoRA adapter (recal tune), which recal serve "
                             "does not load: export a post-hoc scorer (recal export) to serve")
        self.scorer.backend = self.backend  # scorers that ask the model (p_true) ask upstream
        sampling = dict(self.scorer.sampling)
        sampling["tau_grid"] = tuple(sampling.get("tau_grid") or ())
        self.sampling = SamplingConfig(**sampling).resolved(self.scorer.style,
                                                            chat=self.backend.is_chat)

    @property
    def abstention(self) -> AbstentionRule | None:
        """The scorer's abstention rule (None when it was exported without one)."""
        doc = getattr(self.scorer, "abstention", None)
        return AbstentionRule.from_dict(doc) if doc else None

    @property
    def served_model(self) -> str:
        return getattr(self.backend, "served_model", self.backend.identity.name)

    def describe(self) -> dict[str, Any]:
        """What /health reports: the scorer and model, no secrets."""
        return {"model": self.served_model, "backend": self.backend.identity.backend,
                "method": self.scorer.recalibrator.name, "scorer": self.scorer.scorer,
                "collapse": self.scorer.collapse, "style": self.scorer.style,
                "samples": self.sampling.n_samples, "temperature": self.sampling.temperature,
                "heldout_smooth_ece": (self.scorer.metrics.get("heldout", {})
                                       .get("smooth_ece", {}).get("estimate")),
                "abstention": ({"threshold": rule.threshold, "target_risk": rule.target_risk,
                                "delta": rule.delta,
                                "heldout_risk": (rule.heldout or {}).get("risk")}
                               if (rule := self.abstention) is not None else None)}

    # -- the upstream answer ---------------------------------------------------------------------

    def answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The upstream's chat completion for ``body`` (already checked and filtered)."""
        forward = {k: v for k, v in body.items() if k in FORWARDED_FIELDS}
        forward["model"] = self.served_model
        request = getattr(self.backend, "request", None)
        if request is not None:  # an HTTP upstream answers the request as it stands
            return request("POST", "chat/completions", forward)
        return self._answer_in_process(forward)

    def _answer_in_process(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A completion from an in-process backend: sampled at the request's temperature (T =
        0 or absent: greedy), one line per choice as the scorer's style asks."""
        from recal.prompts import Prompt

        n = int(body.get("n") or 1)
        temperature = float(body.get("temperature", 0.0) or 0.0)
        messages = tuple((m["role"], message_text(m["content"])) for m in body["messages"])
        prompt = Prompt(messages=messages)
        greedy = temperature == 0.0
        config = SamplingConfig(n_samples=n, temperature=temperature if not greedy else 1.0,
                                greedy=greedy, seed=int(body.get("seed") or 0),
                                max_new_tokens=int(body.get("max_tokens") or 256),
                                stop_at_newline=False)
        [record] = list(self.backend.generate(["request"], [prompt], config))
        picked = [record.greedy] * n if greedy and record.greedy else list(record.samples)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": self.served_model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": s.text},
                         "finish_reason": s.finish_reason} for i, s in enumerate(picked)],
            "usage": {"prompt_tokens": 0, "completion_tokens": sum(len(s.token_ids)
                                                                   for s in picked),
                      "total_tokens": sum(len(s.token_ids) for s in picked)},
        }

    # -- the confidence --------------------------------------------------------------------------

    def sample(self, question: str) -> QuestionSamples:
        """The scorer's M samples of the upstream model for ``question`` (its prompt style)."""
        q = Question("request", question, ("?",))
        prompt = build_prompt(q, self.scorer.style, chat=self.backend.is_chat,
                              shots=self.scorer.shots)
        [record] = list(self.backend.generate([q.id], [prompt], self.sampling))
        return record

    def confidences(self, question: str, record: QuestionSamples, answers: Sequence[str]
                    ) -> tuple[list[Confidence], dict[str, Any]]:
        """The confidence of each answer to ``question`` given the samples ``record`` (from
        :meth:`sample`), and what the samples showed."""
        from recal.semantic import get_collapser

        q = Question("request", question, ("?",))
        scored = self.scorer.score_samples(q, record.samples, record.greedy)
        collapser = get_collapser(self.scorer.collapse, **self.scorer.collapse_options)
        texts = [s.text for s in record.samples]
        labels = collapser.collapse(q, [*texts, *answers])
        sample_labels, answer_labels = labels[:len(texts)], labels[len(texts):]
        out = []
        for label in answer_labels:
            if label == scored.answer:
                out.append(Confidence(label, scored.confidence, scored.raw_confidence, True))
            elif self.scorer.scorer == "modal_share":
                share = sample_labels.count(label) / len(sample_labels)
                out.append(Confidence(label, None, share, False, NON_MODAL_NOTE))
            else:
                out.append(Confidence(label, None, None, False, NON_MODAL_NOTE))
        summary = {"modal_answer": scored.answer, "modal_confidence": scored.confidence,
                   "samples": len(texts), "classes": dict(list(scored.classes.items())[:10])}
        return out, summary


def message_text(content: Any) -> str:
    """A chat message's text: the string itself, or its text parts joined (OpenAI's list form)."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
