"""The synthetic reproduction end to end: world -> base model -> RL / DPO models -> measurement.

    from recal.synthetic import SynthConfig, run_synthetic
    report = run_synthetic(SynthConfig(reduced=True), "runs/synth")

Every model is measured with recal's own pipeline: ``sample_run`` (M answers per question at
T = 1 into a run store under ``out/runs``), ``measure_run`` (the ``normalized`` collapsing
function, modal-share and held-out modal-share confidence, bootstrap intervals). Because the
world's truth is known, the report adds

- the **true calibration error**: smooth ECE of the confidence against the true probability that
  the predicted (modal) class is right, ``p_true(modal class)``, instead of against the 0/1
  outcome of one realised gold answer (the same kernel maths, with fractional targets);
- the **sampling-noise floor**: the smooth ECE that a perfectly calibrated model (one that
  samples from the true distributions) gets at the same M on the same questions and golds,
  simulated directly, as a mean and a 95% range over repeats;
- how the sampled estimate moves with M (10, 20, 50) against the true error.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recal import __version__
from recal.confidence import Classified
from recal.measure import MeasureConfig, measure_run
from recal.metrics import smooth_ece
from recal.metrics.smooth import smooth_ece_unchecked
from recal.samples import SamplingConfig
from recal.sampling import sample_run
from recal.semantic.base import Collapser, get_collapser
from recal.synthetic.lora_repairs import LORA_REPAIRS
from recal.synthetic.model import (
    ModelConfig,
    TrainConfig,
    as_backend,
    build_tokenizer,
    count_parameters,
    make_model,
    train_lm,
)
from recal.synthetic.posttrain import DPOConfig, RLConfig, dpo_posttrain, rl_posttrain
from recal.synthetic.repairs import (
    DEFAULT_TAU_GRID,
    RepairContext,
    RepairResult,
    get_synth_repair,
)
from recal.synthetic.world import SYNTH_STYLES, World, WorldConfig, make_world, prompt_text

__all__ = ["SynthConfig", "SynthRow", "SynthReport", "run_synthetic", "noise_floor",
           "true_calibration_error", "write_synth_report", "apply_repairs"]

_FULL: dict[str, Any] = dict(
    n_entities=150, corpus_per_question=20, hidden_size=256, intermediate_size=1536,
    num_hidden_layers=1, initializer_range=0.1, train_steps=1200, train_lr=4e-3,
    train_batch_size=64, train_warmup=30, train_group_by_prompt=False, rl_steps=40,
    dpo_steps=60, n_samples=50, n_resamples=1000, floor_repeats=200, styles=SYNTH_STYLES,
    tau_grid=DEFAULT_TAU_GRID,
    repair_methods=("posthoc", "sampling_temperature", *LORA_REPAIRS))
_REDUCED: dict[str, Any] = dict(
    n_entities=60, corpus_per_question=20, hidden_size=64, intermediate_size=128,
    num_hidden_layers=2, initializer_range=0.1, train_steps=400, train_lr=3e-3,
    train_batch_size=64, train_warmup=20, train_group_by_prompt=False, rl_steps=30,
    dpo_steps=40, n_samples=50, n_resamples=300, floor_repeats=100, styles=("concise",),
    tau_grid=(1.0, 1.5, 2.0, 3.0), repair_methods=("posthoc", "sampling_temperature"))


@dataclass(frozen=True)
class SynthConfig:
    """The synthetic reproduction. Fields left ``None`` take the full or reduced size."""

    reduced: bool = False
    """The test-sized run (one style, a smaller world and model; under a minute on 2 cores)."""
    n_entities: int | None = None
    """Entities in the world; each has 2 facts, so 2 questions per style."""
    corpus_per_question: int | None = None
    """Training answers per question and style (a multiple of 10 matches the truth exactly)."""
    styles: tuple[str, ...] | None = None
    """Styles the base model is trained and measured in; post-training uses 'concise'."""
    hidden_size: int | None = None
    intermediate_size: int | None = None
    """The MLP's inner width (None: the full or reduced default)."""
    num_hidden_layers: int | None = None
    num_attention_heads: int = 4
    initializer_range: float | None = None
    """Init std of the weights (see ``ModelConfig.initializer_range``)."""
    train_steps: int | None = None
    train_lr: float | None = None
    train_batch_size: int | None = None
    """Training texts per step (whole groups of one prompt's answers when
    ``train_group_by_prompt``)."""
    train_warmup: int | None = None
    train_group_by_prompt: bool | None = None
    """Run each prompt once for all its answers (``TrainConfig.group_by_prompt``: the same loss
    at about a third of the compute per text). Off in both default sizes: a step then sees few
    distinct prompts, and learning the world took many more steps (a 1.4M model had not learned
    it in 800 steps of 8 prompts x 10 answers)."""
    rl_steps: int | None = None
    rl_group_size: int = 8
    rl_lr: float = 1e-3
    dpo_steps: int | None = None
    dpo_beta: float = 0.1
    dpo_lr: float = 1e-3
    n_samples: int | None = None
    """M: sampled answers per question (T = 1, no truncation)."""
    m_sweep: tuple[int, ...] = (10, 20, 50)
    """Values of M at which the sampled estimate is compared with the true error."""
    n_resamples: int | None = None
    """Bootstrap resamples for every interval."""
    floor_repeats: int | None = None
    """Simulated repeats of the perfectly calibrated model for the noise floor."""
    seed: int = 0
    """Seeds the world, training, post-training, sampling and the bootstrap."""
    threads: int = 1
    """torch threads (the runs are small: one thread wastes least)."""
    diagrams: bool = True
    """Draw ``reliability.png`` (needs matplotlib)."""
    repairs: bool = True
    """Apply ``repair_methods`` to the models of ``repair_models``, each fitted on half the
    questions and judged on the other half."""
    repair_methods: tuple[str, ...] | None = None
    """Registered synthetic repairs (:mod:`recal.synthetic.repairs`), applied in this order.
    None: post-hoc maps, the sampling temperature and the three LoRA repairs
    (:mod:`recal.synthetic.lora_repairs`) in the full run; the reduced run leaves the LoRA ones
    out to stay under a minute."""
    repair_models: tuple[str, ...] = ("rl", "dpo")
    """Post-trained models the repairs are applied to ('rl', 'dpo')."""
    tau_grid: tuple[float, ...] | None = None
    """Sampling temperatures the ``sampling_temperature`` repair tries on the calibration half
    (None: ``recal.synthetic.repairs.DEFAULT_TAU_GRID``, a coarser grid in the reduced run)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("train_lr", "rl_lr", "dpo_lr", "dpo_beta", "initializer_range"):
                if value is None and f.name in ("train_lr", "initializer_range"):
                    continue
                if not (isinstance(value, int | float) and value > 0):
                    raise ValueError(f"{f.name} must be a positive number, got {value!r}")
            elif f.name in ("styles", "m_sweep", "reduced", "diagrams", "repairs",
                            "train_group_by_prompt",
                            "repair_methods", "repair_models", "tau_grid"):
                continue
            elif f.name == "seed":
                if not isinstance(value, int) or value < 0:
                    raise ValueError(f"seed must be a non-negative integer, got {value!r}")
            elif value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{f.name} must be a positive integer, got {value!r}")
        if self.styles is not None:
            object.__setattr__(self, "styles", tuple(self.styles))
            bad = [s for s in self.styles if s not in SYNTH_STYLES]
            if bad or not self.styles:
                raise ValueError(f"styles must be a non-empty subset of {SYNTH_STYLES}, "
                                 f"got {self.styles!r}")
            if "concise" not in self.styles:
                raise ValueError("styles must include 'concise' (post-training uses it)")
        object.__setattr__(self, "m_sweep", tuple(int(m) for m in self.m_sweep))
        if self.repair_methods is not None:
            object.__setattr__(self, "repair_methods", tuple(self.repair_methods))
            for name in self.repair_methods:
                get_synth_repair(name)  # unknown names fail now, with did-you-mean
        object.__setattr__(self, "repair_models", tuple(self.repair_models))
        bad = [m for m in self.repair_models if m not in ("rl", "dpo")]
        if bad:
            raise ValueError(f"repair_models must name 'rl' and/or 'dpo', got {bad!r}")
        if self.tau_grid is not None:
            object.__setattr__(self, "tau_grid", tuple(float(t) for t in self.tau_grid))
            if not self.tau_grid or any(not (t > 0 and math.isfinite(t))
                                        for t in self.tau_grid):
                raise ValueError(f"tau_grid must hold positive temperatures, "
                                 f"got {self.tau_grid!r}")
        if any(m < 1 for m in self.m_sweep):
            raise ValueError(f"m_sweep must hold positive integers, got {self.m_sweep!r}")

    def resolved(self) -> SynthConfig:
        """Every size filled in, from the reduced or full defaults."""
        sizes = _REDUCED if self.reduced else _FULL
        return replace(self, **{k: v for k, v in sizes.items() if getattr(self, k) is None})

    def model_config(self) -> ModelConfig:
        """The base model's shape (sizes from the full or reduced defaults where unset)."""
        cfg = self.resolved()
        hidden = cfg.hidden_size or 0
        return ModelConfig(hidden_size=hidden,
                           intermediate_size=cfg.intermediate_size or 2 * hidden,
                           num_hidden_layers=cfg.num_hidden_layers or 0,
                           num_attention_heads=cfg.num_attention_heads,
                           initializer_range=cfg.initializer_range or 0.1)

    def train_config(self) -> TrainConfig:
        """The base model's next-token training."""
        cfg = self.resolved()
        return TrainConfig(steps=cfg.train_steps or 0, lr=cfg.train_lr or 0.0,
                           batch_size=cfg.train_batch_size or 0, warmup=cfg.train_warmup or 0,
                           group_by_prompt=bool(cfg.train_group_by_prompt), seed=cfg.seed)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> SynthConfig:
        """From a plain mapping (a recipe); unknown keys are refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(row) - known)
        if unknown:
            raise ValueError(f"unknown SynthConfig field(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        row = dict(row)
        for key in ("styles", "m_sweep", "repair_methods", "repair_models", "tau_grid"):
            if row.get(key) is not None:
                row[key] = tuple(row[key])
        return cls(**row)


@dataclass
class SynthRow:
    """One model in one style: recal's measurement and the truth."""

    model: str
    style: str
    metrics: dict[str, dict[str, float]]
    """Every headline metric of modal-share confidence, with its bootstrap interval."""
    heldout_smooth_ece: dict[str, float]
    """Smooth ECE of held-out modal share (mode on one half of the samples, share on the other)."""
    true_calibration_error: float
    """Smooth ECE of the confidence against p_true(modal class)."""
    true_overconfidence: float
    """Mean of confidence - p_true(modal class): > 0 is overconfident."""
    sweep: dict[int, dict[str, float]] = field(default_factory=dict)
    """Per M: the sampled smooth ECE and the true calibration error at that M."""


