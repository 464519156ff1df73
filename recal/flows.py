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

The command line is a thin caller of this module: ``recal sample`` and ``recal measure`` build a
:class:`SampledFlow` / :class:`MeasureFlow` and call :func:`sample_model` / :func:`run_measure`;
``recal fit`` writes its record with :func:`write_fit`; ``recal tune`` builds its config with
:func:`tuning_config`; ``recal serve`` opens its service with :func:`confidence_service`;
``recal synth``, ``recal run`` and ``recal bench`` run a flow of this table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from recal.bench import BenchConfig
from recal.measure import MeasureConfig
from recal.models.packaged import DEFAULT_MODEL
from recal.registry import Registry
from recal.repair import FitConfig
from recal.samples import SamplingConfig
from recal.strict_json import finite_json
from recal.synthetic.experiment import SynthConfig

__all__ = ["FlowSpec", "FLOWS", "SampledFlow", "MeasureFlow", "RecalibrateFlow", "SynthFlow",
           "BenchFlow", "ModelSection", "DataSection", "run_flow", "run_measure",
           "run_recalibrate", "run_synth", "run_bench_flow", "sample_model", "default_run_folder",
           "measure_stored", "usable_scorers",
           "server_options", "write_fit", "finite_json", "tuning_config", "confidence_service"]


@dataclass(frozen=True)
class ModelSection:
    """Which model answers, and through which backend."""

    name: str = DEFAULT_MODEL
    """Packaged name, .gguf file, folder, hub id, or a served model's name (http backend)."""
    kind: Literal["chat", "base"] | None = None
    """Force chat or base prompting (default: from the model)."""
    backend: str | None = None
    """A registered backend (``recal.models.BACKENDS``); None: chosen by
    :func:`recal.models.choose_backend` ('http' for a server URL, else 'transformers')."""
    options: dict[str, Any] = field(default_factory=dict)
    """Backend options (for 'http': served_model, concurrency, timeout, ...; the API key comes
    from $RECAL_API_KEY or $OPENAI_API_KEY, so that recipes hold no secrets)."""

    def __post_init__(self) -> None:
        from recal.models.backends import choose_backend

        choose_backend(self.name, self.backend)  # an unknown backend: did-you-mean, before work

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
    skip_bad: bool = False
    """Skip malformed rows of a dataset file (with a warning) instead of refusing the file."""

    def load(self) -> list[Any]:
        from recal.data.loaders import load_questions

        return load_questions(self.name, data_dir=self.data_dir, limit=self.limit,
                              skip_bad=self.skip_bad)


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
    report: str | None = None
    """The report folder (default: OUT/report)."""


@dataclass(frozen=True)
class RecalibrateFlow(SampledFlow):
    """Sample (recording a temperature grid), fit every repair, export the chosen scorer."""

    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(
        n_samples=20, tau_grid=(0.5, 0.7, 0.85, 1.0, 1.2, 1.5)))
    fit: FitConfig = field(default_factory=FitConfig)
    export: str | None = "best"
    """The method to export: a name, 'best' (the lowest Brier score of 5-fold cross-validation
    inside the calibration split: the held-out questions only judge the choice; refused when no
    repair beats the identity there), or null to export nothing."""
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


def default_run_folder(model: str, dataset: str, style: str, samples: int,
                       limit: int | None) -> Path:
    """``runs/<model>-<dataset><limit>-<style>-m<samples>``: the run folder ``recal sample``
    uses when given none (a server URL is named by its host and port)."""
    stem = Path(model).stem if model.endswith(".gguf") else Path(model).name
    if model.startswith(("http://", "https://")):  # a server: name it by host and port
        stem = "server-" + model.split("//", 1)[1].split("/", 1)[0].replace(":", "-")
    data = Path(dataset).stem if dataset.endswith((".jsonl", ".json", ".csv")) else dataset
    data += f"{limit}" if limit else ""
    return Path("runs") / f"{stem}-{data}-{style}-m{samples}"


def server_options(model: str, served_model: str | None, api_key: str | None,
                   concurrency: int, *, max_prompt_tokens: int | None = None,
                   dtype: str = "auto", max_memory: int | None = None) -> dict[str, Any]:
    """The backend options of ``model``: the http backend's when it is a server URL; for a
    model run in process, its ``max_prompt_tokens``, ``dtype`` and ``max_memory`` (a server
    bounds prompts, precision and memory itself). Options of the other kind are refused."""
    if model.startswith(("http://", "https://")):
        given = [name for name, value, unset in (
            ("--max-prompt-tokens", max_prompt_tokens, None), ("--dtype", dtype, "auto"),
            ("--max-memory", max_memory, None)) if value != unset]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(f"{', '.join(given)} {verb} to a model run in process; a server "
                             "(--model http://...) sets its own prompt limit, precision and "
                             "memory")
        return {"served_model": served_model, "api_key": api_key, "concurrency": concurrency}
    if served_model is not None or api_key is not None:
        raise ValueError("--served-model and --api-key apply to a server URL given as --model "
                         f"(http://HOST:PORT/v1), not to {model!r}")
    options: dict[str, Any] = {"dtype": dtype}
    if max_prompt_tokens is not None:
        options["max_prompt_tokens"] = max_prompt_tokens
    if max_memory is not None:
        options["max_memory"] = max_memory
    return options


