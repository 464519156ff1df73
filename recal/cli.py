"""The ``recal`` command: subcommands over the same objects the Python API uses."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from recal.lines import dumps_line
from recal.models.packaged import PACKAGED_MODELS, cache_dir

app = typer.Typer(
    name="recal",
    help="Measure and repair the semantic calibration of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_DATASET = "builtin"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@app.command()
def models() -> None:
    """List the packaged models (usable with no model hub) and whether they are cached."""
    root = cache_dir()
    typer.echo(f"cache: {root}  (set RECAL_CACHE_DIR to move it)")
    for name, spec in PACKAGED_MODELS.items():
        converted = (root / name / "hf" / "config.json").exists()
        fetched = (root / name / spec.gguf_name).exists()
        state = "ready" if converted else ("fetched" if fetched else "not fetched")
        typer.echo(f"{name:<24} {spec.kind:<5} {state:<12} {spec.description}")
    typer.echo("Any .gguf file, local transformers folder or hub id also works as --model.")


def _default_out(model: str, dataset: str, style: str, samples: int, limit: int | None) -> Path:
    stem = Path(model).stem if model.endswith(".gguf") else Path(model).name
    if model.startswith(("http://", "https://")):  # a server: name it by host and port
        stem = "server-" + model.split("//", 1)[1].split("/", 1)[0].replace(":", "-")
    data = Path(dataset).stem if dataset.endswith((".jsonl", ".json", ".csv")) else dataset
    data += f"{limit}" if limit else ""
    return Path("runs") / f"{stem}-{data}-{style}-m{samples}"


# The options shared by every command that samples (one definition, used by each signature).
ModelOpt = Annotated[str, typer.Option(
    help="Packaged name, .gguf file, folder, hub id, or a server URL (http://HOST:PORT/v1).")]
DatasetOpt = Annotated[str, typer.Option(help="'builtin', a named set, or a .jsonl/.csv file.")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Folder with local copies of named sets.")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Use the first N questions.")]
SamplesOpt = Annotated[int, typer.Option("--samples", "-m", min=1, help="Answers per question.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", "-t", help="Sampling T.")]
StyleOpt = Annotated[str, typer.Option(help="concise, sentence or cot.")]
ShotsOpt = Annotated[int | None, typer.Option(help="Few-shot examples (default: 0 chat, 5 base).")]
MaxTokensOpt = Annotated[int | None, typer.Option(min=1, help="Default: by style.")]
GreedyOpt = Annotated[bool, typer.Option(help="Also record the greedy answer.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the counter-based sampler.")]
BatchRowsOpt = Annotated[int, typer.Option(min=1, help="Sequences decoded together.")]
KindOpt = Annotated[str | None, typer.Option(help="Force 'chat' or 'base' prompting.")]
SkipBadOpt = Annotated[bool, typer.Option(help="Skip malformed dataset rows (warns).")]
OutOpt = Annotated[Path | None, typer.Option(help="Run folder (default: runs/<model>-...).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Discard a stored run with other settings.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]
ServedModelOpt = Annotated[str | None, typer.Option(
    help="With a server URL: the model name to request (default: the one the server lists).")]
ApiKeyOpt = Annotated[str | None, typer.Option(
    help="With a server URL: its API key (default: $RECAL_API_KEY, else $OPENAI_API_KEY).")]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="With a server URL: requests in flight.")]
TauGridOpt = Annotated[str, typer.Option(
    help="Comma-separated temperatures to record for refitting the sampling temperature "
         "(recal fit), e.g. 0.5,0.7,1,1.4,2; empty: none.")]


@dataclass(frozen=True)
class _SampleOptions:
    model: str
    dataset: str
    data_dir: Path | None
    limit: int | None
    samples: int
    temperature: float
    style: str
    shots: int | None
    max_new_tokens: int | None
    greedy: bool
    seed: int
    batch_rows: int
    kind: str | None
    skip_bad: bool
    out: Path | None
    overwrite: bool
    progress: bool
    tau_grid: str = ""
    served_model: str | None = None
    api_key: str | None = None
    concurrency: int = 8


def _errors() -> tuple[type[BaseException], ...]:
    from recal.data.loaders import DataFormatError
    from recal.models.http import HTTPBackendError
    from recal.models.packaged import ModelFetchError
    from recal.runstore import RunFormatError, RunMismatchError

    return (ValueError, KeyError, FileNotFoundError, DataFormatError, ModelFetchError,
            RunMismatchError, RunFormatError, RuntimeError, NotImplementedError,
            HTTPBackendError, ImportError)


def _message(exc: BaseException) -> str:
    return exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise _fail(f"{flag} must be comma-separated numbers, got {text!r}") from None


def _sample(opts: _SampleOptions):
    """Load questions and model, sample what the run folder lacks; (store, backend)."""
    from recal.data.loaders import load_questions
    from recal.models import load_backend
    from recal.prompts import STYLES
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run

    if opts.kind not in (None, "chat", "base"):
        raise _fail(f"--kind must be 'chat' or 'base', got {opts.kind!r}")
    if opts.style not in STYLES:  # before the model loads: a typo should not cost a load
        raise _fail(f"--style must be one of {', '.join(STYLES)}, got {opts.style!r}")
    try:
        config = SamplingConfig(n_samples=opts.samples, temperature=opts.temperature,
                                max_new_tokens=opts.max_new_tokens, greedy=opts.greedy,
                                seed=opts.seed, batch_rows=opts.batch_rows,
                                tau_grid=_floats(opts.tau_grid, "--tau-grid"))
        questions = load_questions(opts.dataset, data_dir=opts.data_dir, limit=opts.limit,
                                   skip_bad=opts.skip_bad)
        out = opts.out or _default_out(opts.model, opts.dataset, opts.style, opts.samples,
                                       opts.limit)
        typer.echo(f"loading {opts.model} ...", err=True)
        backend = load_backend(opts.model, kind=opts.kind,  # type: ignore[arg-type]
                               **_server_options(opts.model, opts.served_model, opts.api_key,
                                                 opts.concurrency))
        store = sample_run(backend, questions, out=out, config=config, style=opts.style,
                           shots=opts.shots, dataset=opts.dataset, overwrite=opts.overwrite,
                           progress=opts.progress)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    except KeyboardInterrupt as exc:
        raise _fail(str(exc) or "interrupted", code=130) from None
    return store, backend


def _server_options(model: str, served_model: str | None, api_key: str | None,
                   concurrency: int) -> dict:
    """The http backend's options when ``model`` is a server URL (refused otherwise)."""
    if model.startswith(("http://", "https://")):
        return {"served_model": served_model, "api_key": api_key, "concurrency": concurrency}
    if served_model is not None or api_key is not None:
        raise ValueError("--served-model and --api-key apply to a server URL given as --model "
                         f"(http://HOST:PORT/v1), not to {model!r}")
    return {}


