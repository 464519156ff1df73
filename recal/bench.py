"""``recal bench``: every confidence scorer x every repair method, on the same samples.

For each model and dataset the bench samples once (a resumable run store under ``out/runs``; a
second run reuses it), classifies the answers, and for every confidence scorer fits every repair
method on a calibration split and judges it on the held-out rest, with bootstrap intervals. Peer
baselines (netcal's and scikit-learn's recalibrators) run on the same scores beside recal's. With
two or more datasets it also fits on one and judges on another (transfer). It writes

    out/bench.json            every figure, with the config that produced it
    out/bench.md              the tables a person reads
    out/reliability-<m>.png   one figure per method: a diagram per model x dataset

    report = run_bench(BenchConfig(models=("smollm2-135m-instruct",), datasets=("builtin",)))
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recal.bench_report import markdown_tables, transfer_table, write_bench_report
from recal.calibrators import CalibrationWarning, DegenerateSplitError
from recal.confidence import SCORERS, Classified, classify_run, get_scorer
from recal.judged import JudgedRun, Split, paired_verdict
from recal.metrics import BootstrapResult
from recal.models.base import Backend
from recal.repairs import (
    REPAIR_METHODS,
    RepairOutcome,
    RepairTask,
    default_methods,
    selection_brier,
)
from recal.runstore import RunStore
from recal.samples import SamplingConfig
from recal.semantic.base import get_collapser

__all__ = ["BenchConfig", "BenchRow", "TransferRow", "BenchReport", "run_bench",
           "write_bench_report", "markdown_tables", "transfer_table", "DEFAULT_BENCH_METHODS",
           "DEFAULT_PEERS"]

DEFAULT_BENCH_METHODS = default_methods("post-hoc", "sampling")
DEFAULT_PEERS = default_methods("peer")
DEFAULT_BENCH_SCORERS = ("modal_share", "heldout_modal", "semantic_entropy", "greedy_likelihood")
# Sets whose answers are numbers are collapsed by value; the rest by normalised text.
DATASET_COLLAPSE = {"gsm8k": "numeric"}
_COSTS = "costs.json"


def _default_sampling() -> SamplingConfig:
    return SamplingConfig(n_samples=20, tau_grid=(0.5, 0.7, 1.0, 1.4))


@dataclass(frozen=True)
class BenchConfig:
    """What ``recal bench`` compares, and on what."""

    models: tuple[str, ...] = ("smollm2-135m-instruct",)
    """Models to sample: packaged names, .gguf files, folders (see ``recal models``)."""
    datasets: tuple[str, ...] = ("builtin",)
    """Question sets: 'builtin', named public sets (local copies under data_dir) or files."""
    limit: int | None = 200
    """The first N questions of each dataset (None: all)."""
    data_dir: str | None = None
    """Folder with local copies of the named sets (default: $RECAL_DATA_DIR)."""
    missing_datasets: Literal["skip", "error"] = "skip"
    """A named set with no local copy (and no hub): leave it out with a note, or stop."""
    style: Literal["concise", "sentence", "cot"] = "concise"
    sampling: SamplingConfig = field(default_factory=_default_sampling)
    """How answers are drawn (M, T, tau grid for the sampling-temperature repair, seed)."""
    collapse: str | None = None
    """The collapsing function; None: 'numeric' for GSM8K, 'normalized' for the rest."""
    scorers: tuple[str, ...] = DEFAULT_BENCH_SCORERS
    methods: tuple[str, ...] = DEFAULT_BENCH_METHODS
    """recal's repairs (:data:`recal.repairs.REPAIR_METHODS`): post-hoc recalibrators,
    'sampling_temperature', LoRA methods ('lora:amortised', ...); default: every default
    post-hoc and sampling entry."""
    peers: tuple[str, ...] = DEFAULT_PEERS
    """Peer baselines from netcal and scikit-learn, fitted on the same scores (the registry's
    default peer entries)."""
    tuning: dict[str, Any] = field(default_factory=dict)
    """Settings of the LoRA methods (fields of :mod:`recal.tuning`'s configs: max_epochs,
    train_layers, learning_rate, eval_samples, ...); each method takes the ones its config has.
    The split comes from calibration_fraction and seed below."""
    tuning_datasets: tuple[str, ...] | None = None
    """Datasets the LoRA methods train on (None: every one). Training takes minutes per model
    and dataset on a CPU."""
    calibration_fraction: float = 0.5
    """Share of each set's questions the methods are fitted on; the rest judges them."""
    min_ess: float = 5.0
    """The sampling-temperature refit refuses a temperature whose median effective sample size
    is below this (as ``recal fit``'s ``min_ess``)."""
    transfer: bool = True
    """With two or more datasets: fit on each, judge on every other."""
    n_resamples: int = 1000
    """Bootstrap resamples per interval."""
    seed: int = 0
    """Seeds the split and the bootstrap (the sampler has its own, in sampling)."""
    diagrams: bool = True
    """Draw one reliability figure per method (needs matplotlib)."""
    progress: bool = True
    out: str = "runs/bench"

    def __post_init__(self) -> None:
        for name in ("models", "datasets", "scorers", "methods", "peers"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.models:
            raise ValueError("models is empty: name at least one model")
        if not self.datasets:
            raise ValueError("datasets is empty: name at least one dataset")
        if not self.scorers:
            raise ValueError("scorers is empty: name at least one confidence scorer")
        if not self.methods and not self.peers:
            raise ValueError("methods and peers are both empty: name something to compare")
        for group in ("models", "datasets", "scorers", "methods", "peers"):
            values = getattr(self, group)
            dup = next((v for v in values if values.count(v) > 1), None)
            if dup is not None:
                raise ValueError(f"{group} names {dup!r} twice")
        for name in self.scorers:
            SCORERS.get(name)  # did-you-mean KeyError before any sampling
        for name in (*self.methods, *self.peers):
            REPAIR_METHODS.get(name)
        if self.collapse is not None:
            get_collapser(self.collapse)
        if self.limit is not None and self.limit < 4:
            raise ValueError(f"limit must be at least 4 (a split needs questions on both "
                             f"sides), got {self.limit}")
        if not 0 < self.calibration_fraction < 1:
            raise ValueError(f"calibration_fraction must be in (0, 1), got "
                             f"{self.calibration_fraction}")
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be positive, got {self.n_resamples}")
        _check_tuning(self)

    def collapse_for(self, dataset: str) -> str:
        return self.collapse or DATASET_COLLAPSE.get(Path(dataset).stem.lower(), "normalized")

    def tuning_for(self, dataset: str) -> dict[str, Any]:
        """The LoRA methods' settings on ``dataset`` (the bench's split and bootstrap size)."""
        return {"calibration_fraction": self.calibration_fraction, "seed": self.seed,
                "n_resamples": self.n_resamples, "collapse": self.collapse_for(dataset),
                **self.tuning}


def _check_tuning(config: BenchConfig) -> None:
    import difflib

    from recal.tuning.config import TUNING_CONFIGS, TUNING_SETTINGS, config_for

    object.__setattr__(config, "tuning", dict(config.tuning))
    owned = {"calibration_fraction", "seed", "collapse"}  # the bench's, so rows compare
    for key in config.tuning:
        if key in owned:
            raise ValueError(f"tuning.{key} is set by the bench (its {key}), not per method")
        if key not in TUNING_SETTINGS:
            close = difflib.get_close_matches(key, sorted(TUNING_SETTINGS - owned), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"tuning has an unknown setting {key!r}{hint}")
    if config.tuning:  # a bad value fails now, not after sampling
        for method in TUNING_CONFIGS:
            config_for(method, config.tuning)
    if config.tuning_datasets is not None:
        object.__setattr__(config, "tuning_datasets", tuple(config.tuning_datasets))
        stray = [d for d in config.tuning_datasets if d not in config.datasets]
        if stray:
            raise ValueError(f"tuning_datasets names {stray} that datasets does not")


@dataclass
class BenchRow:
    """One method on one scorer's confidence, for one model and dataset, judged held out."""

    model: str
    dataset: str
    scorer: str
    method: str
    family: str
    heldout: dict[str, BootstrapResult] | None
    accuracy_before: float
    fit_seconds: float
    sequences_per_question: float
    """Sequences the model decodes per question to score one (sampled + greedy + asked)."""
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    arrays: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    """The held-out (confidence, correct) the metrics came from (not written to JSON)."""

    def error_text(self) -> str:
        """The error as tables show it: a refused fit says why ("not fitted: ..."), anything else
        is a failure."""
        error = self.error or ""
        return error if error.startswith("not fitted") else f"failed: {error}"

    def estimate(self, metric: str) -> float:
        return float("nan") if self.heldout is None else self.heldout[metric].estimate


@dataclass
class TransferRow:
    """Fit on ``source``'s calibration split, judge on ``target``'s held-out split."""

    model: str
    scorer: str
    method: str
    source: str
    target: str
    unrepaired: float
    in_domain: float
    transferred: float

    @property
    def survival(self) -> float:
        """Share of the in-domain improvement in smooth ECE that survives the shift (1: all,
        0: none, < 0: worse than no repair); nan when in-domain repair gains under 0.01."""
        gain = self.unrepaired - self.in_domain
        return (self.unrepaired - self.transferred) / gain if gain > 0.01 else float("nan")


@dataclass
class BenchReport:
    config: BenchConfig
    rows: list[BenchRow] = field(default_factory=list)
    transfer: list[TransferRow] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per model/dataset: run folder, questions, sampling seconds, answers."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Datasets left out, with the reason."""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "runs": self.runs, "skipped": self.skipped, "seconds": self.seconds,
            "rows": [{**{k: v for k, v in asdict(r).items() if k not in ("heldout", "arrays")},
                      "heldout": ({k: asdict(v) for k, v in r.heldout.items()}
                                  if r.heldout else None)} for r in self.rows],
            "transfer": [{**asdict(t), "survival": t.survival} for t in self.transfer],
        }


