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
  on the log loss of the modal share: by importance reweighting when the run recorded a
  temperature grid (the refit of ``recal fit`` and ``recal bench``), otherwise by a grid search
  with real resampling (the synthetic model samples cheaply), then the held-out half resampled at
  the chosen T.

A repair that changes the model (a LoRA fine-tune, say) returns its rows through
:func:`judge_model`, which samples the held-out questions with the repaired model and judges them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recal.data.records import Question
from recal.judged import (
    AUROC_TOLERANCE,
    PAIRED_METRICS,
    JudgedRun,
    Split,
    judge,
    paired_verdict,
    verdict,
)
from recal.metrics import BootstrapResult, brier_score
from recal.metrics.paired import paired_difference
from recal.registry import Registry
from recal.repairs.sampling import temperature_grid
from recal.runstore import RunStore
from recal.samples import SamplingConfig
from recal.sampling import sample_run
from recal.sampling_temperature import choose_temperature
from recal.semantic.base import Collapser
from recal.synthetic.model import as_backend
from recal.synthetic.world import World

__all__ = ["RepairContext", "RepairResult", "SynthRepair", "SYNTH_REPAIRS", "register_synth_repair",
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
    min_ess: float = 5.0
    """A reweighted temperature whose median effective sample size is below this is refused."""

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
        return self.judge(conf, corr), base_brier

    def judge(self, conf: np.ndarray, corr: np.ndarray) -> dict[str, BootstrapResult]:
        """Metrics with intervals, with the context's bootstrap."""
        return judge(conf, corr, n_resamples=self.n_resamples, seed=self.seed)

    def verdict(self, conf: np.ndarray, corr: np.ndarray) -> str:
        """:func:`recal.judged.paired_verdict` of a repair's held-out (conf, corr) against the
        unrepaired modal share of the same questions, on the same resamples."""
        reference = _modal_arrays(self.run, self.heldout_ids, self.collapser)
        paired = {m: paired_difference(m, reference, (conf, corr), n_resamples=self.n_resamples,
                                       seed=self.seed) for m in PAIRED_METRICS}
        return paired_verdict(paired)

    def point_verdict(self, metrics: dict[str, BootstrapResult]) -> str:
        """:func:`recal.judged.verdict` on point estimates, for rows whose per-question
        confidences are not at hand (the LoRA repairs' tuned readouts)."""
        reference, base_brier = self.reference()
        return verdict(metrics, reference, base_brier, AUROC_TOLERANCE)


@dataclass(frozen=True)
class RepairResult:
    """One repair method's held-out figures."""

    method: str
    smooth_ece: dict[str, float]
    """Held-out smooth ECE: estimate, low, high (95% interval); empty when not fitted."""
    accuracy: float | None
    verdict: str
    detail: dict[str, Any] = field(default_factory=dict)
    """Method-specific facts (the chosen temperature and its fit table, ...)."""

    @classmethod
    def of(cls, method: str, metrics: dict[str, BootstrapResult], verdict: str,
           detail: dict[str, Any] | None = None) -> RepairResult:
        """The row of held-out ``metrics`` (with intervals); no metrics: a method that refused
        to fit (its ``verdict`` says why)."""
        if not metrics:
            return cls(method, {}, None, verdict, dict(detail or {}))
        sm = metrics["smooth_ece"]
        return cls(method, {"estimate": sm.estimate, "low": sm.low, "high": sm.high},
                   metrics["accuracy"].estimate, verdict, dict(detail or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"smooth_ece": dict(self.smooth_ece), "accuracy": self.accuracy,
                "verdict": self.verdict, **self.detail}


SynthRepair = Callable[[RepairContext], list[RepairResult]]
SYNTH_REPAIRS: Registry[SynthRepair] = Registry("synthetic repair")


def register_synth_repair(name: str) -> Callable[[SynthRepair], SynthRepair]:
    """Register a synthetic repair under ``name`` (a decorator); duplicate names are refused."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"repair name must be letters, digits and underscores, got {name!r}")
    return SYNTH_REPAIRS.decorator(name)


def get_synth_repair(name: str) -> SynthRepair:
    """The registered repair ``name``; an unknown name is answered with the closest ones."""
    try:
        return SYNTH_REPAIRS.get(name)
    except KeyError as err:
        raise ValueError(err.args[0]) from None


def synth_repair_names() -> tuple[str, ...]:
    return tuple(SYNTH_REPAIRS)


def _modal_arrays(run: Path, ids: Sequence[str], collapser: Collapser,
                  ) -> tuple[np.ndarray, np.ndarray]:
    judged = JudgedRun.from_store(RunStore.open(run), collapser, "modal_share", ids=ids)
    return judged.confidence, judged.correct


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
    metrics = ctx.judge(conf, corr)
    return RepairResult.of(method, metrics, ctx.verdict(conf, corr), detail)


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
    return [RepairResult.of(r.method, r.heldout, r.verdict, r.detail) for r in fitted.results]


@register_synth_repair("sampling_temperature")
def sampling_temperature_repair(ctx: RepairContext) -> list[RepairResult]:
    """The model's own sampling temperature, chosen on the calibration half by the log loss of
    the modal share (:func:`recal.sampling_temperature.choose_temperature`).

    A run recorded with a temperature grid is refitted as ``recal fit`` and ``recal bench``
    refit it (:mod:`recal.repairs.sampling`: importance reweighting, thin estimates refused).
    Otherwise (the synthetic model samples cheaply) each grid temperature is sampled for real
    on the calibration half, and the held-out half is resampled at the chosen T.
    """
    store = RunStore.open(ctx.run)
    if temperature_grid(store.manifest):
        return [_reweighted_temperature(ctx, store)]

    def resampled(tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if tau == 1.0:  # the measured run already holds T = 1
            conf, corr = _modal_arrays(ctx.run, ctx.calibration_ids, ctx.collapser)
        else:
            conf, corr = _sample_modal(ctx, ctx.model, ctx.calibration_ids, tau,
                                       ctx.out / f"{ctx.name}-T{tau:g}-calibration")
        return conf, corr, np.full(len(conf), float(ctx.n_samples))  # real samples: ESS = M

    fit = choose_temperature(resampled, tau_grid=ctx.tau_grid, tau0=1.0, min_ess=ctx.min_ess)
    detail = {"tau": fit.tau_, "estimate": "resampled", "fit_table": fit.table}
    if fit.tau_ == 1.0:
        reference, _ = ctx.reference()
        return [RepairResult.of("sampling_temperature", reference,
                                "keeps the sampled temperature (no repair)", detail)]
    return [judge_model(ctx, "sampling_temperature", ctx.model, temperature=fit.tau_,
                        detail=detail)]


def _reweighted_temperature(ctx: RepairContext, store: RunStore) -> RepairResult:
    """The sampling-temperature repair of :mod:`recal.repairs` on the context's split."""
    from recal.repairs import REPAIR_METHODS, RepairTask

    judged = JudgedRun.from_store(store, ctx.collapser, "modal_share",
                                  split=Split.random(0.5, ctx.seed),
                                  n_resamples=ctx.n_resamples, seed=ctx.seed)
    if tuple(judged.heldout_ids) != ctx.heldout_ids:
        raise RuntimeError(f"{store.path} splits differently from the synthetic repairs: their "
                           "held-out figures would not be comparable")
    method = REPAIR_METHODS.get("sampling_temperature")
    outcome = method.run(RepairTask(judged, min_ess=ctx.min_ess))
    if outcome is None:
        raise RuntimeError(f"{store.path}: the sampling-temperature refit did not apply")
    detail = {**outcome.detail, "fit_table": (outcome.state or {}).get("table", [])}
    if outcome.unchanged:
        return RepairResult.of("sampling_temperature", judged.heldout_metrics(),
                               "keeps the sampled temperature (no repair)", detail)
    metrics = judged.judge(outcome.confidence, outcome.correct)
    return RepairResult.of("sampling_temperature", metrics,
                           ctx.verdict(outcome.confidence, outcome.correct), detail)
