"""LoRA repairs of the synthetic world's post-trained models: :mod:`recal.tuning`'s methods run
by :func:`recal.tuning.tune` on the model's measured run, registered as synthetic repairs.

- ``lora_confidence_head``: calibration tuning (Kapoor et al. 2024), P(yes) to "is this answer
  correct?" for the modal answer.
- ``lora_amortised``: a LoRA and a linear head that predict from the question alone whether the
  modal answer is right (target ``correct``; the ``modal_share`` target copies the overconfident
  shares it should repair).
- ``lora_distribution``: the model fine-tuned toward its own class distribution sharpened (or
  flattened) by a power fitted on the training questions, then resampled on the held-out half.

Each trains on the calibration half of :class:`~recal.synthetic.repairs.RepairContext` (its
validation part stops training early) and is judged on the held-out half with the verdict rule
of the other repairs. Before training, the run's split is checked to be the context's and the
model to be the one that sampled the run; after, that its weights did not move (``tune`` trains
a copy).

The synthetic vocabulary has no "yes" or "no": the confidence head reads the logits of two words
the world's questions always hold, ``" is"`` (yes) and ``" does"`` (no), and the yes/no prompt's
other unknown words (Question, Proposed, ...) encode to the unknown token. The readout is learnt
from nothing either way: the base model never saw a yes/no question.

On the full world (seed 0) none of the three repairs the RL or DPO model as a post-hoc map does;
the README's synthetic section gives the table and the reasons.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from recal.confidence import classify_run
from recal.metrics import BootstrapResult
from recal.runstore import RunStore
from recal.synthetic.model import as_backend
from recal.synthetic.repairs import RepairContext, RepairResult, register_synth_repair

__all__ = ["LoraSettings", "LORA_SETTINGS", "LORA_REPAIRS", "lora_repair", "lora_config",
           "weights_digest"]

YES, NO = " is", " does"
"""The confidence head's replies: single tokens of every synthetic vocabulary (see above)."""


@dataclass(frozen=True)
class LoraSettings:
    """The training settings of one LoRA repair on the synthetic models (1 or 2 layers)."""

    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16.0
    """LoRA scaling alpha (the update is scaled by alpha / r)."""
    learning_rate: float = 1e-3
    """AdamW learning rate of the adapter."""
    max_epochs: int = 10
    """Passes over the training rows at most (120 questions in the full world)."""
    patience: int = 3
    """Stop after this many epochs without a better validation loss."""
    batch_size: int = 8
    """Training rows per optimiser step."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                       "up_proj", "down_proj")
    """Every linear layer of the synthetic Llama (it has no others worth adapting)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (None: no limit)."""
    head_learning_rate: float = 1e-3
    """Learning rate of the amortised method's head (the other methods have none)."""


LORA_SETTINGS: dict[str, LoraSettings] = {
    "confidence_head": LoraSettings(learning_rate=2e-3),
    "amortised": LoraSettings(),
    "distribution": LoraSettings(),
}
"""Settings per tuning method, chosen on the full world's RL model (seed 0) among learning rates
1e-3, 2e-3 and 5e-3 (and, for the amortised head, 1e-4 to 1e-2): 5e-3 overshot (validation loss
up from the first epoch). The amortised method kept its untrained head at every setting."""

_METHODS = ("confidence_head", "amortised", "distribution")