@app.command()
def sample(
    model: ModelOpt = DEFAULT_MODEL, dataset: DatasetOpt = DEFAULT_DATASET,
    data_dir: DataDirOpt = None, limit: LimitOpt = None, samples: SamplesOpt = 50,
    temperature: TemperatureOpt = 1.0, style: StyleOpt = "concise", shots: ShotsOpt = None,
    max_new_tokens: MaxTokensOpt = None, greedy: GreedyOpt = True, seed: SeedOpt = 0,
    batch_rows: BatchRowsOpt = 256, kind: KindOpt = None, skip_bad: SkipBadOpt = False,
    out: OutOpt = None, overwrite: OverwriteOpt = False, progress: ProgressOpt = True,
    tau_grid: TauGridOpt = "", served_model: ServedModelOpt = None, api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = 8,
) -> None:
    """Sample M answers per question into a resumable run folder."""
    store, _ = _sample(_SampleOptions(**locals()))
    typer.echo(f"{len(store.done_ids())} questions x {samples} samples stored in {store.path}")


@app.command()
def measure(
    model: ModelOpt = DEFAULT_MODEL, dataset: DatasetOpt = DEFAULT_DATASET,
    data_dir: DataDirOpt = None, limit: LimitOpt = None, samples: SamplesOpt = 50,
    temperature: TemperatureOpt = 1.0, style: StyleOpt = "concise", shots: ShotsOpt = None,
    max_new_tokens: MaxTokensOpt = None, greedy: GreedyOpt = True, seed: SeedOpt = 0,
    batch_rows: BatchRowsOpt = 256, kind: KindOpt = None, skip_bad: SkipBadOpt = False,
    out: OutOpt = None, overwrite: OverwriteOpt = False, progress: ProgressOpt = True,
    tau_grid: TauGridOpt = "", served_model: ServedModelOpt = None, api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = 8,
    collapse: Annotated[str, typer.Option(help="Collapsing function B.")] = "normalized",
    scorers: Annotated[str, typer.Option(help="Comma-separated confidence scorers.")] =
        ",".join(("modal_share", "heldout_modal", "semantic_entropy", "greedy_likelihood")),
    resamples: Annotated[int, typer.Option(min=1, help="Bootstrap resamples.")] = 1000,
    report: Annotated[Path | None, typer.Option(help="Report folder (default: OUT/report-B).")]
        = None,
) -> None:
    """Sample (reusing a matching stored run), then score and report calibration."""
    from recal.measure import MeasureConfig, measure_run, write_report

    options = {k: v for k, v in locals().items() if k in _SampleOptions.__dataclass_fields__}
    try:  # check the measurement settings before any sampling
        config = MeasureConfig(collapse=collapse, scorers=tuple(
            s.strip() for s in scorers.split(",") if s.strip()), n_resamples=resamples)
        from recal.semantic import get_collapser

        collapser = get_collapser(collapse)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    store, backend = _sample(_SampleOptions(**options))
    try:
        result = measure_run(store, config, backend=backend, collapser=collapser)
        folder = write_report(result, report or store.path / f"report-{collapse}")
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    typer.echo((folder / "report.md").read_text().split("\n\n![")[0])
    typer.echo(f"\nreport: {folder / 'report.md'} (and report.html, metrics.json, scores.jsonl)")


