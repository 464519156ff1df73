"""``recal models``, ``recal sample``, ``recal measure`` and ``recal compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from recal.cli.common import (
    DEFAULT_CONFIDENCE,
    DEFAULT_DATASET,
    DEFAULT_MODEL,
    ApiKeyOpt,
    BatchRowsOpt,
    CollapseOpt,
    ConcurrencyOpt,
    DataDirOpt,
    DatasetOpt,
    GreedyOpt,
    KindOpt,
    LimitOpt,
    MaxPromptTokensOpt,
    MaxTokensOpt,
    ModelOpt,
    OutOpt,
    OverwriteOpt,
    ProgressOpt,
    ResamplesOpt,
    SamplesOpt,
    SeedOpt,
    ServedModelOpt,
    ShotsOpt,
    SkipBadOpt,
    StyleOpt,
    TauGridOpt,
    TemperatureOpt,
    fail,
    floats,
    names,
    reported,
)
from recal.confidence import DEFAULT_CONFIDENCES, SCORERS

__all__ = ["models", "sample", "measure", "compare", "sampled_flow", "SAMPLING_OPTIONS"]


def models() -> None:
    """List the packaged models (usable with no model hub) and whether they are cached."""
    from recal.models.packaged import cache_dir
    from recal.tables import packaged_models_table

    root = cache_dir()
    typer.echo(f"cache: {root}  (set RECAL_CACHE_DIR to move it)")
    for line in packaged_models_table(root):
        typer.echo(line)
    typer.echo("Any .gguf file, local transformers folder or hub id also works as --model.")


SAMPLING_OPTIONS = ("model", "dataset", "data_dir", "limit", "samples", "temperature", "style",
                    "shots", "max_new_tokens", "greedy", "seed", "batch_rows", "kind", "skip_bad",
                    "progress", "tau_grid", "served_model", "api_key", "concurrency",
                    "max_prompt_tokens")
"""The parameters of :func:`sampled_flow`: the options of every command that samples."""


def sampled_flow(cls: type, *, model: str, dataset: str, data_dir: Path | None, limit: int | None,
                 samples: int, temperature: float, style: str, shots: int | None,
                 max_new_tokens: int | None, greedy: bool, seed: int, batch_rows: int,
                 kind: str | None, skip_bad: bool, progress: bool, tau_grid: str,
                 served_model: str | None, api_key: str | None, concurrency: int,
                 max_prompt_tokens: int | None = None, **fields: Any) -> Any:
    """The sampling options as a :class:`recal.flows.SampledFlow` (or subclass ``cls``, given
    its own ``fields``); option mistakes are caught here, before any model loads."""
    from recal.flows import DataSection, ModelSection, server_options
    from recal.prompts import STYLES
    from recal.samples import SamplingConfig

    if kind not in (None, "chat", "base"):
        raise fail(f"--kind must be 'chat' or 'base', got {kind!r}")
    if style not in STYLES:  # before the model loads: a typo should not cost a load
        raise fail(f"--style must be one of {', '.join(STYLES)}, got {style!r}")
    grid = floats(tau_grid, "--tau-grid")
    with reported():
        sampling = SamplingConfig(n_samples=samples, temperature=temperature,
                                  max_new_tokens=max_new_tokens, greedy=greedy, seed=seed,
                                  batch_rows=batch_rows, tau_grid=grid)
        options = server_options(model, served_model, api_key, concurrency,
                                 max_prompt_tokens=max_prompt_tokens)
        return cls(model=ModelSection(name=model, kind=kind, options=options),  # type: ignore[arg-type]
                   data=DataSection(name=dataset, data_dir=str(data_dir) if data_dir else None,
                                    limit=limit, skip_bad=skip_bad),
                   style=style, shots=shots, sampling=sampling, progress=progress, **fields)


def _announce(message: str) -> None:
    typer.echo(message, err=True)


def sample(
    model: ModelOpt = DEFAULT_MODEL, dataset: DatasetOpt = DEFAULT_DATASET,
    data_dir: DataDirOpt = None, limit: LimitOpt = None, samples: SamplesOpt = 50,
    temperature: TemperatureOpt = 1.0, style: StyleOpt = "concise", shots: ShotsOpt = None,
    max_new_tokens: MaxTokensOpt = None, greedy: GreedyOpt = True, seed: SeedOpt = 0,
    batch_rows: BatchRowsOpt = 256, kind: KindOpt = None, skip_bad: SkipBadOpt = False,
    out: OutOpt = None, overwrite: OverwriteOpt = False, progress: ProgressOpt = True,
    tau_grid: TauGridOpt = "", served_model: ServedModelOpt = None, api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = 8, max_prompt_tokens: MaxPromptTokensOpt = None,
) -> None:
    """Sample M answers per question into a resumable run folder."""
    from recal.flows import SampledFlow, default_run_folder, sample_model

    given = locals()
    flow = sampled_flow(SampledFlow, **{k: given[k] for k in SAMPLING_OPTIONS})
    folder = out or default_run_folder(model, dataset, style, samples, limit)
    with reported(interrupt=True):
        store, _ = sample_model(flow, folder, overwrite=overwrite, announce=_announce)
    typer.echo(f"{len(store.done_ids())} questions x {samples} samples stored in {store.path}")


def measure(
    model: ModelOpt = DEFAULT_MODEL, dataset: DatasetOpt = DEFAULT_DATASET,
    data_dir: DataDirOpt = None, limit: LimitOpt = None, samples: SamplesOpt = 50,
    temperature: TemperatureOpt = 1.0, style: StyleOpt = "concise", shots: ShotsOpt = None,
    max_new_tokens: MaxTokensOpt = None, greedy: GreedyOpt = True, seed: SeedOpt = 0,
    batch_rows: BatchRowsOpt = 256, kind: KindOpt = None, skip_bad: SkipBadOpt = False,
    out: OutOpt = None, overwrite: OverwriteOpt = False, progress: ProgressOpt = True,
    tau_grid: TauGridOpt = "", served_model: ServedModelOpt = None, api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = 8, max_prompt_tokens: MaxPromptTokensOpt = None,
    collapse: CollapseOpt = "normalized",
    confidence: Annotated[str, typer.Option(
        "--confidence", help="Comma-separated confidence scorers.")] =
        ",".join(DEFAULT_CONFIDENCES),
    resamples: ResamplesOpt = 1000,
    report: Annotated[Path | None, typer.Option(help="Report folder (default: OUT/report-B).")]
        = None,
    run: Annotated[Path | None, typer.Option(
        help="Measure this stored run (e.g. made by `recal import`) without sampling.")] = None,
) -> None:
    """Sample (reusing a matching stored run), then score and report calibration."""
    from recal.flows import MeasureFlow, default_run_folder, measure_stored, run_measure
    from recal.measure import MeasureConfig

    with reported():  # the measurement settings are checked before any sampling
        config = MeasureConfig(collapse=collapse, scorers=names(confidence),
                               n_resamples=resamples)
    if run is not None:
        from recal.runstore import RunStore

        with reported(interrupt=True):
            folder = measure_stored(RunStore.open(run), config,
                                    report or run / f"report-{collapse}", announce=_announce)
        typer.echo((folder / "report.md").read_text().split("\n\n![")[0])
        typer.echo(f"\nreport: {folder / 'report.md'}")
        return
    given = locals()
    options = {k: given[k] for k in SAMPLING_OPTIONS}
    run = out or default_run_folder(model, dataset, style, samples, limit)
    flow = sampled_flow(MeasureFlow, **options, measure=config, out=str(run),
                        report=str(report or run / f"report-{collapse}"))
    with reported(interrupt=True):
        folder = run_measure(flow, overwrite=overwrite, announce=_announce)
    typer.echo((folder / "report.md").read_text().split("\n\n![")[0])
    typer.echo(f"\nreport: {folder / 'report.md'} (and report.html, metrics.json, scores.jsonl)")


def compare(
    run: Annotated[Path, typer.Argument(help="A run folder made by `recal sample`.")],
    collapse: Annotated[list[str] | None, typer.Option(
        help="Two or more collapsing functions B (default: normalized, embedding).")] = None,
    confidence: Annotated[str, typer.Option(
        "--confidence", help=f"Confidence scorer: {', '.join(SCORERS)}.")] = DEFAULT_CONFIDENCE,
    resamples: ResamplesOpt = 1000,
    html: Annotated[Path | None, typer.Option(
        help="Also write a comparison page (one HTML file): question by question, which "
             "classes the second B merges or splits.")] = None,
    against: Annotated[Path | None, typer.Option(
        help="A second run folder: compare the two runs under the first --collapse (writes "
             "the --html page; the questions in both are compared).")] = None,
) -> None:
    """How much the metrics move between collapsing functions (or runs), on the same samples."""
    from recal.explorer.data import compare_runs
    from recal.explorer.page import write_page
    from recal.measure import compare_collapsers
    from recal.runstore import RunStore
    from recal.tables import compare_table

    if against is not None:
        if html is None:
            raise fail("--against writes a comparison page: add --html FILE")
        with reported():
            doc = compare_runs(RunStore.open(run), RunStore.open(against),
                               collapse or ["normalized"], scorer=confidence,
                               n_resamples=resamples)
        write_page(doc, html)
        typer.echo("\n".join(" | ".join(r) for r in [doc["table"]["header"],
                                                      *doc["table"]["rows"]]))
        typer.echo(f"comparison page: {html}")
        return
    collapse = collapse or ["normalized", "embedding"]
    if len(collapse) < 2:
        raise fail("name at least two collapsing functions: --collapse A --collapse B")
    with reported():
        result = compare_collapsers(RunStore.open(run), collapse, scorer=confidence,
                                    n_resamples=resamples)
    typer.echo(compare_table(result, confidence))
    if html is not None:
        with reported():
            doc = compare_runs(RunStore.open(run), None, collapse[:2], scorer=confidence,
                               n_resamples=resamples)
        write_page(doc, html)
        typer.echo(f"comparison page ({collapse[0]} vs {collapse[1]}): {html}")
