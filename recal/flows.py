"""The flows a recipe can run (``recal run recipes/NAME.yaml``), each a config dataclass.

==============  ===============================  ===========================================
flow            config                           what it does
==============  ===============================  ===========================================
measure         :class:`MeasureFlow`             sample a model, measure it, write a report
recalibrate     :class:`RecalibrateFlow`         sample, fit every repair, export a scorer
synth           :class:`SynthFlow`               the synthetic reproduction (``recal synth``)
bench           :class:`BenchFlow`               ``recal bench``
==============  ===============================  ===========================================

Every flow writes into its ``out`` folder and returns it; all work goes through resumable run
stores, so running a recipe again reuses what is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from recal.bench import BenchConfig
from recal.measure import MeasureConfig
from recal.registry import Registry
from recal.repair import FitConfig
from recal.samples import SamplingConfig
from recal.synthetic.experiment import SynthConfig

__all__ = ["FlowSpec", "FLOWS", "MeasureFlow", "RecalibrateFlow", "SynthFlow", "BenchFlow",
           "ModelSection", "run_flow"]


@dataclass(frozen=True)
class ModelSection:
    """Which model answers, and through which backend."""

    name: str = "smollm2-135m-instruct"
    """Packaged name, .gguf file, folder, hub id, or a served model's name (http backend)."""
    kind: Literal["chat", "base"] | None = None
    """Force chat or base prompting (default: from the model)."""
    backend: Literal["transformers", "http", "vllm"] | None = None
    """None: 'http' when name is a server URL (http://HOST:PORT/v1), else 'transformers'."""
    options: dict[str, Any] = field(default_factory=dict)
    """Backend options (for 'http': served_model, concurrency, timeout, ...; the API key comes
    from $RECAL_API_KEY or $OPENAI_API_KEY, so that recipes hold no secrets)."""

    def load(self) -> Any:
        from recal.models import load_backend

        return load_backend(self.name, backend=self.backend, kind=self.kind, **self.options)


@dataclass(frozen=True)
class DataSection:
    """Which questions."""

    name: str = "builtin"
    """'builtin', a named public set, or a .jsonl/.csv/.json file."""
    data_dir: str | None = None
    """Folder with local copies of the named sets (default: $RECAL_DATA_DIR)."""
    limit: int | None = None
    """Use the first N questions."""

    def load(self) -> list[Any]:
        from recal.data.loaders import load_questions

        return load_questions(self.name, data_dir=self.data_dir, limit=self.limit)


@dataclass(frozen=True)
class SampledFlow:
    """What every flow that samples a model names: model, questions, style and sampling."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    style: Literal["concise", "sentence", "cot"] = "concise"
    shots: int | None = None
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(n_samples=20))
    progress: bool = True


@dataclass(frozen=True)
class MeasureFlow(SampledFlow):
    """Sample a model on a question set and write a calibration report."""

    measure: MeasureConfig = field(default_factory=MeasureConfig)
    out: str = "runs/recipe-measure"


@dataclass(frozen=True)
class RecalibrateFlow(SampledFlow):
    """Sample (recording a temperature grid), fit every repair, export the chosen scorer."""

    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(
        n_samples=20, tau_grid=(0.5, 0.7, 0.85, 1.0, 1.2, 1.5)))
    fit: FitConfig = field(default_factory=FitConfig)
    export: str | None = "best"
    """The method to export: a name, 'best' (lowest held-out smooth ECE among those judged
    good), or null to export nothing."""
    out: str = "runs/recipe-recalibrate"


@dataclass(frozen=True)
class SynthFlow(SynthConfig):
    """The synthetic reproduction: :class:`recal.synthetic.SynthConfig`'s fields, plus ``out``."""

    out: str = "runs/synth"

    def __post_init__(self) -> None:
        # SynthConfig's checks, on its own fields only (``out`` is not one of its sizes).
        checked = self.synth_config()
        for f in fields(SynthConfig):
            object.__setattr__(self, f.name, getattr(checked, f.name))
        if not self.out:
            raise ValueError("out is empty: name the folder the report goes in")

    def synth_config(self) -> SynthConfig:
        return SynthConfig(**{f.name: getattr(self, f.name) for f in fields(SynthConfig)})


@dataclass(frozen=True)
class BenchFlow(BenchConfig):
    """``recal bench``: :class:`recal.bench.BenchConfig`'s fields, plus where RESULTS.md goes."""

    results_md: str | None = None
    """Also write the headline tables to this Markdown file (benchmarks/RESULTS.md)."""
    synth: SynthConfig | None = None
    """Also run the synthetic reproduction and put its table in results_md."""


@dataclass(frozen=True)
class FlowSpec:
    config: type
    run: Callable[[Any], Path]
    help: str


FLOWS: Registry[FlowSpec] = Registry("flow")


def _sample(flow: SampledFlow, out: Path) -> Any:
    from recal.sampling import sample_run

    return sample_run(flow.model.load(), flow.data.load(), out=out, config=flow.sampling,
                      style=flow.style, shots=flow.shots, dataset=flow.data.name,
                      progress=flow.progress)


def run_measure(flow: MeasureFlow) -> Path:
    from recal.measure import measure_run, write_report

    out = Path(flow.out)
    store = _sample(flow, out)
    report = measure_run(store, flow.measure)
    return write_report(report, out / "report")


def run_recalibrate(flow: RecalibrateFlow) -> Path:
    import json

    from recal.repair import export_scorer, fit_methods

    out = Path(flow.out)
    store = _sample(flow, out)
    report = fit_methods(store, flow.fit)
    (out / "fit.json").write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True,
                                             default=float) + "\n")
    if flow.export is None:
        return out
    method = flow.export
    if method == "best":
        good = [r for r in report.results if r.verdict == "good" and r.recalibrator is not None]
        if not good:
            raise ValueError(f"no repair was judged good on {store.path}; see fit.json, or name "
                             "the method to export")
        method = min(good, key=lambda r: r.heldout["smooth_ece"].estimate).method
    export_scorer(store, method, flow.fit).save(out / "scorer")
    return out


def run_synth(flow: SynthFlow) -> Path:
    from recal.synthetic.experiment import run_synthetic

    run_synthetic(flow.synth_config(), out=flow.out)  # writes its report into out
    return Path(flow.out)


def run_bench_flow(flow: BenchFlow) -> Path:
    from recal.bench import run_bench, write_bench_report

    config = BenchConfig(**{f.name: getattr(flow, f.name) for f in fields(BenchConfig)})
    report = run_bench(config)
    out = write_bench_report(report)
    if flow.results_md:
        from recal.results import write_results

        synth_dir = None
        if flow.synth is not None:
            from recal.synthetic.experiment import run_synthetic

            synth_dir = Path(flow.out) / "synth"
            run_synthetic(flow.synth, out=synth_dir)  # writes synth_report.md there
        write_results(report, flow.results_md, synth_dir=synth_dir)
    return out


FLOWS.register("measure", FlowSpec(MeasureFlow, run_measure, MeasureFlow.__doc__ or ""))
FLOWS.register("recalibrate", FlowSpec(RecalibrateFlow, run_recalibrate,
                                       RecalibrateFlow.__doc__ or ""))
FLOWS.register("synth", FlowSpec(SynthFlow, run_synth, SynthFlow.__doc__ or ""))
FLOWS.register("bench", FlowSpec(BenchFlow, run_bench_flow, BenchFlow.__doc__ or ""))


def run_flow(recipe: Any) -> Path:
    """Run a loaded :class:`recal.recipes.Recipe`."""
    return FLOWS.get(recipe.flow).run(recipe.config)