@app.command()
def compare(
    run: Annotated[Path, typer.Argument(help="A run folder made by `recal sample`.")],
    collapse: Annotated[list[str] | None, typer.Option(
        help="Two or more collapsing functions B (default: normalized, embedding).")] = None,
    scorer: Annotated[str, typer.Option(help="Confidence scorer.")] = "modal_share",
    resamples: Annotated[int, typer.Option(min=1, help="Bootstrap resamples.")] = 1000,
) -> None:
    """How much the metrics move between collapsing functions, on the same samples."""
    from recal.measure import HEADLINE_METRICS, compare_collapsers
    from recal.runstore import RunStore

    collapse = collapse or ["normalized", "embedding"]
    if len(collapse) < 2:
        raise _fail("name at least two collapsing functions: --collapse A --collapse B")
    try:
        result = compare_collapsers(RunStore.open(run), collapse, scorer=scorer,
                                    n_resamples=resamples)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    typer.echo(f"scorer {scorer}; each cell: estimate [interval] (change from {collapse[0]})")
    typer.echo("| B | " + " | ".join(HEADLINE_METRICS) + " | same verdict |")
    typer.echo("|---" * (len(HEADLINE_METRICS) + 2) + "|")
    for name, entry in result.items():
        cells = []
        for m in HEADLINE_METRICS:
            v = entry["metrics"][m]
            cells.append(f"{v['estimate']:.3f} [{v['low']:.3f}, {v['high']:.3f}] "
                         f"({entry['delta'][m]:+.3f})")
        typer.echo(f"| {name} | " + " | ".join(cells) + f" | {entry['correct_agreement']:.1%} |")