# --------------------------------------------------------------------------- sampling


def _run_name(model: str, dataset: str, questions: list[Any], config: BenchConfig) -> str:
    """A readable run folder name ending in a digest of everything that changes the samples: the
    model as named (a server URL in full, a local file or folder with its size and time), the
    questions' hash, every sampling setting and the style. Another setting is another folder;
    a resumed folder is still checked against its manifest (the model's weights included) by
    :func:`recal.sampling.sample_run`."""
    from urllib.parse import urlparse

    from recal.data.records import questions_hash

    if "://" in model:
        url = urlparse(model)
        stem = f"{url.hostname}-{url.port or ''}".strip("-")
    else:
        stem = Path(model).stem if model.endswith(".gguf") else Path(model).name
    data = Path(dataset).stem if dataset.endswith((".jsonl", ".json", ".csv")) else dataset
    where = Path(model)
    local = [where.stat().st_size, where.stat().st_mtime_ns] if where.exists() else None
    key = {"model": model, "local": local, "questions": questions_hash(questions),
           "sampling": config.sampling.identity(), "style": config.style}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    m = config.sampling.n_samples
    return f"{stem}-{data}{config.limit or ''}-{config.style}-m{m}-{digest}"


def _costs(out: Path) -> dict[str, Any]:
    path = out / _COSTS
    return json.loads(path.read_text()) if path.exists() else {}


