"""Configs of the LoRA tuning methods: one dataclass per method over shared training settings.

Every field has a help string (its docstring), and cross-field checks run in ``__post_init__``, so
a config that cannot train is refused when built, not after the model has loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

__all__ = ["TrainConfig", "DistributionConfig", "ConfidenceHeadConfig", "AmortisedConfig",
           "config_from_dict", "config_for", "TUNING_CONFIGS", "TUNING_SETTINGS"]


@dataclass(frozen=True)
class TrainConfig:
    """What every tuning method shares: the data split, the LoRA adapter and the training loop."""

    method: ClassVar[str] = ""

    collapse: str = "normalized"
    """The collapsing function B that groups answers into classes and grades them."""
    calibration_fraction: float = 0.5
    """Share of the run's questions used for training (and validation); the rest is held out.
    With the same ``seed`` this is exactly the split of `recal fit` (recal.repair)."""
    seed: int = 0
    """Seed of the held-out split (as recal.repair's), the validation split and the shuffling."""
    val_fraction: float = 0.2
    """Share of the training questions kept aside for early stopping (never trained on)."""
    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16.0
    """LoRA scaling alpha (the update is scaled by alpha / r)."""
    dropout: float = 0.0
    """LoRA dropout."""
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    """Names of the linear layers that get LoRA adapters."""
    train_layers: int | None = 4
    """LoRA on the last N decoder layers only (None: all). The frozen layers below then run once
    per training row (their output is cached), so an epoch costs about N / depth of a full
    forward and backward pass: what makes tuning affordable on a CPU."""
    learning_rate: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 8
    """Training rows per optimiser step (per process under accelerate)."""
    max_epochs: int = 3
    """Passes over the training rows at most."""
    patience: int = 2
    """Stop after this many epochs without a better validation loss."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (for quick tests); None: no limit."""
    max_length: int = 256
    """Longest prompt + answer in tokens; longer rows are cut from the left of the prompt."""
    n_resamples: int = 1000
    """Bootstrap resamples of the held-out metrics."""
    eval_limit: int | None = None
    """Judge on the first N held-out questions only (None: all); for slow machines."""

    def __post_init__(self) -> None:
        from recal.semantic.base import get_collapser

        get_collapser(self.collapse)  # unknown names fail now, with did-you-mean
        if not 0 < self.calibration_fraction < 1:
            raise ValueError(f"calibration_fraction must be in (0, 1), got "
                             f"{self.calibration_fraction}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("rank", "batch_size", "max_epochs", "patience", "max_length",
                     "n_resamples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.train_layers is not None and self.train_layers < 1:
            raise ValueError(f"train_layers must be at least 1 or None, got {self.train_layers}")
        if self.eval_limit is not None and self.eval_limit < 2:
            raise ValueError(f"eval_limit must be at least 2 or None, got {self.eval_limit}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1 or None, got {self.max_steps}")
        if self.learning_rate <= 0 or self.alpha <= 0:
            raise ValueError(f"learning_rate and alpha must be positive, got "
                             f"{self.learning_rate} and {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("target_modules is empty: name the layers that get LoRA adapters")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **asdict(self)}

    def digest(self) -> str:
        """A hash of the settings that shape training (a resumed run must share it)."""
        # Loop limits may change on resume (train longer); judging settings do not train.
        judging = ("n_resamples", "eval_samples", "eval_limit", "max_epochs", "patience",
                   "max_steps")
        keep = {k: v for k, v in self.to_dict().items() if k not in judging}
        blob = json.dumps(keep, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class DistributionConfig(TrainConfig):
    """Distribution matching: teach the model a target distribution over meaning classes."""

    method: ClassVar[str] = "distribution"

    target: Literal["reference", "sharpen", "correct_mix"] = "sharpen"
    """'reference': another model's class distribution on the same questions (``reference``
    run); 'sharpen': the model's own distribution raised to a power beta fitted on the graded
    training questions so its modal share is calibrated; 'correct_mix': the model's own
    distribution mixed toward its correct classes with weight ``mix``."""
    reference: str | None = None
    """Run folder of the reference model (target 'reference'); classes are matched as text."""
    mix: float = 0.3
    """Weight moved toward the correct classes (target 'correct_mix')."""
    max_classes: int = 4
    """Classes per question trained on (the largest target masses; the rest is renormalised)."""
    eval_samples: int = 10
    """Answers sampled per held-out question from the tuned model to judge it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in ("reference", "sharpen", "correct_mix"):
            raise ValueError(f"target must be 'reference', 'sharpen' or 'correct_mix', got "
                             f"{self.target!r}")
        if self.target == "reference" and not self.reference:
            raise ValueError("target 'reference' needs a reference run folder (reference=...)")
        if not 0 < self.mix <= 1:
            raise ValueError(f"mix must be in (0, 1], got {self.mix}")
        if self.max_classes < 1 or self.eval_samples < 1:
            raise ValueError("max_classes and eval_samples must be at least 1")


@dataclass(frozen=True)
class ConfidenceHeadConfig(TrainConfig):
    """Calibration tuning (Kapoor et al. 2024): P(yes) to "is this answer correct?"."""

    method: ClassVar[str] = "confidence_head"

    answers_per_question: int = 2
    """Graded answers per training question: its largest classes, modal first."""
    yes: str = "Yes"
    """The reply meaning 'correct' (its first token is read)."""
    no: str = "No"
    """The reply meaning 'wrong' (its first token is read)."""
    kl_weight: float = 1.0
    """Weight of the regulariser: KL(frozen || tuned) of the next-token distributions along the
    model's own answers, so that the answers stay as they were."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.answers_per_question < 1:
            raise ValueError(f"answers_per_question must be at least 1, got "
                             f"{self.answers_per_question}")
        if not self.yes.strip() or not self.no.strip() or self.yes == self.no:
            raise ValueError(f"yes and no must be two different non-empty replies, got "
                             f"{self.yes!r} and {self.no!r}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")


@dataclass(frozen=True)
class AmortisedConfig(TrainConfig):
    """Amortised confidence: predict from the question alone, in one forward pass."""

    method: ClassVar[str] = "amortised"

    target: Literal["modal_share", "correct"] = "modal_share"
    """'modal_share': the run's modal share of the question (the paper's probe: can the model
    predict its own confidence?); 'correct': whether its modal answer was right."""
    head_learning_rate: float = 1e-3
    """Learning rate of the regression head on the last hidden state."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in ("modal_share", "correct"):
            raise ValueError(f"target must be 'modal_share' or 'correct', got {self.target!r}")
        if self.head_learning_rate <= 0:
            raise ValueError(f"head_learning_rate must be positive, got "
                             f"{self.head_learning_rate}")


TUNING_CONFIGS: dict[str, type[TrainConfig]] = {
    c.method: c for c in (DistributionConfig, ConfidenceHeadConfig, AmortisedConfig)}
"""Each tuning method's config class, by method name (importable without torch)."""
TUNING_SETTINGS: frozenset[str] = frozenset(f.name for c in TUNING_CONFIGS.values()
                                            for f in fields(c))
"""Every setting some tuning method's config has."""


def config_for(method: str, settings: Mapping[str, Any]) -> TrainConfig:
    """``method``'s config from ``settings``, taking the keys its dataclass has (for settings
    shared by several methods, as ``recal bench``'s ``tuning``); unknown methods are refused."""
    if method not in TUNING_CONFIGS:
        raise ValueError(f"unknown tuning method {method!r} (known: "
                         f"{', '.join(TUNING_CONFIGS)})")
    cls = TUNING_CONFIGS[method]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in settings.items() if k in names})


def config_from_dict(doc: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved with ``to_dict``; unknown keys (a newer recal) are left out."""
    import warnings

    method = doc.get("method")
    if method not in TUNING_CONFIGS:
        raise ValueError(f"unknown tuning method {method!r} in a saved config")
    cls = TUNING_CONFIGS[method]
    known = {f.name for f in fields(cls)}
    extra = sorted(set(doc) - known - {"method"})
    if extra:
        warnings.warn(f"ignoring unknown tuning config keys {extra} (written by a newer recal?)",
                      stacklevel=2)
    kwargs = {k: (tuple(v) if k == "target_modules" else v) for k, v in doc.items() if k in known}
    return cls(**kwargs)
