"""The ``recal`` command: subcommands over the same objects the Python API uses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

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


def _default_out(model: str, dataset: str, style: str, samples: int) -> Path:
    stem = Path(model).stem if model.endswith(".gguf") else Path(model).name
    data = Path(dataset).stem if dataset.endswith((".jsonl", ".json", ".csv")) else dataset
    return Path("runs") / f"{stem}-{data}-{style}-m{samples}"


@app.command()
def sample(
    model: Annotated[str, typer.Option(help="Packaged name, .gguf file, folder or hub id.")] =
        DEFAULT_MODEL,
    dataset: Annotated[str, typer.Option(help="'builtin', a named set, or a .jsonl/.csv file.")] =
        DEFAULT_DATASET,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with local copies of named sets.")]
        = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use the first N questions.")] = None,
    samples: Annotated[int, typer.Option("--samples", "-m", min=1, help="Answers per question.")]
        = 50,
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="Sampling T.")] = 1.0,
    style: Annotated[str, typer.Option(help="concise, sentence or cot.")] = "concise",
    shots: Annotated[int | None, typer.Option(help="Few-shot examples (default: 0 chat, 5 base).")]
        = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="Default: by style.")] = None,
    greedy: Annotated[bool, typer.Option(help="Also record the greedy answer.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the counter-based sampler.")] = 0,
    batch_rows: Annotated[int, typer.Option(min=1, help="Sequences decoded together.")] = 256,
    kind: Annotated[str | None, typer.Option(help="Force 'chat' or 'base' prompting.")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip malformed dataset rows (warns).")] = False,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<model>-...).")] = (
        None),
    overwrite: Annotated[bool, typer.Option(help="Discard a stored run with other settings.")] =
        False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Sample M answers per question into a resumable run folder."""
    from recal.data.loaders import DataFormatError, load_questions
    from recal.models import load_backend
    from recal.models.packaged import ModelFetchError
    from recal.prompts import STYLES
    from recal.runstore import RunFormatError, RunMismatchError
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run

    if kind not in (None, "chat", "base"):
        raise _fail(f"--kind must be 'chat' or 'base', got {kind!r}")
    if style not in STYLES:  # before the model loads: a typo should not cost a load
        raise _fail(f"--style must be one of {', '.join(STYLES)}, got {style!r}")
    try:
        config = SamplingConfig(n_samples=samples, temperature=temperature,
                                max_new_tokens=max_new_tokens, greedy=greedy, seed=seed,
                                batch_rows=batch_rows)
        questions = load_questions(dataset, data_dir=data_dir, limit=limit, skip_bad=skip_bad)
        out = out or _default_out(model, dataset, style, samples)
        typer.echo(f"loading {model} ...", err=True)
        backend = load_backend(model, kind=kind)  # type: ignore[arg-type]
        store = sample_run(backend, questions, out=out, config=config, style=style, shots=shots,
                           dataset=dataset, overwrite=overwrite, progress=progress)
    except (ValueError, KeyError, FileNotFoundError, DataFormatError, ModelFetchError,
            RunMismatchError, RunFormatError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise _fail(message) from None
    except KeyboardInterrupt as exc:
        raise _fail(str(exc) or "interrupted", code=130) from None
    typer.echo(f"{len(store.done_ids())} questions x {samples} samples stored in {store.path}")


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `recal models | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