def _add_sampling_time(out: Path, run: str, seconds: float, answers: int) -> None:
    costs = _costs(out)
    entry = costs.setdefault(run, {"sampling_seconds": 0.0, "answers": 0})
    entry["sampling_seconds"] += seconds
    entry["answers"] += answers
    tmp = out / (_COSTS + ".tmp")
    tmp.write_text(json.dumps(costs, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / _COSTS)


class _Models:
    """Loads each model once, on first need (a fully stored run needs none)."""

    def __init__(self, loader: Callable[[str], Backend]) -> None:
        self._loader = loader
        self._loaded: dict[str, Backend] = {}

    def get(self, name: str) -> Backend:
        if name not in self._loaded:
            for other in list(self._loaded):  # one model in memory at a time
                self._loaded.pop(other).close()
            self._loaded[name] = self._loader(name)
        return self._loaded[name]

    def close(self) -> None:
        for backend in self._loaded.values():
            backend.close()
        self._loaded.clear()


def _sample(model: str, dataset: str, questions: list[Any], config: BenchConfig,
            models: _Models, out: Path) -> RunStore:
    from recal.sampling import sample_run

    name = _run_name(model, dataset, questions, config)
    path = out / "runs" / name
    if (path / "manifest.json").exists():
        store = RunStore.open(path)
        if len(store.done_ids()) == len(questions):
            return store  # everything stored: no model load at all
    backend = models.get(model)
    resolved = config.sampling.resolved(config.style, chat=backend.is_chat)
    done_before = len(RunStore.open(path).done_ids()) if (path / "manifest.json").exists() else 0
    start = time.perf_counter()
    try:
        store = sample_run(backend, questions, out=path, config=config.sampling,
                           style=config.style, dataset=dataset, progress=config.progress)
    finally:
        done_now = (len(RunStore.open(path).done_ids())
                    if (path / "manifest.json").exists() else 0)
        per_q = resolved.n_samples + int(resolved.greedy)
        _add_sampling_time(out, name, time.perf_counter() - start,
                           (done_now - done_before) * per_q)
    return store


# --------------------------------------------------------------------------- the bench


def _sequences(scorer: str, m: int, greedy: bool) -> float:
    if scorer == "greedy_likelihood":
        return 1.0
    if scorer in ("verbalized", "p_true"):
        return float(m + int(greedy) + 1)  # samples for the answer, one more pass to ask
    return float(m)


def run_bench(config: BenchConfig | None = None, *,
              loader: Callable[[str], Backend] | None = None) -> BenchReport:
    """Sample, score, repair and judge everything ``config`` names; see the module docstring.

    ``loader`` turns a model name into a backend (default: :func:`recal.models.load_backend`).
    """
    from recal.data.loaders import load_questions
    from recal.grades import require_grades

    config = config or BenchConfig()
    start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if loader is None:
        from recal.models import load_backend
        loader = load_backend
    models = _Models(loader)
    report = BenchReport(config)

    sets: dict[str, list[Any]] = {}
    for dataset in config.datasets:
        try:
            sets[dataset] = load_questions(dataset, data_dir=config.data_dir, limit=config.limit)
        except RuntimeError as err:  # a named set with neither a local copy nor the hub
            if config.missing_datasets == "error":
                raise
            report.skipped[dataset] = str(err)
            continue
        require_grades(sets[dataset], f"dataset {dataset!r}", "the bench")  # before sampling
        if len(sets[dataset]) < 4:
            raise ValueError(f"dataset {dataset!r} has {len(sets[dataset])} questions; the "
                             "bench needs at least 4 to split")
    if not sets:
        raise ValueError("none of the datasets could be loaded: " + "; ".join(
            f"{k}: {v}" for k, v in report.skipped.items()))

    cells: dict[tuple[str, str], dict[str, RepairTask]] = {}
    try:
        for model in config.models:
            for dataset, questions in sets.items():
                store = _sample(model, dataset, questions, config, models, out)
                run = _run_name(model, dataset, questions, config)
                cost = _costs(out).get(run, {})
                report.runs[f"{model}/{dataset}"] = {
                    "run": str(store.path), "questions": len(questions),
                    "sampling_seconds": cost.get("sampling_seconds"),
                    "answers": cost.get("answers")}
                cells[(model, dataset)] = _judge_cell(model, dataset, store, config, models,
                                                      report)
        if config.transfer and len(sets) > 1:
            _transfer(cells, config, report)
    finally:
        models.close()
    report.seconds = time.perf_counter() - start
    return report


def _judge_cell(model: str, dataset: str, store: RunStore, config: BenchConfig, models: _Models,
                report: BenchReport) -> dict[str, RepairTask]:
    import warnings

    collapser = get_collapser(config.collapse_for(dataset))
    items: list[Classified] = classify_run(store, collapser)
    sampling = store.manifest["sampling"]
    out: dict[str, RepairTask] = {}
    for scorer_name in config.scorers:
        backend = models.get(model) if get_scorer(scorer_name).needs_backend else None
        judged = JudgedRun.from_items(items, collapser, scorer_name, backend=backend,
                                      split=Split.random(config.calibration_fraction,
                                                         config.seed),
                                      n_resamples=config.n_resamples, seed=config.seed,
                                      store=store)
        task = RepairTask(judged, model=model, dataset=dataset,
                          load_backend=lambda m=model: models.get(m),
                          workdir=Path(config.out) / "tuned" / store.path.name,
                          tuning=config.tuning_for(dataset), progress=config.progress,
                          min_ess=config.min_ess)
        out[scorer_name] = task
        sequences = _sequences(scorer_name, int(sampling["n_samples"]),
                               bool(sampling.get("greedy")))
        accuracy_before = float(judged.heldout()[1].mean())
        for method_name in (*config.methods, *config.peers):
            method = REPAIR_METHODS.get(method_name)
            if (method.family == "lora" and config.tuning_datasets is not None
                    and dataset not in config.tuning_datasets):
                continue
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():  # tiny or one-class splits: the row shows it
                    warnings.simplefilter("ignore", CalibrationWarning)
                    outcome: RepairOutcome | None = method.run(task)
            except Exception as err:  # one failing peer must not sink the bench
                reason = (str(err) if isinstance(err, DegenerateSplitError)
                          else f"{type(err).__name__}: {err}")
                report.rows.append(BenchRow(
                    model, dataset, scorer_name, method_name, method.family, None,
                    accuracy_before, time.perf_counter() - t0, sequences, error=reason))
                continue
            seconds = time.perf_counter() - t0
            if outcome is None:  # does not apply to this scorer (say why in the detail)
                continue
            outcome.detail["selection_brier"] = selection_brier(method, task)
            if method_name != "identity":  # paired: the same resamples of the same questions
                outcome.detail["verdict"] = paired_verdict(
                    judged.compare(outcome.confidence, outcome.correct))
            task.heldout_confidence[method_name] = outcome.confidence
            task.heldout_correct[method_name] = outcome.correct
            report.rows.append(BenchRow(
                model, dataset, scorer_name, method_name, method.family,
                judged.judge(outcome.confidence, outcome.correct), accuracy_before,
                seconds, sequences * outcome.sequences_factor + outcome.extra_sequences,
                detail=outcome.detail, arrays=(outcome.confidence, outcome.correct)))
    return out


def _transfer(cells: dict[tuple[str, str], dict[str, RepairTask]], config: BenchConfig,
              report: BenchReport) -> None:
    import warnings

    from recal.metrics import smooth_ece

    scorer = config.scorers[0]
    for method_name in (*config.methods, *config.peers):
        method = REPAIR_METHODS.get(method_name)
        if not method.transferable:
            continue
        for (model, source), by_scorer in cells.items():
            for (model2, target), by_scorer2 in cells.items():
                if model2 != model or target == source:
                    continue
                src, tgt = by_scorer[scorer], by_scorer2[scorer]
                if method_name not in tgt.heldout_confidence:
                    continue
                try:
                    with warnings.catch_warnings():  # as in the cell's own fit
                        warnings.simplefilter("ignore", CalibrationWarning)
                        conf = method.transfer(src, tgt)
                except Exception:  # noqa: BLE001 - a failed fit is already a row's error
                    continue
                held_conf, held = tgt.judged.heldout()
                report.transfer.append(TransferRow(
                    model, scorer, method_name, source, target,
                    unrepaired=smooth_ece(held_conf, held),
                    in_domain=smooth_ece(tgt.heldout_confidence[method_name],
                                         tgt.heldout_correct[method_name]),
                    transferred=smooth_ece(conf, held)))
