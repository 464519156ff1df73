"""``recal synth``, ``recal run`` and ``recal bench``: whole flows (:mod:`recal.flows`), each read
through the one recipe loader (:func:`recal.recipes.load_recipe`) or built from options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recal.cli.common import (
    DEFAULT_MODEL,
    DataDirOpt,
    ProgressOpt,
    SamplesOpt,
    SeedOpt,
    StyleOpt,
    TauGridOpt,
    TemperatureOpt,
    fail,
    floats,
    names,
    reported,
)

__all__ = ["synth", "run", "bench"]


def synth(
    recipe: Annotated[Path | None, typer.Option(help="A synth recipe (recipes/synth.yaml).")] =
        None,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default: the recipe's out, else runs/synth).")] = None,
    reduced: Annotated[bool | None, typer.Option(
        "--reduced/--full", help="The test-sized world (under a minute) or the full one.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the world and training.")] = None,
    samples: Annotated[int | None, typer.Option("--samples", "-m", help="Answers per question.")]
        = None,
) -> None:
    """Reproduce the paper's findings in a synthetic world whose truth is known."""
    from recal.flows import run_flow
    from recal.recipes import RecipeError, load_recipe

    given = {"reduced": reduced, "seed": seed, "n_samples": samples,
             "out": str(out) if out else None}
    overrides = [(key, value) for key, value in given.items() if value is not None]
    try:  # options over the recipe over the defaults, as `recal run RECIPE --set KEY=VALUE`
        loaded = load_recipe(recipe, overrides=overrides, flow="synth") if recipe else \
            load_recipe(mapping={}, overrides=overrides, flow="synth")
    except RecipeError as exc:
        raise fail(str(exc)) from None
    with reported():
        folder = run_flow(loaded)
    typer.echo((folder / "synth_report.md").read_text())


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
        raise fail(str(exc)) from None
    if show:  # every field, defaults included, as the flow will see it
        import yaml

        typer.echo(yaml.safe_dump(loaded.resolved(), sort_keys=False).rstrip())
        return
    with reported():
        out = run_flow(loaded)
    typer.echo(f"{loaded.flow} finished: {out}")


# The options of `recal bench` (the fields of recal.bench.BenchConfig).
BenchModelOpt = Annotated[list[str] | None, typer.Option(
    help="A model to compare on (repeatable; default smollm2-135m-instruct).")]
BenchDatasetOpt = Annotated[list[str] | None, typer.Option(
    help="A dataset (repeatable; default builtin).")]
BenchLimitOpt = Annotated[int, typer.Option(min=4, help="First N questions of each set.")]
MethodsOpt = Annotated[str | None, typer.Option(
    help="Comma-separated repair methods (default: every post-hoc one and the sampling "
         "temperature).")]
PeersOpt = Annotated[str | None, typer.Option(
    help="Comma-separated peer baselines (default: netcal's and scikit-learn's); empty: none.")]
BenchConfidenceOpt = Annotated[str | None, typer.Option(
    "--confidence", help="Comma-separated confidence scorers (e.g. modal_share).")]
TuningOpt = Annotated[list[str] | None, typer.Option(
    help="A setting of the LoRA methods, KEY=VALUE (repeatable), e.g. max_epochs=2.")]
TuneOnOpt = Annotated[list[str] | None, typer.Option(
    help="A dataset the LoRA methods train on (repeatable; default: every one).")]
TransferOpt = Annotated[bool, typer.Option(help="Fit on one dataset, judge on another.")]
DiagramsOpt = Annotated[bool, typer.Option(help="Draw a reliability figure per method.")]


def bench(
    model: BenchModelOpt = None, dataset: BenchDatasetOpt = None, data_dir: DataDirOpt = None,
    limit: BenchLimitOpt = 200, samples: SamplesOpt = 20, temperature: TemperatureOpt = 1.0,
    style: StyleOpt = "concise", tau_grid: TauGridOpt = "0.5,0.7,1,1.4",
    methods: MethodsOpt = None, peers: PeersOpt = None, confidence: BenchConfidenceOpt = None,
    tuning: TuningOpt = None, tune_on: TuneOnOpt = None, transfer: TransferOpt = True,
    diagrams: DiagramsOpt = True,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/bench"),
    seed: SeedOpt = 0, progress: ProgressOpt = True,
) -> None:
    """Compare every confidence scorer x repair method on the same samples."""
    from recal.flows import BenchFlow, run_bench_flow
    from recal.recipes import parse_override
    from recal.samples import SamplingConfig

    chosen = {k: names(v) for k, v in
              {"methods": methods, "peers": peers, "scorers": confidence}.items() if v is not None}
    grid = floats(tau_grid, "--tau-grid")
    with reported():
        flow = BenchFlow(
            models=tuple(model or (DEFAULT_MODEL,)),
            datasets=tuple(dataset or ("builtin",)), limit=limit,
            data_dir=str(data_dir) if data_dir else None, style=style,  # type: ignore[arg-type]
            sampling=SamplingConfig(n_samples=samples, temperature=temperature, seed=seed,
                                    tau_grid=grid),
            transfer=transfer, diagrams=diagrams, out=str(out), seed=seed, progress=progress,
            tuning=dict(parse_override(t) for t in tuning or ()),
            tuning_datasets=tuple(tune_on) if tune_on else None, **chosen)
        folder = run_bench_flow(flow)
    typer.echo((folder / "bench.md").read_text())
