"""What every command shares: the Typer app, the sampling options, and how errors end a command.

A command only parses (options into the config objects the Python API and the recipes use),
calls one function of the Python API, and prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from recal.confidence import SCORERS
from recal.errors import user_errors, user_message
from recal.models.packaged import DEFAULT_MODEL
from recal.semantic import COLLAPSERS

__all__ = ["app", "fail", "reported", "names", "floats", "byte_size", "DEFAULT_MODEL",
           "DEFAULT_DATASET", "DEFAULT_CONFIDENCE"]

app = typer.Typer(
    name="recal",
    help="Measure and repair the semantic calibration of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_DATASET = "builtin"
DEFAULT_CONFIDENCE = "modal_share"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` (one line, to stderr) and return the Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextmanager
def reported(*, interrupt: bool = False) -> Iterator[None]:
    """Turn a user's mistake (:func:`recal.errors.user_errors`, or a file that cannot be read
    or written) into one line and exit code 2; with ``interrupt``, Ctrl-C into exit code 130."""
    try:
        yield
    except typer.Exit:  # already reported (an Exit is a RuntimeError)
        raise
    except user_errors() as exc:
        raise fail(user_message(exc)) from None
    except OSError as exc:  # a path that is a file, a folder, unwritable, on a full disk ...
        where = f": {exc.filename}" if exc.filename else ""
        raise fail(f"{exc.strerror or exc}{where}") from None
    except KeyboardInterrupt as exc:
        if not interrupt:
            raise
        raise fail(str(exc) or "interrupted", code=130) from None


def names(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(x.strip() for x in text.split(",") if x.strip())


def floats(text: str, flag: str) -> tuple[float, ...]:
    """``"0.5,1"`` -> ``(0.5, 1.0)``; anything else ends the command naming ``flag``."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise fail(f"{flag} must be comma-separated numbers, got {text!r}") from None


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def byte_size(text: str | None, flag: str) -> int | None:
    """``"512M"`` -> 536870912 (units K, M, G, T, powers of 1024; a plain number is bytes);
    None stays None; anything else ends the command naming ``flag``."""
    if text is None:
        return None
    body = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = body[-1:] if body[-1:] in _UNITS else ""
    try:
        value = float(body[:len(body) - len(unit)])
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise fail(f"{flag} must be a positive size such as 512M or 2G, got {text!r}")
    return int(value * _UNITS[unit])


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
MaxPromptTokensOpt = Annotated[int | None, typer.Option(
    min=1, help="Longest prompt in tokens of a model run in process (default: its context less "
                "the answer's room); longer ones are refused (or skipped with --skip-bad).")]
DtypeOpt = Annotated[str, typer.Option(
    help="Precision of a model run in process: float32 (the exact model), bfloat16 (about 2.5x "
         "faster on CPUs with native bfloat16; token log-probabilities within about 0.04 nats) "
         "or auto (bfloat16 where the CPU has it, else float32). Recorded in the run.")]
MaxMemoryOpt = Annotated[str | None, typer.Option(
    help="Memory the sampler may hold in caches and logits, e.g. 512M, 2G (default 1G); the "
         "batch shrinks to fit.")]
SignKeyEnvOpt = Annotated[str | None, typer.Option(
    metavar="VAR",
    help="Environment variable holding the scorer signing key (HMAC-SHA256, at least 16 "
         "characters; default: $RECAL_SIGNING_KEY when set). Export signs the scorer with it; "
         "apply and serve refuse a scorer that is unsigned or not signed with it.")]
TauGridOpt = Annotated[str, typer.Option(
    help="Comma-separated temperatures to record for refitting the sampling temperature "
         "(recal fit), e.g. 0.5,0.7,1,1.4,2; empty: none.")]

# The options of the commands that read a stored run.
RunArg = Annotated[Path, typer.Argument(help="A run folder made by `recal sample`.")]
CollapseOpt = Annotated[str, typer.Option(
    help=f"Collapsing function B: {', '.join(COLLAPSERS)}.")]
ConfidenceOpt = Annotated[str, typer.Option(
    "--confidence",
    help=f"Confidence scorer whose output is repaired: {', '.join(SCORERS)}.")]
FractionOpt = Annotated[float, typer.Option(help="Share of questions to fit on; the rest judge.")]
ResamplesOpt = Annotated[int, typer.Option(min=1, help="Bootstrap resamples.")]