RunArg = Annotated[Path, typer.Argument(help="A run folder made by `recal sample`.")]
CollapseOpt = Annotated[str, typer.Option(help="Collapsing function B.")]
ScorerOpt = Annotated[str, typer.Option(help="Confidence scorer whose output is repaired.")]
FractionOpt = Annotated[float, typer.Option(help="Share of questions to fit on; the rest judge.")]


@app.command()
def fit(
    run: RunArg,
    methods: Annotated[str, typer.Option(help="Comma-separated recalibrators.")] =
        "identity,temperature,platt,isotonic,histogram,beta",
    collapse: CollapseOpt = "normalized", scorer: ScorerOpt = "modal_share",
    calibration_fraction: FractionOpt = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split and the bootstrap.")] = 0,
    resamples: Annotated[int, typer.Option(min=1, help="Bootstrap resamples.")] = 1000,
    confirm: Annotated[bool, typer.Option(
        help="Resample the held-out questions at the refitted sampling temperature.")] = False,
    cv: Annotated[int | None, typer.Option(
        min=2, help="Judge out of fold with K folds instead of one held-out split.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder (default: RUN/fit-B-SCORER).")] = None,
) -> None:
    """Fit repairs on a calibration split and judge them on the held-out split."""
    from recal.repair import FitConfig, fit_methods
    from recal.runstore import RunStore

    try:
        config = FitConfig(methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                           scorer=scorer, collapse=collapse,
                           calibration_fraction=calibration_fraction, seed=seed,
                           n_resamples=resamples, cv_folds=cv)
        store = RunStore.open(run)
        report = fit_methods(store, config)
        doc = report.to_dict()
        if confirm and report.temperature is not None:
            if report.temperature.tau_ == report.temperature.tau0:
                typer.echo("the refitted sampling temperature is the one sampled at: nothing "
                           "to confirm by resampling", err=True)
            else:
                doc["sampling_temperature_confirmed"] = _confirm_temperature(store, report)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    folder = out or run / f"fit-{collapse}-{scorer}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fit.json").write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
    table = _fit_table(doc)
    (folder / "table.md").write_text(table + "\n")
    typer.echo(table)
    typer.echo(f"\n{folder / 'fit.json'}")


def _fit_table(doc: dict) -> str:
    from recal.measure import HEADLINE_METRICS

    shown = [m for m in HEADLINE_METRICS if m != "mean_confidence"]
    split = (f"out of fold ({doc['config']['cv_folds']}-fold), {doc['n_heldout']} questions"
             if doc["config"].get("cv_folds") else
             f"{doc['n_heldout']} questions (fitted on {doc['n_calibration']})")
    lines = [f"Held-out: {split}; "
             f"base-rate Brier {doc['base_rate_brier']:.3f}. Each cell: estimate [95% interval].",
             "", "| method | " + " | ".join(shown) + " | verdict |",
             "|---" * (len(shown) + 2) + "|"]
    for name, entry in doc["methods"].items():
        label = name + (f" (tau = {entry['tau']:g})" if "tau" in entry else "")
        cells = [f"{entry['heldout'][m]['estimate']:.3f} [{entry['heldout'][m]['low']:.3f}, "
                 f"{entry['heldout'][m]['high']:.3f}]" for m in shown]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {entry['verdict']} |")
    confirmed = doc.get("sampling_temperature_confirmed")
    if confirmed:
        cells = [f"{confirmed['heldout'][m]['estimate']:.3f} [{confirmed['heldout'][m]['low']:.3f}"
                 f", {confirmed['heldout'][m]['high']:.3f}]" for m in shown]
        lines.append(f"| sampling_temperature resampled (tau = {confirmed['tau']:g}) | "
                     + " | ".join(cells) + " | confirmation |")
    return "\n".join(lines)


