"""Plain records for sampled answers, and the sampling settings that produce them.

These are the records every later stage reads (collapsing functions, confidence scorers,
recalibrators); they carry no torch objects and serialise to JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

__all__ = ["FinishReason", "Sample", "QuestionSamples", "SamplingConfig"]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Sample:
    """One generated answer.

    ``logprobs[i]`` is the log-probability of ``token_ids[i]`` under the distribution it was drawn
    from (the model's next-token distribution at the sampling temperature; temperature 1 for the
    greedy answer). The stop token (EOS or the token holding the newline), when there is one, is
    the last of ``token_ids``; ``text`` is the answer without it.

    ``logits`` and ``lse`` are recorded only when the sampling config asks for a temperature grid
    (``tau_grid``): ``logits[i]`` is the raw logit z of the sampled token and ``lse[i][j]`` is
    ``logsumexp(z_all / tau_grid[j])``, so that ``log p_tau(token) = z / tau - lse`` can reweight
    these samples to another sampling temperature without running the model again.
    """

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason
    logits: tuple[float, ...] | None = None
    lse: tuple[tuple[float, ...], ...] | None = None

    @property
    def logprob(self) -> float:
        """Log-probability of the whole sequence (sum over its tokens)."""
        return float(sum(self.logprobs))

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "logprobs": [round(x, 6) for x in self.logprobs],
            "finish_reason": self.finish_reason,
        }
        if self.logits is not None:
            row["logits"] = [round(x, 5) for x in self.logits]
        if self.lse is not None:
            row["lse"] = [[round(x, 5) for x in step] for step in self.lse]
        return row

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Sample:
        lse = row.get("lse")
        logits = row.get("logits")
        return cls(
            text=row["text"],
            token_ids=tuple(row["token_ids"]),
            logprobs=tuple(row["logprobs"]),
            finish_reason=row["finish_reason"],
            logits=tuple(logits) if logits is not None else None,
            lse=tuple(tuple(step) for step in lse) if lse is not None else None,
        )


@dataclass(frozen=True)
class QuestionSamples:
    """The M sampled answers to one question, and its greedy answer when asked for."""

    question_id: str
    samples: tuple[Sample, ...]
    greedy: Sample | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.question_id,
            "samples": [s.to_dict() for s in self.samples],
            "greedy": self.greedy.to_dict() if self.greedy is not None else None,
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> QuestionSamples:
        greedy = row.get("greedy")
        return cls(
            question_id=str(row["id"]),
            samples=tuple(Sample.from_dict(s) for s in row["samples"]),
            greedy=Sample.from_dict(greedy) if greedy is not None else None,
        )


@dataclass(frozen=True)
class SamplingConfig:
    """How answers are drawn. The reference protocol is M = 50 samples at T = 1, no truncation.

    Every field but ``batch_rows`` changes what is sampled, so all of them (and only them) enter
    the run store's manifest: a stored run is reused only when they agree.
    """

    n_samples: int = 50
    """M: sampled answers per question."""
    temperature: float = 1.0
    """T: softmax temperature; no top-p / top-k truncation is ever applied."""
    max_new_tokens: int | None = None
    """Longest answer in tokens (an answer cut here has finish_reason 'length'); None: by style."""
    stop_at_newline: bool | None = None
    """End an answer at the first line break after it has begun; None: by style (see prompts)."""
    greedy: bool = True
    """Also record the greedy (argmax) answer of each question."""
    seed: int = 0
    """Seeds the counter-based generator: sample j of question q depends on (seed, q, j) alone."""
    tau_grid: tuple[float, ...] = ()
    """Temperatures at which to record log-sum-exp of the scaled logits (importance reweighting)."""
    batch_rows: int = field(default=256, compare=False)
    """Sequences decoded together (engine setting: does not change the samples)."""

    def __post_init__(self) -> None:
        if not isinstance(self.n_samples, int) or self.n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {self.n_samples!r}")
        if not (isinstance(self.temperature, int | float) and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number, got {self.temperature!r}")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature}; use greedy=True for argmax"
            )
        if self.max_new_tokens is not None and (
            not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1
        ):
            raise ValueError(
                f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if any(not (math.isfinite(t) and t > 0) for t in self.tau_grid):
            raise ValueError(f"tau_grid must hold positive temperatures, got {self.tau_grid!r}")
        if not isinstance(self.batch_rows, int) or self.batch_rows < 1:
            raise ValueError(f"batch_rows must be a positive integer, got {self.batch_rows!r}")
        object.__setattr__(self, "tau_grid", tuple(float(t) for t in self.tau_grid))

    @property
    def is_resolved(self) -> bool:
        return self.max_new_tokens is not None and self.stop_at_newline is not None

    def resolved(self, style: str, *, chat: bool) -> SamplingConfig:
        """Fill the settings left to the prompt style (answer length, stopping at a newline)."""
        from recal.prompts import DEFAULT_MAX_NEW_TOKENS, stops_at_newline

        by_style = stops_at_newline(style, chat=chat)  # also validates the style
        return replace(
            self,
            max_new_tokens=self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[style],
            stop_at_newline=by_style if self.stop_at_newline is None else self.stop_at_newline,
        )

    def identity(self) -> dict[str, Any]:
        """The fields that determine the samples (for manifests)."""
        row = asdict(self)
        row.pop("batch_rows")
        row["tau_grid"] = list(self.tau_grid)
        return row
