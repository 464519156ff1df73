"""What a tuning method is, the registry of methods, and a tuned model ready to score.

A method turns classified questions into training rows, collates rows into batches, defines the
loss, and reads a confidence off the tuned model. :func:`recal.tuning.run.tune` runs any of them
the same way (split, train, evaluate, save).
"""

from __future__ import annotations

import copy
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from recal.confidence import Classified
from recal.data.records import Question
from recal.models.hf import TransformersBackend
from recal.registry import Registry
from recal.semantic.base import Collapser
from recal.tuning.config import TrainConfig
from recal.tuning.sequences import cache_bottom, decoder_layers

__all__ = ["TuningMethod", "TunedModel", "Evaluation", "TUNING_METHODS", "get_method"]


@dataclass
class TunedModel:
    """A base model with a trained adapter (and head): what the methods score with."""

    method: TuningMethod
    backend: TransformersBackend
    """The base model's backend (its weights untouched)."""
    model: Any
    """The peft model (a copy of the base model with the adapter)."""
    head: torch.nn.Module | None
    style: str
    shots: int | None
    adapter_sha256: str = ""

    def confidence(self, questions: Sequence[Question | str],
                   answers: Sequence[str] | None = None) -> np.ndarray:
        """The method's confidence for each question (and proposed answer, where it needs one)."""
        qs = [q if isinstance(q, Question) else Question(f"q{i}", q, ("?",))
              for i, q in enumerate(questions)]
        return self.method.confidence(self, qs, answers)

    def sampling_backend(self) -> TransformersBackend:
        """A backend that samples from the tuned model (the adapter merged into a copy)."""
        merged = copy.deepcopy(self.model).merge_and_unload()
        merged.eval()
        base = self.backend.identity
        tag = hashlib.sha256(f"{base.config_hash}:{self.adapter_sha256}".encode()).hexdigest()
        identity = replace(base, name=f"{base.name}+{self.method.name}",
                           source=f"{base.source}+lora:{self.adapter_sha256[:12]}",
                           config_hash=tag[:16])
        return TransformersBackend(merged, self.backend.tokenizer, identity)


class TuningMethod(ABC):
    """One LoRA calibration method: its rows, batches, loss, confidence and judgement."""

    name: ClassVar[str]
    config_cls: ClassVar[type[TrainConfig]]

    def __init__(self, config: TrainConfig) -> None:
        if not isinstance(config, self.config_cls):
            raise TypeError(f"the {self.name} method takes a {self.config_cls.__name__}, got "
                            f"{type(config).__name__}")
        self.config = config
        self.pad_id = 0

    def bind(self, backend: TransformersBackend, style: str, shots: int | None) -> None:
        """Attach the model and prompt settings the rows and readouts use."""
        self.backend, self.style, self.shots = backend, style, shots
        self.pad_id = backend._pad_id

    #: Set by :func:`recal.tuning.run.tune` while making training rows: the frozen model whose
    #: bottom layers' output is cached in the rows (None: rows carry token ids only).
    cache_model: Any = None
    progress: bool = False

    @property
    def top(self) -> int | None:
        """Layers the training batches run (None: the whole model, from token ids)."""
        n = self.config.train_layers
        if self.cache_model is None or n is None or n >= len(decoder_layers(self.cache_model)):
            return None
        return n

    def cached(self, rows: Sequence[Any]) -> list[Any]:
        """``rows`` with the frozen bottom layers' output attached, when training uses it."""
        if self.top is None or not rows:
            return list(rows)
        return cache_bottom(self.cache_model, rows, self.top, self.pad_id,
                            self.config.max_length, progress=self.progress)

    def make_head(self, model: Any) -> torch.nn.Module | None:
        """Extra trainable weights beside the adapter (saved in safetensors); None: none."""
        return None

    def head_state(self) -> dict[str, Any]:
        """What rebuilding the head needs (saved in the adapter's JSON)."""
        return {}

    def load_head_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`head_state` saved."""

    @abstractmethod
    def prepare(self, train_items: Sequence[Classified], all_items: Sequence[Classified],
                collapser: Collapser, backend: TransformersBackend, style: str,
                shots: int | None) -> None:
        """Fit what the rows need from the graded training questions only (``train_items``);
        ``all_items`` are the training and validation questions, to make rows for."""

    @abstractmethod
    def rows(self, items: Sequence[Classified]) -> list[Any]:
        """Training rows of these questions."""

    @abstractmethod
    def collate(self, rows: Sequence[Any]) -> dict[str, torch.Tensor]:
        """A batch of rows."""

    @abstractmethod
    def loss(self, model: Any, head: torch.nn.Module | None,
             batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss of the batch, its total weight)."""

    @abstractmethod
    def confidence(self, tuned: TunedModel, questions: Sequence[Question],
                   answers: Sequence[str] | None) -> np.ndarray:
        """Confidence for each question (and proposed answer)."""

    @abstractmethod
    def evaluate(self, tuned: TunedModel, heldout: Sequence[Classified], collapser: Collapser,
                 out: Path, progress: bool = True) -> Evaluation:
        """Held-out rows before and after tuning (the confidence judged, and its correctness)."""


@dataclass
class Evaluation:
    """Held-out (confidence, correct) arrays by row name, before and after, and extra figures."""

    rows: dict[str, tuple[np.ndarray, np.ndarray]]
    tuned: str
    """The name of the row read off the tuned model (what a scorer or a bench reports)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tuned not in self.rows:
            raise ValueError(f"the tuned row {self.tuned!r} is not among the rows "
                             f"{sorted(self.rows)}")


TUNING_METHODS: Registry[type[TuningMethod]] = Registry("tuning method")


def get_method(name: str) -> type[TuningMethod]:
    """The method class registered under ``name`` (unknown names get "did you mean")."""
    import recal.tuning.amortised
    import recal.tuning.confidence_head
    import recal.tuning.distribution  # noqa: F401 - importing registers the methods

    return TUNING_METHODS.get(name)