def _confirm_temperature(store, report) -> dict:
    """Resample the held-out questions at the refitted temperature and measure them."""
    from dataclasses import asdict

    from recal.confidence import classify_run, get_scorer
    from recal.metrics import compute_all
    from recal.models import load_backend
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run
    from recal.semantic import get_collapser

    tau = report.temperature.tau_
    sampling = dict(store.manifest["sampling"], temperature=tau, tau_grid=[])
    by_id = {q.id: q for q in store.questions()}
    held = [by_id[i] for i in report.heldout_ids]
    model = store.manifest["model"]
    backend = load_backend(model["name"], kind=model["kind"])
    resampled = sample_run(backend, held, out=store.path / f"resampled-tau{tau:g}",
                           config=SamplingConfig(**{**sampling, "tau_grid": ()}),
                           style=store.manifest["style"], shots=store.manifest.get("shots"),
                           dataset=store.manifest["questions"]["dataset"])
    collapser = get_collapser(report.config.collapse)
    items = classify_run(resampled, collapser)
    preds = get_scorer("modal_share").score(items, collapser)
    metrics = compute_all([p.confidence for p in preds], [p.correct for p in preds],
                          n_resamples=report.config.n_resamples, seed=report.config.seed)
    return {"tau": tau, "heldout": {k: asdict(v) for k, v in metrics.items()}}


@app.command()
def export(
    run: RunArg,
    method: Annotated[str, typer.Option(help="The recalibrator to export.")] = "isotonic",
    collapse: CollapseOpt = "normalized", scorer: ScorerOpt = "modal_share",
    calibration_fraction: FractionOpt = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    out: Annotated[Path, typer.Option(help="Scorer folder to write.")] = Path("scorer"),
) -> None:
    """Fit one recalibrator and export it as a calibrated scorer (JSON data, no pickle)."""
    from recal.repair import FitConfig, export_scorer
    from recal.runstore import RunStore

    try:
        config = FitConfig(methods=(method,), scorer=scorer, collapse=collapse,
                           calibration_fraction=calibration_fraction, seed=seed)
        artifact = export_scorer(RunStore.open(run), method, config)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    folder = artifact.save(out)
    held = artifact.metrics["heldout"]
    typer.echo(f"exported {method} ({artifact.metrics['verdict']}) to {folder}: held-out smooth "
               f"ECE {held['smooth_ece']['estimate']:.3f}, Brier "
               f"{held['brier_score']['estimate']:.3f}, AUROC {held['auroc']['estimate']:.3f}")


@app.command()
def apply(
    run: RunArg,
    scorer: Annotated[Path, typer.Option(help="An exported scorer folder.")] = Path("scorer"),
    out: Annotated[Path | None, typer.Option(help="JSONL to write (default: RUN/calibrated.jsonl)")]
        = None,
) -> None:
    """Add calibrated confidences to a stored run."""
    from recal.confidence import classify_run, get_scorer
    from recal.runstore import RunStore
    from recal.scorer import load_scorer
    from recal.semantic import get_collapser

    try:
        artifact = load_scorer(scorer)
        store = RunStore.open(run)
        if store.manifest["model"].get("config_hash") != artifact.model.get("config_hash"):
            raise ValueError(f"{run} was sampled from another model than the scorer was fitted "
                             "on (config hashes differ)")
        collapser = get_collapser(artifact.collapse, **artifact.collapse_options)
        items = classify_run(store, collapser)
        preds = get_scorer(artifact.scorer).score(items, collapser)
        calibrated = artifact.recalibrator.predict_proba([p.confidence for p in preds])
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    target = out or run / "calibrated.jsonl"
    with target.open("w", encoding="utf-8") as f:
        for p, c in zip(preds, calibrated, strict=True):
            f.write(dumps_line({"id": p.question_id, "answer": p.answer,
                                "confidence": p.confidence, "calibrated": float(c),
                                "correct": p.correct}))
    typer.echo(f"{len(preds)} calibrated confidences written to {target}")


