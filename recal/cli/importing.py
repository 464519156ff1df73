"""``recal import``: a run folder from answers sampled elsewhere (:mod:`recal.importing`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recal.cli.common import reported
from recal.importing import IMPORT_FORMATS

__all__ = ["import_"]


def import_(
    file: Annotated[Path, typer.Argument(help="The answers file to import.")],
    format: Annotated[str, typer.Option(
        "--format", "-f", help=f"The file's format: {', '.join(IMPORT_FORMATS)}.")] = "recal",
    out: Annotated[Path, typer.Option(help="The run folder to write.")] = Path("runs/imported"),
    questions: Annotated[Path | None, typer.Option(
        help="openai format: the questions file, matched to each custom_id by id.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model-name", help="The model that answered (default: as the file says, else "
                             "unknown).")] = None,
    kind: Annotated[str | None, typer.Option(help="'chat' or 'base' (default: unknown).")] = None,
    temperature: Annotated[float | None, typer.Option(
        help="The sampling temperature used (default: as the file says, else unknown).")] = None,
    top_p: Annotated[float | None, typer.Option(help="The top-p used.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="The answer length limit used.")]
        = None,
    style: Annotated[str | None, typer.Option(help="The prompt style asked in.")] = None,
    dataset: Annotated[str | None, typer.Option(help="The question set's name.")] = None,
    responses: Annotated[str, typer.Option(
        help="lm-eval: read 'resps' (raw generations) or 'filtered_resps'.")] = "resps",
    question_field: Annotated[str, typer.Option(
        help="lm-eval: the doc field holding the question (else the request prompt).")]
        = "question",
    filter_name: Annotated[str | None, typer.Option(
        "--filter", help="lm-eval: the filter whose rows to read (default: the first).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in --out.")] = False,
) -> None:
    """Build a run folder from answers sampled elsewhere (recal JSONL, OpenAI responses,
    lm-evaluation-harness sample logs); measure, fit and export then read it."""
    from recal.importing import ImportSettings, import_run

    options = ({"responses": responses, "question_field": question_field,
                "filter": filter_name} if format == "lm-eval" else {})
    with reported(interrupt=True):
        settings = ImportSettings(model=model, kind=kind, temperature=temperature, top_p=top_p,
                                  max_new_tokens=max_new_tokens, style=style, dataset=dataset)
        store = import_run(file, out, format=format, questions=questions, settings=settings,
                           overwrite=overwrite, **options)
    sampling = store.manifest["sampling"]
    typer.echo(f"{store.manifest['questions']['count']} questions x {sampling['n_samples']} "
               f"samples imported into {store.path} (model {store.manifest['model']['name']}, "
               f"T = {sampling['temperature']}, token log-probs: "
               f"{'yes' if sampling['logprobs'] else 'no'})")
    if format == "openai" and not sampling["logprobs"]:
        typer.echo("  not every response holds token log-probs, so the scorers that need "
                   "them cannot score this run: request them with logprobs: true and "
                   "top_logprobs: 1 (llama.cpp's server returns none without top_logprobs)")
