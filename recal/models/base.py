"""The interface every model backend implements (transformers, http, vllm: see
:mod:`recal.models.backends` for the registry that names them)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from recal.prompts import Prompt
from recal.samples import QuestionSamples, SamplingConfig

__all__ = ["ModelKind", "ModelIdentity", "Backend", "first_token_ids"]

ModelKind = Literal["chat", "base"]


@dataclass(frozen=True)
class ModelIdentity:
    """What a run records about the model that produced it."""

    name: str
    """Registry name, hub id, path or served model name."""
    kind: ModelKind
    """'chat' models get a chat template; 'base' models get k-shot text."""
    backend: str
    """The backend that ran it: its name in :data:`recal.models.BACKENDS` ('transformers', ...)."""
    source: str
    """Where the weights came from (a file, a hub id, a URL)."""
    config_hash: str
    """A hash of the model's configuration: two runs agree on it when the model is the same."""
    dtype: str | None = None
    """The precision the weights ran in ('float32', 'bfloat16'); None where the backend does
    not know it (a server)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first_token_ids(tokenizer: Any, candidates: Sequence[str]) -> list[int]:
    """The first token id of each candidate string (what ``next_token_logprobs`` reads)."""
    firsts = []
    for text in candidates:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"candidate {text!r} encodes to no tokens")
        firsts.append(ids[0])
    return firsts


class Backend(ABC):
    """Something that samples answers from a language model.

    A backend receives prompts for many questions at once and yields each question's samples as
    soon as they are complete, in any order, so that the caller can store them before the rest
    finish. Backends are free in how they batch, but must honour ``SamplingConfig`` exactly: M
    samples at temperature T with no truncation, and the same samples for the same seed.
    """

    identity: ModelIdentity

    @property
    def is_chat(self) -> bool:
        return self.identity.kind == "chat"

    @abstractmethod
    def generate(
        self, question_ids: Sequence[str], prompts: Sequence[Prompt], config: SamplingConfig
    ) -> Iterator[QuestionSamples]:
        """Sample ``config.n_samples`` answers (and the greedy one) for each prompt."""

    @staticmethod
    def check_generate_args(question_ids: Sequence[str], prompts: Sequence[Prompt],
                            config: SamplingConfig) -> None:
        """The checks every ``generate`` starts with: one prompt per question, a config whose
        style-dependent settings are filled in."""
        if len(question_ids) != len(prompts):
            raise ValueError(f"got {len(question_ids)} question ids for {len(prompts)} prompts")
        if not config.is_resolved:
            raise ValueError("resolve the sampling config for a prompt style first "
                             "(SamplingConfig.resolved(style, chat=...))")

    def next_token_logprobs(self, prompts: Sequence[Prompt],
                            candidates: Sequence[str]) -> list[list[float]]:
        """Log-probability that the answer to each prompt begins with each candidate string's
        first token (P(true) reads "yes"/"no" from it). Backends that cannot see next-token
        probabilities (some servers) raise ``NotImplementedError``."""
        raise NotImplementedError(
            f"the {self.identity.backend} backend does not expose next-token probabilities, "
            "which the p_true scorer needs")

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to free
        """Free whatever the backend holds (servers, memory)."""