def sample_model(flow: SampledFlow, out: str | Path, *, overwrite: bool = False,
                 announce: Callable[[str], None] | None = None) -> tuple[Any, Any]:
    """Load the questions and the model of ``flow`` and sample what the run folder ``out``
    lacks; returns ``(run store, backend)``. ``announce`` hears "loading MODEL ..." before the
    model loads (the slow step)."""
    from recal.runstore import RunStore
    from recal.sampling import sample_run

    RunStore.check_folder(out, overwrite=overwrite)  # a wrong --out should not cost a load
    questions = flow.data.load()
    if announce is not None:
        announce(f"loading {flow.model.name} ...")
    backend = flow.model.load()
    store = sample_run(backend, questions, out=Path(out), config=flow.sampling,
                       style=flow.style, shots=flow.shots, dataset=flow.data.name,
                       overwrite=overwrite, progress=flow.progress,
                       skip_bad=flow.data.skip_bad,
                       warn=None if announce is None else (lambda m: announce(f"warning: {m}")))
    return store, backend


def run_measure(flow: MeasureFlow, *, overwrite: bool = False,
                announce: Callable[[str], None] | None = None) -> Path:
    """Sample (reusing a matching stored run), measure every confidence scorer, write the report;
    returns the report folder. The collapsing function is checked before anything loads."""
    from recal.semantic import get_collapser

    collapser = get_collapser(flow.measure.collapse)
    out = Path(flow.out)
    store, backend = sample_model(flow, out, overwrite=overwrite, announce=announce)
    return measure_stored(store, flow.measure, Path(flow.report) if flow.report else
                          out / "report", backend=backend, collapser=collapser,
                          announce=announce)


def usable_scorers(manifest: Mapping[str, Any], scorers: tuple[str, ...], *, chosen: bool,
                   model: bool) -> tuple[tuple[str, ...], dict[str, str]]:
    """The scorers of ``scorers`` whose inputs the run holds (``model``: whether the model can
    be asked), and why each other one is left out. A scorer the user ``chosen`` by name that
    cannot run is refused instead (``ValueError``, one line)."""
    from recal.confidence import lacking_inputs

    kept, skipped = [], {}
    for name in scorers:
        why = lacking_inputs(name, dict(manifest), model=model)
        if why is None:
            kept.append(name)
            continue
        if chosen:
            raise ValueError(f"the {name} confidence scorer {why}; choose scorers that read the "
                             "samples (--confidence modal_share,semantic_entropy)")
        skipped[name] = why
    if not kept:
        raise ValueError("none of the confidence scorers can run on this run: "
                         + "; ".join(f"{k} {v}" for k, v in skipped.items()))
    return tuple(kept), skipped


def measure_stored(store: Any, config: MeasureConfig, report: str | Path, *,
                   backend: Any = None, collapser: Any = None,
                   announce: Callable[[str], None] | None = None) -> Path:
    """Measure a stored run (sampled, or imported with ``recal import``) into the report folder
    ``report``: every scorer of ``config`` the run has the inputs for (the default list leaves
    the others out, saying why; scorers named by the user must all run). Ungraded questions get
    the label-free report (:mod:`recal.label_free`). With no ``backend``, a scorer that asks the
    model loads it from the run's manifest (never for an imported run: recal cannot load it)."""
    from dataclasses import replace

    from recal.grades import is_graded
    from recal.measure import DEFAULT_SCORERS, measure_run, write_report
    from recal.semantic import get_collapser

    collapser = collapser or get_collapser(config.collapse)
    model = store.manifest["model"]
    loadable = backend is not None or model.get("backend") != "import"
    scorers, skipped = usable_scorers(store.manifest, config.scorers,
                                      chosen=config.scorers != DEFAULT_SCORERS, model=loadable)
    for name, why in skipped.items():
        if announce is not None:
            announce(f"note: {name} left out: {why}")
    from recal.confidence import get_scorer

    if backend is None and any(get_scorer(n).needs_backend for n in scorers):
        from recal.models.backends import load_recorded

        if announce is not None:
            announce(f"loading {model['name']} ...")
        backend = load_recorded(model)
    config = replace(config, scorers=scorers)
    if not is_graded(store.questions()):
        from recal.label_free import measure_ungraded, write_label_free_report

        free = measure_ungraded(store, collapser, scorers, collapse=config.collapse,
                                backend=backend, skipped=skipped)
        return write_label_free_report(free, report)
    measured = measure_run(store, config, backend=backend, collapser=collapser)
    return write_report(measured, report)