def lora_config(method: str, ctx: RepairContext, settings: LoraSettings | None = None) -> Any:
    """The ``recal.tuning`` config of ``method`` for this context: its split (half the questions
    at the context's seed), bootstrap and M, and the method's settings."""
    from recal.tuning import AmortisedConfig, ConfidenceHeadConfig, DistributionConfig

    if method not in _METHODS:
        raise ValueError(f"unknown LoRA repair method {method!r} (known: "
                         f"{', '.join(_METHODS)})")
    s = settings or LORA_SETTINGS[method]
    common: dict[str, Any] = {f.name: getattr(s, f.name) for f in fields(s)
                              if f.name != "head_learning_rate"}
    common.update(collapse=ctx.collapser.name, calibration_fraction=0.5, seed=ctx.seed,
                  n_resamples=ctx.n_resamples, train_layers=None)
    if method == "confidence_head":
        return ConfidenceHeadConfig(**common, yes=YES, no=NO)
    if method == "amortised":
        return AmortisedConfig(**common, target="correct",
                               head_learning_rate=s.head_learning_rate)
    return DistributionConfig(**common, target="sharpen", eval_samples=ctx.n_samples)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes, in order: equal digests, equal weights."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_made_the_run(backend: Any, store: RunStore, n: int = 4) -> None:
    """Refuse a model that did not sample ``store``: the manifest's identity (name, config hash)
    and the stored log-probabilities of a few answers must be the model's (the config hash alone
    is the architecture's: the base and post-trained models share it)."""
    from recal.prompts import build_prompt
    from recal.tuning.sequences import AnswerRow, answer_logprobs, collate_answers

    made = store.manifest["model"]
    if (made.get("name"), made.get("config_hash")) != (backend.identity.name,
                                                       backend.identity.config_hash):
        raise ValueError(f"{store.path} was sampled by {made.get('name')!r} (config hash "
                         f"{made.get('config_hash')}); the model given is "
                         f"{backend.identity.name!r} ({backend.identity.config_hash})")
    records = store.samples_by_id()
    rows, stored = [], []
    for q in store.questions()[:n]:
        s = records[q.id].samples[0]
        prompt = backend.encode(build_prompt(q, store.manifest["style"], chat=False,
                                             shots=store.manifest.get("shots")))
        rows.append(AnswerRow(tuple(prompt), tuple(s.token_ids)))
        stored.append(s.logprob)
    with torch.no_grad():
        got = answer_logprobs(backend.model, collate_answers(rows, backend._pad_id, 10_000))
    if not np.allclose(got.numpy(), stored, atol=1e-3):
        raise ValueError(f"the model given does not give the log-probabilities stored in "
                         f"{store.path} ({got.numpy().round(4).tolist()} against "
                         f"{np.round(stored, 4).tolist()}): it is not the model that sampled it")


def lora_repair(ctx: RepairContext, method: str, settings: LoraSettings | None = None,
                ) -> RepairResult:
    """Tune ``method`` with :func:`recal.tuning.tune` on the context's run and judge its tuned
    row on the held-out questions against the unrepaired modal share."""
    from recal.tuning import tune
    from recal.tuning.split import tuning_split

    config = lora_config(method, ctx, settings)
    store = RunStore.open(ctx.run)
    split = tuning_split(classify_run(store, ctx.collapser), config.calibration_fraction,
                         config.val_fraction, config.seed)
    if split.heldout_ids != ctx.heldout_ids:
        raise RuntimeError(f"recal.tuning splits {store.path} differently from the synthetic "
                           "repairs: their held-out figures would not be comparable")
    backend = as_backend(ctx.model, ctx.tokenizer, f"synthetic-{ctx.name}")
    _check_made_the_run(backend, store)
    out = ctx.out / f"{ctx.name}-lora-{method}"
    # tune resumes a checkpoint of the same settings: an earlier run's would be another model's.
    shutil.rmtree(out, ignore_errors=True)
    before = weights_digest(ctx.model)
    report = tune(store, config, out, backend=backend, progress=False)
    if weights_digest(ctx.model) != before:
        raise RuntimeError(f"tuning {method} changed the {ctx.name} model's own weights")
    row = report.tuned_row
    metrics: dict[str, BootstrapResult] = report.heldout[row]
    t = report.training
    detail = {"estimate": row, "epochs": t.epochs, "history": t.history, "best_epoch": t.best_epoch,
              "stopped": t.stopped, "train_seconds": t.seconds,
              "initial_val_loss": t.initial_val_loss, "best_val_loss": t.best_val_loss,
              "rows": {name: {"smooth_ece": m["smooth_ece"].estimate,
                              "accuracy": m["accuracy"].estimate}
                       for name, m in report.heldout.items()},
              **{k: v for k, v in report.extra.items() if isinstance(v, int | float | str)}}
    return RepairResult.of(f"lora_{method}", metrics, ctx.point_verdict(metrics), detail)


def _registered(method: str) -> Callable[[RepairContext], list[RepairResult]]:
    def repair(ctx: RepairContext) -> list[RepairResult]:
        return [lora_repair(ctx, method)]

    repair.__doc__ = f"recal.tuning's {method} method as a synthetic repair (see lora_repair)."
    return register_synth_repair(f"lora_{method}")(repair)


LORA_REPAIRS: dict[str, Callable[[RepairContext], list[RepairResult]]] = {
    f"lora_{m}": _registered(m) for m in _METHODS}
"""The registered LoRA repairs by name."""
