"""Repairs of the synthetic world's post-trained models, each judged on held-out questions.

A *synthetic repair* is a callable that takes a :class:`RepairContext` (the post-trained model,
the base model, the tokenizer, the world, the model's measured run and one calibration /
held-out split of its questions) and returns :class:`RepairResult` rows, one per method it fits.
Repairs are registered by name (:func:`register_synth_repair`); ``SynthConfig.repair_methods``
names the ones a run applies, in order, to each post-trained model. Every repair fits on the
calibration questions only and is judged on the held-out ones against the unrepaired modal
share of the same questions, with the verdict rule of :mod:`recal.repair`.

Registered here:

- ``posthoc``: recal's post-hoc maps on the modal share (:func:`recal.repair.fit_methods`).
- ``sampling_temperature``: the model's own sampling temperature, chosen on the calibration half
  by a grid search with real resampling (the synthetic model samples cheaply, so no importance
  reweighting is needed) on the log loss of the modal share, then the held-out half resampled at
  the chosen T.

A repair that changes the model (a LoRA fine-tune, say) returns its rows through
:func:`judge_model`, which samples the held-out questions with the repaired model and judges them.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recal.confidence import classify_run, get_scorer
from recal.data.records import Question
from recal.metrics import BootstrapResult, brier_score, compute_all, log_loss
from recal.runstore import RunStore
from recal.samples import SamplingConfig
from recal.sampling import sample_run
from recal.semantic.base import Collapser
from recal.synthetic.model import as_backend
from recal.synthetic.world import World

__all__ = ["RepairContext", "RepairResult", "SynthRepair", "register_synth_repair",
           "get_synth_repair", "synth_repair_names", "judge_model", "posthoc_repair",
           "sampling_temperature_repair", "DEFAULT_TAU_GRID"]

DEFAULT_TAU_GRID: tuple[float, ...] = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
"""Sampling temperatures the ``sampling_temperature`` repair tries (1.0 is the unrepaired one)."""


@dataclass(frozen=True)
class RepairContext:
    """Everything a synthetic repair may use; fitting must touch ``calibration_ids`` only."""

    name: str
    """The post-trained model's name ('rl', 'dpo')."""
    model: Any
    """The post-trained ``LlamaForCausalLM`` (do not train it in place: copy it)."""
    base: Any
    """The base model it was post-trained from (a reference distribution for tuning repairs)."""
    tokenizer: Any
    world: World
    run: Path
    """The model's measured run store (concise style, M samples at T = 1)."""
    out: Path
    """A folder for the repair's own runs and artifacts."""
    calibration_ids: tuple[str, ...]
    heldout_ids: tuple[str, ...]
    collapser: Collapser
    n_samples: int
    seed: int
    n_resamples: int
    tau_grid: tuple[float, ...] = DEFAULT_TAU_GRID

    def questions(self, ids: Sequence[str]) -> list[Question]:
        """The world's concise questions with these ids, in the given order."""
        by_id = {q.id: q for q in self.world.questions("concise")}
        return [by_id[i] for i in ids]

    def reference(self) -> tuple[dict[str, BootstrapResult], float]:
        """The unrepaired modal share's held-out metrics, and the Brier score of the constant
        predictor that says the calibration half's accuracy to every held-out question."""
        cal_conf, cal_corr = _modal_arrays(self.run, self.calibration_ids, self.collapser)
        conf, corr = _modal_arrays(self.run, self.heldout_ids, self.collapser)
        base_brier = brier_score(np.full(len(corr), float(cal_corr.mean())), corr)
        return (compute_all(conf, corr, n_resamples=self.n_resamples, seed=self.seed),
                base_brier)


@dataclass(frozen=True)
class RepairResult:
    """One repair method's held-out figures."""

    method: str
    smooth_ece: dict[str, float]
    """Held-out smooth ECE: estimate, low, high (95% bootstrap interval)."""
    accuracy: float
    verdict: str
    detail: dict[str, Any] = field(default_factory=dict)
    """Method-specific facts (the chosen temperature and its fit table, ...)."""

    def to_dict(self) -> dict[str, Any]:
        return {"smooth_ece": dict(self.smooth_ece), "accuracy": self.accuracy,
                "verdict": self.verdict, **self.detail}


SynthRepair = Callable[[RepairContext], list[RepairResult]]
_REGISTRY: dict[str, SynthRepair] = {}


def register_synth_repair(name: str) -> Callable[[SynthRepair], SynthRepair]:
    """Register a synthetic repair under ``name`` (a decorator); duplicate names are refused."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"repair name must be letters, digits and underscores, got {name!r}")

    def add(fn: SynthRepair) -> SynthRepair:
        if name in _REGISTRY:
            raise ValueError(f"a synthetic repair named {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return add


def get_synth_repair(name: str) -> SynthRepair:
    """The registered repair ``name``; an unknown name is answered with the closest ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=2)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown synthetic repair {name!r} (known: "
                         f"{', '.join(sorted(_REGISTRY))}){hint}") from None