@app.command()
def tune(
    run: RunArg,
    method: Annotated[str, typer.Option(
        help="distribution, confidence_head or amortised.")] = "amortised",
    target: Annotated[str | None, typer.Option(
        help="distribution: reference, sharpen or correct_mix; amortised: modal_share or "
             "correct.")] = None,
    reference: Annotated[Path | None, typer.Option(
        help="Reference model's run folder (distribution --target reference).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Most epochs.")] = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Epochs without a better "
                                                  "validation loss before stopping.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate of the adapter.")] = None,
    rank: Annotated[int | None, typer.Option(min=1, help="LoRA rank.")] = None,
    train_layers: Annotated[int | None, typer.Option(
        min=0, help="LoRA on the last N layers (0: all layers).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Rows per step.")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after N steps.")] = None,
    eval_samples: Annotated[int | None, typer.Option(
        min=1, help="distribution: answers per held-out question from the tuned model.")] = None,
    eval_limit: Annotated[int | None, typer.Option(
        min=2, help="Judge on the first N held-out questions (default: all).")] = None,
    head_lr: Annotated[float | None, typer.Option(
        help="amortised: learning rate of the head.")] = None,
    answers_per_question: Annotated[int | None, typer.Option(
        min=1, help="confidence_head: graded answers per training question.")] = None,
    kl_weight: Annotated[float | None, typer.Option(
        help="confidence_head: weight of the KL regulariser on the model's answers.")] = None,
    max_classes: Annotated[int | None, typer.Option(
        min=1, help="distribution: classes per question trained on.")] = None,
    collapse: CollapseOpt = "normalized",
    calibration_fraction: FractionOpt = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split (as recal fit's).")] = 0,
    resamples: Annotated[int, typer.Option(min=1, help="Bootstrap resamples.")] = 1000,
    out: Annotated[Path | None, typer.Option(help="Folder (default: RUN/tune-METHOD).")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Repair by LoRA fine-tuning; judged on the held-out split of `recal fit`. Resumable: run
    the same command again after a kill."""
    from recal.runstore import RunStore
    from recal.tuning import get_method
    from recal.tuning import tune as run_tune

    options = {"target": target, "reference": str(reference) if reference else None,
               "max_epochs": epochs, "patience": patience, "learning_rate": lr, "rank": rank,
               "batch_size": batch_size, "max_steps": max_steps, "eval_samples": eval_samples,
               "eval_limit": eval_limit, "head_learning_rate": head_lr,
               "answers_per_question": answers_per_question, "kl_weight": kl_weight,
               "max_classes": max_classes}
    try:
        config_cls = get_method(method).config_cls
        known = set(config_cls.__dataclass_fields__)
        given = {k: v for k, v in options.items() if v is not None}
        unused = sorted(k for k in given if k not in known)
        if unused:
            raise ValueError(f"the {method} method takes no {', '.join(unused)} option")
        if train_layers is not None:
            given["train_layers"] = train_layers or None
        config = config_cls(collapse=collapse, calibration_fraction=calibration_fraction,
                            seed=seed, n_resamples=resamples, **given)
        folder = out or run / f"tune-{config.method}"
        report = run_tune(RunStore.open(run), config, folder, progress=progress)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    typer.echo(report.table())
    typer.echo(f"\nadapter: {report.adapter}\nscorer: {folder / 'scorer'}\n"
               f"report: {folder / 'report.json'}")


@app.command()
def synth(
    recipe: Annotated[Path | None, typer.Option(help="A synth recipe (recipes/synth.yaml).")] =
        None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/synth"),
    reduced: Annotated[bool | None, typer.Option(
        "--reduced/--full", help="The test-sized world (under a minute) or the full one.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the world and training.")] = None,
    samples: Annotated[int | None, typer.Option("--samples", "-m", help="Answers per question.")]
        = None,
) -> None:
    """Reproduce the paper's findings in a synthetic world whose truth is known."""
    from recal.synthetic.experiment import SynthConfig, load_synth_recipe, run_synthetic

    overrides = {"reduced": reduced, "seed": seed, "n_samples": samples}
    try:
        if recipe is not None:
            config = load_synth_recipe(recipe, **overrides)
        else:
            config = SynthConfig(**{k: v for k, v in overrides.items() if v is not None})
        run_synthetic(config, out)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    typer.echo((out / "synth_report.md").read_text())


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="A recipe file (see recipes/).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe key: --set sampling.n_samples=50 (repeatable; the "
                      "value is read as YAML).")] = None,
    show: Annotated[bool, typer.Option(
        "--show", help="Print the resolved recipe and stop (nothing runs).")] = False,
) -> None:
    """Run a whole flow (measure, recalibrate, synth, bench) from a YAML recipe."""
    from recal.flows import run_flow
    from recal.recipes import RecipeError, load_recipe

    try:
        loaded = load_recipe(recipe, overrides=set_ or ())
    except RecipeError as exc:
        raise _fail(str(exc)) from None
    if show:  # every field, defaults included, as the flow will see it
        import dataclasses

        import yaml

        def plain(value: object) -> object:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return [plain(v) for v in value] if isinstance(value, list | tuple) else value

        resolved = {"flow": loaded.flow, **plain(dataclasses.asdict(loaded.config))}
        typer.echo(yaml.safe_dump(resolved, sort_keys=False).rstrip())
        return
    try:
        out = run_flow(loaded)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    typer.echo(f"{loaded.flow} finished: {out}")