@dataclass
class SynthReport:
    config: SynthConfig
    rows: list[SynthRow]
    noise_floor: dict[int, dict[str, float]]
    """Per M: mean, low, high of a perfectly calibrated model's sampled smooth ECE."""
    training: dict[str, dict[str, float]]
    timings: dict[str, float]
    parameters: int
    repairs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """model -> repair method -> held-out smooth ECE (estimate, low, high), accuracy, verdict."""

    def row(self, model: str, style: str = "concise") -> SynthRow:
        for r in self.rows:
            if r.model == model and r.style == style:
                return r
        raise KeyError(f"no row for model {model!r} in style {style!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["recal_version"] = __version__
        return out


def _modal(labels: Sequence[str]) -> tuple[str, float]:
    """Modal class (ties to the class seen first, as recal's scorer breaks them) and share."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    best = max(counts.values())
    mode = next(lab for lab in labels if counts[lab] == best)
    return mode, best / len(labels)


def _true_by_label(item: Classified, collapser: Collapser) -> dict[str, float]:
    q = item.question
    out: dict[str, float] = {}
    for value, p in q.metadata["true_distribution"].items():
        label = collapser.label(q, value)
        out[label] = out.get(label, 0.0) + p
    return out


def true_calibration_error(confidence: np.ndarray, p_true: np.ndarray) -> float:
    """Smooth ECE (Błasiok & Nakkiran) with the fractional target p_true instead of 0/1."""
    return float(smooth_ece_unchecked(np.asarray(confidence, float),
                                     np.asarray(p_true, float))[0])


def noise_floor(world_questions: Sequence[Any], m: int, repeats: int,
                seed: int = 0) -> dict[str, float]:
    """Smooth ECE of a perfectly calibrated model's sampled modal share at M = ``m``.

    Each repeat draws ``m`` answers per question from its true distribution, takes the modal
    share as the confidence and scores it against the question's realised gold; returns the mean
    and the central 95% of the repeats.
    """
    rng = np.random.default_rng(seed)
    values = []
    dists = [(list(q.metadata["true_distribution"]), np.array(
        list(q.metadata["true_distribution"].values()))) for q in world_questions]
    golds = [q.metadata["gold"] for q in world_questions]
    for _ in range(repeats):
        conf, corr = [], []
        for (names, probs), gold in zip(dists, golds, strict=True):
            draws = rng.choice(len(names), size=m, p=probs / probs.sum())
            mode, share = _modal([names[d] for d in draws])
            conf.append(share)
            corr.append(float(mode == gold))
        values.append(smooth_ece(conf, corr))
    arr = np.array(values)
    return {"mean": float(arr.mean()), "low": float(np.quantile(arr, 0.025)),
            "high": float(np.quantile(arr, 0.975))}


def _measure(name: str, style: str, backend: Any, world: World, cfg: SynthConfig, out: Path,
             collapser: Collapser) -> tuple[SynthRow, np.ndarray, np.ndarray]:
    questions = world.questions(style)
    store = sample_run(backend, questions, out=out / "runs" / f"{name}-{style}",
                       config=SamplingConfig(n_samples=cfg.n_samples, seed=cfg.seed),
                       style=style, shots=0, dataset="synthetic", overwrite=True,
                       progress=False)
    report = measure_run(store, MeasureConfig(scorers=("modal_share", "heldout_modal"),
                                              n_resamples=cfg.n_resamples, seed=cfg.seed),
                         collapser=collapser)
    modal = report.results["modal_share"]
    conf, corr = modal.arrays()
    truth = [_true_by_label(item, collapser) for item in report.items]
    p_true = np.array([t.get(p.answer, 0.0) for t, p in zip(truth, modal.predictions,
                                                             strict=True)])
    sweep: dict[int, dict[str, float]] = {}
    for m in cfg.m_sweep:
        if m > cfg.n_samples:
            continue
        c, y, pt = [], [], []
        for item, t in zip(report.items, truth, strict=True):
            mode, share = _modal(item.labels[:m])
            c.append(share)
            y.append(float(collapser.is_correct(item.question, mode)))
            pt.append(t.get(mode, 0.0))
        sweep[m] = {"smooth_ece": smooth_ece(c, y),
                    "true_calibration_error": true_calibration_error(np.array(c), np.array(pt))}
    held = report.results["heldout_modal"].metrics["smooth_ece"]
    return SynthRow(
        model=name, style=style,
        metrics={k: asdict(v) for k, v in modal.metrics.items()},
        heldout_smooth_ece={"estimate": held.estimate, "low": held.low, "high": held.high},
        true_calibration_error=true_calibration_error(conf, p_true),
        true_overconfidence=float(np.mean(conf - p_true)),
        sweep=sweep,
    ), conf, corr


def run_synthetic(config: SynthConfig | None = None, out: str | Path = "runs/synth",
                  ) -> SynthReport:
    """Train the base, RL and DPO models of a synthetic world, measure each, write the report
    (``out/synth_report.md``, ``out/synth.json``, ``out/reliability.png``) and return it.

    The sampled runs are kept in ``out/runs/<model>-<style>`` (recal run stores: ``recal measure``
    and ``recal fit`` read them); each call retrains and overwrites them."""
    cfg = (config or SynthConfig()).resolved()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    collapser = get_collapser("normalized")

    world = make_world(WorldConfig(n_entities=cfg.n_entities, seed=cfg.seed))
    corpus = world.corpus(cfg.corpus_per_question, styles=cfg.styles, seed=cfg.seed)
    vocab_texts = corpus + [prompt_text(q.question) for s in cfg.styles
                            for q in world.questions(s)]
    tokenizer = build_tokenizer(vocab_texts)
    model = make_model(len(tokenizer), cfg.model_config(), seed=cfg.seed)
    base_fit = train_lm(model, tokenizer, corpus, cfg.train_config())
    timings["train_base_s"] = base_fit.seconds
    concise = world.questions("concise")
    rl = rl_posttrain(model, tokenizer, concise,
                      RLConfig(steps=cfg.rl_steps, group_size=cfg.rl_group_size, lr=cfg.rl_lr,
                               seed=cfg.seed), collapser=collapser)
    timings["train_rl_s"] = rl.seconds
    dpo = dpo_posttrain(model, tokenizer, concise,
                        DPOConfig(steps=cfg.dpo_steps, beta=cfg.dpo_beta, lr=cfg.dpo_lr,
                                  seed=cfg.seed))
    timings["train_dpo_s"] = dpo.seconds

    measured = []
    t0 = time.perf_counter()
    base_backend = as_backend(model, tokenizer, "synthetic-base")
    for style in cfg.styles:
        measured.append(_measure("base", style, base_backend, world, cfg, out, collapser))
    for name, fitted in (("rl", rl.model), ("dpo", dpo.model)):
        measured.append(_measure(name, "concise",
                                 as_backend(fitted, tokenizer, f"synthetic-{name}"),
                                 world, cfg, out, collapser))
    rows = [row for row, _, _ in measured]
    timings["measure_s"] = time.perf_counter() - t0
    if cfg.diagrams:
        t0 = time.perf_counter()
        _draw(measured, out / "reliability.png", cfg.seed)
        timings["diagrams_s"] = time.perf_counter() - t0

    repairs: dict[str, dict[str, dict[str, Any]]] = {}
    if cfg.repairs and cfg.repair_methods:
        t0 = time.perf_counter()
        post_trained = {"rl": rl.model, "dpo": dpo.model}
        for name in cfg.repair_models:
            ctx = _repair_context(name, post_trained[name], model, tokenizer, world, out, cfg,
                                  collapser)
            repairs[name] = {r.method: r.to_dict() for r in apply_repairs(ctx,
                                                                          cfg.repair_methods)}
        timings["repairs_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    floor = {m: noise_floor(concise, m, cfg.floor_repeats, seed=cfg.seed)
             for m in sorted({*cfg.m_sweep, cfg.n_samples}) if m <= cfg.n_samples}
    timings["noise_floor_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    report = SynthReport(
        config=cfg, rows=rows, noise_floor=floor,
        training={"base": {"first_loss": base_fit.first_loss, "final_loss": base_fit.final_loss},
                  "rl": {"first_reward": rl.first, "final_reward": rl.last},
                  "dpo": {"first_loss": dpo.first, "final_loss": dpo.last}},
        timings=timings, parameters=count_parameters(model), repairs=repairs)
    write_synth_report(report, out)
    return report


def _repair_context(name: str, fitted: Any, base: Any, tokenizer: Any, world: World,
                    out: Path, cfg: SynthConfig, collapser: Collapser) -> RepairContext:
    """The context of every repair of one post-trained model: its measured run and the one
    calibration / held-out split of its questions (``recal.repair``'s split at the same seed)."""
    from recal.calibrators import split_calibration

    ids = [q.id for q in world.questions("concise")]
    cal_idx, held_idx = split_calibration(len(ids), 0.5, cfg.seed)
    return RepairContext(
        name=name, model=fitted, base=base, tokenizer=tokenizer, world=world,
        run=out / "runs" / f"{name}-concise", out=out / "repairs",
        calibration_ids=tuple(ids[i] for i in cal_idx),
        heldout_ids=tuple(ids[i] for i in held_idx), collapser=collapser,
        n_samples=cfg.n_samples or 50, seed=cfg.seed, n_resamples=cfg.n_resamples or 1000,
        tau_grid=cfg.tau_grid or DEFAULT_TAU_GRID)


def apply_repairs(ctx: RepairContext, methods: Sequence[str]) -> list[RepairResult]:
    """Every registered repair of ``methods`` applied to one post-trained model, in order (the
    place where new repairs, such as the LoRA ones, join the synthetic reproduction)."""
    results: list[RepairResult] = []
    for method in methods:
        results += get_synth_repair(method)(ctx)
    return results


def _draw(measured: Sequence[tuple[SynthRow, np.ndarray, np.ndarray]], path: Path,
          seed: int) -> None:
    """One reliability diagram per (model, style), side by side (needs matplotlib)."""
    from recal.plots import reliability_data, save_reliability_grid

    panels = [(f"{row.model} ({row.style})", reliability_data(conf, corr, seed=seed))
              for row, conf, corr in measured]
    save_reliability_grid(panels, path, ncols=min(3, len(panels)))


def _ci(m: dict[str, float]) -> str:
    return f"{m['estimate']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def write_synth_report(report: SynthReport, out: str | Path) -> Path:
    """Write ``synth.json`` and ``synth_report.md`` into ``out``; returns the markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "synth.json").write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True,
                                               default=str) + "\n", encoding="utf-8")
    cfg = report.config
    m = cfg.n_samples
    floor = report.noise_floor[m]  # type: ignore[index]
    lines = [
        "# Synthetic world: semantic calibration of base and post-trained models", "",
        f"World: {cfg.n_entities} entities x 2 attributes = {2 * (cfg.n_entities or 0)} "
        f"questions per style, seed {cfg.seed}. Model: a {report.parameters:,}-parameter Llama "
        f"trained from scratch ({cfg.train_steps} steps). M = {m} samples at T = 1; collapsing "
        f"function `normalized`; confidence = modal share; {cfg.n_resamples} bootstrap "
        "resamples (95% intervals). Gold = the world's realised value, drawn from the true "
        "distribution.", "",
        "| model | style | smECE | ECE | accuracy | mean confidence | conf - acc | "
        "true calibration error | true overconfidence | held-out smECE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        gap = r.metrics["mean_confidence"]["estimate"] - r.metrics["accuracy"]["estimate"]
        lines.append(
            f"| {r.model} | {r.style} | {_ci(r.metrics['smooth_ece'])} | "
            f"{_ci(r.metrics['ece'])} | {_ci(r.metrics['accuracy'])} | "
            f"{_ci(r.metrics['mean_confidence'])} | {gap:+.3f} | "
            f"{r.true_calibration_error:.3f} | {r.true_overconfidence:+.3f} | "
            f"{_ci(r.heldout_smooth_ece)} |")
    lines += [
        "", f"Sampling-noise floor at M = {m} (a perfectly calibrated model's sampled smECE on "
        f"these questions and golds, {cfg.floor_repeats} repeats): mean {floor['mean']:.3f}, "
        f"95% range [{floor['low']:.3f}, {floor['high']:.3f}].", "",
        "## The sampled estimate against the truth, by M", "",
        "| model | style | M | sampled smECE | true calibration error | noise floor (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        for mm, v in sorted(r.sweep.items()):
            fl = report.noise_floor.get(mm, {}).get("mean", float("nan"))
            lines.append(f"| {r.model} | {r.style} | {mm} | {v['smooth_ece']:.3f} | "
                         f"{v['true_calibration_error']:.3f} | {fl:.3f} |")
    if report.repairs:
        lines += ["", "## Repairs of the post-trained models (fitted on half the questions, "
                  "judged on the other half)", "",
                  "| model | repair | held-out smECE | accuracy | verdict |",
                  "|---|---|---|---|---|"]
        for name, methods in report.repairs.items():
            for method, v in methods.items():
                label = method
                if "tau" in v:
                    label += f" (T = {v['tau']:g}, {v['estimate']})"
                elif "best_epoch" in v:  # a LoRA repair: its readout and training length
                    label += f" ({v['estimate']}, best epoch {v['best_epoch']} of {v['epochs']})"
                if not v["smooth_ece"]:  # refused to fit: the verdict says why
                    lines.append(f"| {name} | {label} | - | - | {v['verdict']} |")
                    continue
                lines.append(f"| {name} | {label} | {_ci(v['smooth_ece'])} | "
                             f"{v['accuracy']:.3f} | {v['verdict']} |")
    if (out / "reliability.png").exists() and cfg.diagrams:
        lines += ["", "![reliability diagrams](reliability.png)"]
    lines += ["", "## Training and time", ""]
    for name, values in report.training.items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    lines.append("- seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.timings.items()))
    path = out / "synth_report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