def synth_repair_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _modal_arrays(run: Path, ids: Sequence[str], collapser: Collapser,
                  ) -> tuple[np.ndarray, np.ndarray]:
    items = classify_run(RunStore.open(run), collapser, ids=ids)
    predictions = get_scorer("modal_share").score(items, collapser, None)
    return (np.array([p.confidence for p in predictions], dtype=float),
            np.array([p.correct for p in predictions], dtype=float))


def _verdict(metrics: dict[str, BootstrapResult], ctx: RepairContext,
             reference: dict[str, BootstrapResult] | None = None,
             base_brier: float | None = None) -> str:
    from recal.repair import _verdict as repair_verdict  # one verdict rule for every repair

    if reference is None or base_brier is None:
        reference, base_brier = ctx.reference()
    return repair_verdict(metrics, reference, base_brier, tolerance=0.01, is_reference=False)


def _sample_modal(ctx: RepairContext, model: Any, ids: Sequence[str], temperature: float,
                  folder: Path) -> tuple[np.ndarray, np.ndarray]:
    backend = as_backend(model, ctx.tokenizer, f"synthetic-{ctx.name}-repaired")
    sample_run(backend, ctx.questions(ids), out=folder,
               config=SamplingConfig(n_samples=ctx.n_samples, temperature=temperature,
                                     seed=ctx.seed, greedy=False),
               style="concise", shots=0, dataset="synthetic", overwrite=True, progress=False)
    return _modal_arrays(folder, ids, ctx.collapser)


def judge_model(ctx: RepairContext, method: str, model: Any, *, temperature: float = 1.0,
                detail: dict[str, Any] | None = None) -> RepairResult:
    """Sample the held-out questions with a repaired ``model`` (M answers at ``temperature``)
    and judge its modal share against the unrepaired model's on the same questions."""
    conf, corr = _sample_modal(ctx, model, ctx.heldout_ids, temperature,
                               ctx.out / f"{ctx.name}-{method}-heldout")
    metrics = compute_all(conf, corr, n_resamples=ctx.n_resamples, seed=ctx.seed)
    sm = metrics["smooth_ece"]
    return RepairResult(method, {"estimate": sm.estimate, "low": sm.low, "high": sm.high},
                        metrics["accuracy"].estimate, _verdict(metrics, ctx),
                        detail=dict(detail or {}))


@register_synth_repair("posthoc")
def posthoc_repair(ctx: RepairContext) -> list[RepairResult]:
    """recal's post-hoc maps on the modal share (identity first: the unrepaired reference)."""
    from recal.repair import FitConfig, fit_methods

    fitted = fit_methods(RunStore.open(ctx.run),
                         FitConfig(seed=ctx.seed, n_resamples=ctx.n_resamples),
                         collapser=ctx.collapser)
    if tuple(fitted.heldout_ids) != ctx.heldout_ids:
        raise RuntimeError("recal.repair.fit_methods split the questions differently from the "
                           "synthetic repairs: their held-out figures would not be comparable")
    out = []
    for result in fitted.results:
        sm, acc = result.heldout["smooth_ece"], result.heldout["accuracy"]
        out.append(RepairResult(result.method,
                                {"estimate": sm.estimate, "low": sm.low, "high": sm.high},
                                acc.estimate, result.verdict, detail=dict(result.detail)))
    return out


@register_synth_repair("sampling_temperature")
def sampling_temperature_repair(ctx: RepairContext) -> list[RepairResult]:
    """Choose the sampling temperature on the calibration half by resampling at each grid
    temperature (the log loss of the modal share against correctness, as
    :func:`recal.sampling_temperature.fit_sampling_temperature` scores it), then resample the
    held-out half at the chosen T."""
    table = []
    best, best_tau = math.inf, math.nan
    for tau in ctx.tau_grid:
        if tau == 1.0:  # the measured run already holds T = 1
            conf, corr = _modal_arrays(ctx.run, ctx.calibration_ids, ctx.collapser)
        else:
            conf, corr = _sample_modal(ctx, ctx.model, ctx.calibration_ids, tau,
                                       ctx.out / f"{ctx.name}-T{tau:g}-calibration")
        row = {"tau": float(tau), "log_loss": log_loss(conf, corr),
               "accuracy": float(corr.mean()), "mean_confidence": float(conf.mean())}
        table.append(row)
        if row["log_loss"] < best:
            best, best_tau = row["log_loss"], float(tau)
    detail = {"tau": best_tau, "estimate": "resampled", "fit_table": table}
    if best_tau == 1.0:
        reference, _ = ctx.reference()
        sm = reference["smooth_ece"]
        return [RepairResult("sampling_temperature",
                             {"estimate": sm.estimate, "low": sm.low, "high": sm.high},
                             reference["accuracy"].estimate,
                             "keeps the sampled temperature (no repair)", detail)]
    return [judge_model(ctx, "sampling_temperature", ctx.model, temperature=best_tau,
                        detail=detail)]