@app.command()
def bench(
    model: Annotated[list[str] | None, typer.Option(
        help="A model to compare on (repeatable; default smollm2-135m-instruct).")] = None,
    dataset: Annotated[list[str] | None, typer.Option(
        help="A dataset (repeatable; default builtin).")] = None,
    data_dir: DataDirOpt = None,
    limit: Annotated[int, typer.Option(min=4, help="First N questions of each set.")] = 200,
    samples: SamplesOpt = 20,
    temperature: TemperatureOpt = 1.0,
    style: StyleOpt = "concise",
    tau_grid: TauGridOpt = "0.5,0.7,1,1.4",
    methods: Annotated[str | None, typer.Option(
        help="Comma-separated repair methods (default: every post-hoc one and the sampling "
             "temperature).")] = None,
    peers: Annotated[str | None, typer.Option(
        help="Comma-separated peer baselines (default: netcal's and scikit-learn's); "
             "empty: none.")] = None,
    scorers: Annotated[str | None, typer.Option(
        help="Comma-separated confidence scorers.")] = None,
    tuning: Annotated[list[str] | None, typer.Option(
        help="A setting of the LoRA methods, KEY=VALUE (repeatable), e.g. max_epochs=2.")]
        = None,
    tune_on: Annotated[list[str] | None, typer.Option(
        help="A dataset the LoRA methods train on (repeatable; default: every one).")] = None,
    transfer: Annotated[bool, typer.Option(help="Fit on one dataset, judge on another.")] = True,
    diagrams: Annotated[bool, typer.Option(help="Draw a reliability figure per method.")] = True,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/bench"),
    seed: SeedOpt = 0,
    progress: ProgressOpt = True,
) -> None:
    """Compare every confidence scorer x repair method on the same samples."""
    from recal.bench import BenchConfig, run_bench, write_bench_report
    from recal.recipes import parse_override
    from recal.samples import SamplingConfig

    def names(text: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in text.split(",") if x.strip())

    chosen = {k: names(v) for k, v in
              {"methods": methods, "peers": peers, "scorers": scorers}.items() if v is not None}
    try:
        config = BenchConfig(
            models=tuple(model or ("smollm2-135m-instruct",)),
            datasets=tuple(dataset or ("builtin",)), limit=limit,
            data_dir=str(data_dir) if data_dir else None, style=style,  # type: ignore[arg-type]
            sampling=SamplingConfig(n_samples=samples, temperature=temperature, seed=seed,
                                    tau_grid=_floats(tau_grid, "--tau-grid")),
            transfer=transfer, diagrams=diagrams, out=str(out), seed=seed, progress=progress,
            tuning=dict(parse_override(t) for t in tuning or ()),
            tuning_datasets=tuple(tune_on) if tune_on else None, **chosen)
        report = run_bench(config)
        write_bench_report(report)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    typer.echo((out / "bench.md").read_text())