def run_recalibrate(flow: RecalibrateFlow) -> Path:
    from recal.repair import choose_method, export_scorer, fit_methods
    from recal.scorer_format import signing_key

    key = signing_key()  # a bad key is refused before any work
    out = Path(flow.out)
    store, _ = sample_model(flow, out)
    report = fit_methods(store, flow.fit)
    (out / "fit.json").write_text(json.dumps(finite_json(report.to_dict()), indent=2,
                                             sort_keys=True, allow_nan=False,
                                             default=float) + "\n")
    if flow.export is None:
        return out
    method, selection = flow.export, None
    if method == "best":  # chosen on the calibration split alone; the held-out split judges it
        method, selection = choose_method(report)
    export_scorer(store, method, flow.fit, selection=selection).save(
        out / "scorer", key=key)  # signed when $RECAL_SIGNING_KEY is set
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


def write_fit(doc: Mapping[str, Any], folder: str | Path) -> str:
    """Write a fit's record (``fit.json``, the :meth:`recal.repair.FitReport.to_dict` document)
    and its held-out table (``table.md``, and sortable in ``fit.html``) into ``folder``; returns
    the table."""
    from recal.explorer.page import write_page
    from recal.tables import fit_rows, fit_table

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fit.json").write_text(json.dumps(finite_json(doc), indent=2, sort_keys=True,
                                                allow_nan=False, default=str))
    table = fit_table(dict(doc))
    (folder / "table.md").write_text(table + "\n")
    caption, header, rows = fit_rows(dict(doc))
    write_page({"kind": "tables", "title": "recal fit", "images": {},
                "facts": [["run", str(doc.get("run", ""))]],
                "tables": [{"title": "Held-out metrics", "caption": caption, "header": header,
                            "rows": rows, "figures": [None] * len(rows)}]},
               folder / "fit.html")
    return table


def tuning_config(method: str, options: Mapping[str, Any], **common: Any) -> Any:
    """The config of the LoRA tuning method ``method`` from ``options`` (None values are left at
    the method's defaults; an option the method does not take is refused by name) and the
    ``common`` fields every method takes (collapse, calibration_fraction, seed, n_resamples)."""
    from recal.tuning import get_method

    config_cls = get_method(method).config_cls
    known = set(config_cls.__dataclass_fields__)
    given = {k: v for k, v in options.items() if v is not None}
    unused = sorted(k for k in given if k not in known)
    if unused:
        raise ValueError(f"the {method} method takes no {', '.join(unused)} option")
    return config_cls(**common, **given)


def confidence_service(scorer: str | Path, *, upstream: str | None = None,
                       served_model: str | None = None, api_key: str | None = None,
                       concurrency: int = 8, allow_model_mismatch: bool = False,
                       warn: Callable[[str], None] | None = None,
                       max_prompt_tokens: int | None = None,
                       signing_key: bytes | None = None) -> Any:
    """The :class:`recal.serve.ConfidenceService` of ``recal serve``: the exported scorer folder
    ``scorer`` in front of ``upstream`` (default: the model the scorer was fitted on, or its
    server). With ``allow_model_mismatch`` a different upstream model is served after ``warn``
    hears why it differs; otherwise it is refused. ``max_prompt_tokens`` caps the prompts of an
    in-process upstream (default: its context less the answer's room). With ``signing_key`` a
    scorer that is unsigned or not signed with it is refused before the model loads."""
    from recal.models import load_backend
    from recal.scorer import load_scorer
    from recal.serve import ConfidenceService
    from recal.serve.scoring import ModelMismatchError

    artifact = load_scorer(scorer, key=signing_key)
    over_http = artifact.model.get("backend") == "http"
    model = upstream or artifact.model["source" if over_http else "name"]
    served = served_model or (artifact.model["name"] if upstream is None and over_http else None)
    options = server_options(model, served, api_key, concurrency,
                             max_prompt_tokens=max_prompt_tokens)
    from recal.models.backends import is_url

    if not is_url(model) and artifact.model.get("dtype"):  # the precision it was fitted in
        options["dtype"] = artifact.model["dtype"]
    backend = load_backend(model, kind=artifact.model.get("kind"), **options)
    try:
        return ConfidenceService(artifact, backend)
    except ModelMismatchError as exc:
        if not allow_model_mismatch:
            raise
        if warn is not None:
            warn(str(exc))
        artifact.model = dict(artifact.model, config_hash=backend.identity.config_hash)
        return ConfidenceService(artifact, backend)


FLOWS.register("measure", FlowSpec(MeasureFlow, run_measure, MeasureFlow.__doc__ or ""))
FLOWS.register("recalibrate", FlowSpec(RecalibrateFlow, run_recalibrate,
                                       RecalibrateFlow.__doc__ or ""))
FLOWS.register("synth", FlowSpec(SynthFlow, run_synth, SynthFlow.__doc__ or ""))
FLOWS.register("bench", FlowSpec(BenchFlow, run_bench_flow, BenchFlow.__doc__ or ""))


def run_flow(recipe: Any) -> Path:
    """Run a loaded :class:`recal.recipes.Recipe`."""
    return FLOWS.get(recipe.flow).run(recipe.config)