@app.command()
def serve(
    scorer: Annotated[Path, typer.Option(help="An exported scorer folder (read once, at start).")]
        = Path("scorer"),
    model: Annotated[str | None, typer.Option(
        "--model", "--upstream",
        help="The upstream: a server URL (http://HOST:PORT/v1) or any --model of recal sample "
             "(default: the model the scorer was fitted on).")] = None,
    served_model: ServedModelOpt = None, api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = 8,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    proxy_key: Annotated[str | None, typer.Option(
        help="API key clients must send (Authorization: Bearer); default $RECAL_PROXY_KEY; "
             "none: no key asked.")] = None,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body.")] = 65536,
    max_messages: Annotated[int, typer.Option(min=1, help="Most messages per request.")] = 64,
    max_n: Annotated[int, typer.Option(min=1, help="Most choices (n) per request.")] = 4,
    max_tokens: Annotated[int, typer.Option(min=1, help="Largest max_tokens.")] = 512,
    request_timeout: Annotated[float, typer.Option(help="Seconds per request in all.")] = 120.0,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Requests worked on at once.")] = 4,
    allow_model_mismatch: Annotated[bool, typer.Option(
        help="Serve although the upstream is not the model the scorer was fitted on.")] = False,
) -> None:
    """An OpenAI-compatible proxy that adds the calibrated confidence to each answer."""
    import os

    from recal.models import load_backend
    from recal.scorer import load_scorer

    try:
        from recal.serve import ConfidenceService, ServeConfig
        from recal.serve.app import run_server
        from recal.serve.scoring import ModelMismatchError

        artifact = load_scorer(scorer)
        upstream = model or artifact.model["source" if artifact.model.get("backend") == "http"
                                            else "name"]
        served = served_model or (artifact.model["name"] if model is None
                                  and artifact.model.get("backend") == "http" else None)
        backend = load_backend(upstream, kind=artifact.model.get("kind"),
                               **_server_options(upstream, served, api_key, concurrency))
        config = ServeConfig(api_key=proxy_key or os.environ.get("RECAL_PROXY_KEY") or None,
                             max_body_bytes=max_body_bytes, max_messages=max_messages,
                             max_n=max_n, max_tokens=max_tokens,
                             request_timeout=request_timeout, max_concurrent=max_concurrent)
        try:
            service = ConfidenceService(artifact, backend)
        except ModelMismatchError as exc:
            if not allow_model_mismatch:
                raise
            typer.secho(f"warning: {exc}", fg=typer.colors.YELLOW, err=True)
            artifact.model = dict(artifact.model, config_hash=backend.identity.config_hash)
            service = ConfidenceService(artifact, backend)
    except _errors() as exc:
        raise _fail(_message(exc)) from None
    if config.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: serving on {host} with no API key (--proxy-key)",
                    fg=typer.colors.YELLOW, err=True)
    typer.echo(f"recal serve: {service.served_model} on http://{host}:{port}/v1 "
               f"(scorer {scorer}, M = {service.sampling.n_samples})", err=True)
    run_server(service, config, host=host, port=port)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, a job scheduler's stop) into SystemExit, so that ``finally``
    blocks run as on Ctrl-C: a killed run still records what it finished (the bench's sampling
    time, a run store's last lines)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    _exit_on_sigterm()
    try:
        app()
    except BrokenPipeError:  # `recal models | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
