"""What every import format shares: the parsed records, the settings a source gives, the
one-line errors, and the one way an import becomes a run store.

A format (:data:`IMPORT_FORMATS`) reads its file into an :class:`ImportedRun`: one
:class:`ImportedQuestion` per question (its question, its M samples, its greedy answer when the
source has one, and the line it came from) plus the settings the source states. Everything a
source does not state is recorded as ``"unknown"`` (:data:`recal.runstore.UNKNOWN`), never
guessed. :func:`write_run` checks what all formats must agree on (the same M for every question,
at least one question) and writes the run store so that an interrupted import never leaves a run
that ``recal measure`` would read as complete: the store is built in a hidden folder beside
``out`` and renamed into place only when every question is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recal.data.records import Question
from recal.lines import read_text_lines
from recal.registry import Registry
from recal.runstore import MANIFEST, UNKNOWN, RunMismatchError, RunStore
from recal.samples import QuestionSamples, Sample

__all__ = ["IMPORT_FORMATS", "ImportFormat", "ImportFormatError", "ImportSettings",
           "ImportedQuestion", "ImportedRun", "make_sample", "write_run", "file_digest",
           "check_unique", "json_objects", "manifest_of"]


class ImportFormatError(ValueError):
    """A file to import holds something recal cannot read: one line naming the file, the line
    (when one is at fault), what is wrong and how to fix it."""

    def __init__(self, file: str | os.PathLike[str], line: int | None, reason: str,
                 fix: str) -> None:
        self.file, self.line, self.reason, self.fix = os.fspath(file), line, reason, fix
        where = self.file if line is None else f"{self.file} line {line}"
        super().__init__(f"{where}: {reason}; fix: {fix}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.file, self.line, self.reason, self.fix))


@dataclass(frozen=True)
class ImportSettings:
    """What the user states about the answers' origin (``recal import`` options); None: not
    stated (the source's own value is used when it has one, else "unknown")."""

    model: str | None = None
    """The model's name."""
    kind: str | None = None
    """'chat' or 'base'."""
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    style: str | None = None
    """The prompt style the answers were asked in (concise, sentence, cot)."""
    dataset: str | None = None
    """The question set's name (default: the questions file's or the source file's stem)."""

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in ("chat", "base"):
            raise ValueError(f"kind must be 'chat' or 'base', got {self.kind!r}")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")


@dataclass(frozen=True)
class ImportedQuestion:
    line: int
    """The (first) line of the source file that holds this question's answers."""
    question: Question
    samples: tuple[Sample, ...]
    greedy: Sample | None = None


@dataclass
class ImportedRun:
    """A parsed source: its questions with their answers, and what the source states."""

    file: Path
    format: str
    questions: list[ImportedQuestion]
    stated: dict[str, Any] = field(default_factory=dict)
    """Settings the source file itself gives (model name, temperature, ...), as given."""
    questions_file: Path | None = None


@dataclass(frozen=True)
class ImportFormat:
    """One source format: ``parse(file, questions_file, options)`` -> :class:`ImportedRun`."""

    parse: Callable[..., ImportedRun]
    needs_questions: bool
    """Whether the answers file lacks the questions (a separate questions file is needed)."""
    help: str


IMPORT_FORMATS: Registry[ImportFormat] = Registry("import format")
"""The formats ``recal import --format NAME`` reads (recal, openai, lm-eval)."""


def make_sample(text: Any, logprobs: Sequence[Any] | None, finish_reason: Any, *,
                file: Path, line: int, what: str) -> Sample:
    """A :class:`Sample` from a source's answer text, its token log-probabilities (or None) and
    its finish reason ("length" when the answer was cut, otherwise "stop", as the http backend
    reads servers); refuses an answer without text, naming ``what`` ("sample 3 of 'q1'")."""
    if not isinstance(text, str):
        got = "no text" if text is None else f"{type(text).__name__} instead of text"
        raise ImportFormatError(file, line, f"{what} has {got}",
                                "give every sample its answer text (an empty answer is \"\")")
    values: tuple[float, ...] = ()
    if logprobs is not None:
        if not isinstance(logprobs, list | tuple) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) and x <= 0
                for x in logprobs):
            raise ImportFormatError(file, line, f"{what} has logprobs that are not a list of "
                                    "numbers <= 0", "give the token log-probabilities as a list "
                                    "of numbers, or leave the field out")
        values = tuple(float(x) for x in logprobs)
    return Sample(text=text, token_ids=(), logprobs=values,
                  finish_reason="length" if finish_reason == "length" else "stop")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _check_shape(run: ImportedRun) -> int:
    """M, the same for every question; refuses an empty source and a mismatched n."""
    if not run.questions:
        raise ImportFormatError(run.file, None, "holds no answers (the file is empty)",
                                "import a file with at least one question's samples")
    first = run.questions[0]
    m = len(first.samples)
    for item in run.questions:
        if not item.samples:
            raise ImportFormatError(run.file, item.line, f"question {item.question.id!r} has "
                                    "no samples", "give every question at least one sample")
        if len(item.samples) != m:
            raise ImportFormatError(
                run.file, item.line, f"question {item.question.id!r} has "
                f"{len(item.samples)} samples but {first.question.id!r} (line {first.line}) has "
                f"{m}", "give every question the same number of samples n")
    labelled = [item for item in run.questions if item.question.labelled]
    if labelled and len(labelled) != len(run.questions):
        bare = next(item for item in run.questions if not item.question.labelled)
        raise ImportFormatError(run.file, bare.line, f"question {bare.question.id!r} has no "
                                f"gold answers but {labelled[0].question.id!r} (line "
                                f"{labelled[0].line}) has", "give every question gold answers, "
                                "or none (an ungraded run)")
    return m


def manifest_of(run: ImportedRun, settings: ImportSettings, m: int) -> dict[str, Any]:
    """The run store's manifest: the source, the model and the sampling settings as given (by
    the user, else by the source), "unknown" where neither says."""
    stated = run.stated

    def given(key: str) -> Any:
        value = getattr(settings, key)
        if value is None:
            value = stated.get(key)
        return UNKNOWN if value is None else value

    samples = [s for item in run.questions for s in (*item.samples, item.greedy) if s is not None]
    greedy = all(item.greedy is not None for item in run.questions)
    dataset = settings.dataset or (run.questions_file or run.file).stem
    return {
        "model": {"name": given("model"), "kind": given("kind"), "backend": "import",
                  "source": str(run.file), "config_hash": UNKNOWN},
        "style": given("style"), "shots": None,
        "sampling": {"n_samples": m, "temperature": given("temperature"),
                     "top_p": given("top_p"), "max_new_tokens": given("max_new_tokens"),
                     "greedy": greedy, "logprobs": all(s.logprobs for s in samples),
                     "seed": UNKNOWN, "tau_grid": []},
        "questions": {"dataset": dataset},
        "source": {"format": run.format, "file": str(run.file),
                   "sha256": file_digest(run.file),
                   "questions_file": str(run.questions_file) if run.questions_file else None,
                   "stated_by_source": dict(stated),
                   "stated_by_user": {k: v for k, v in vars(settings).items()
                                      if v is not None}},
    }


def write_run(run: ImportedRun, out: str | Path, settings: ImportSettings | None = None, *,
              overwrite: bool = False) -> RunStore:
    """Write ``run`` as a run store at ``out`` and return it, opened.

    The store is written into a hidden folder beside ``out`` and renamed to ``out`` once every
    question is in it, so a process killed mid-import leaves ``out`` as it was (no folder, or
    the earlier run) and never a run that reads as complete. ``out`` must not hold a run unless
    ``overwrite``.
    """
    settings = settings or ImportSettings()
    out = Path(out)
    m = _check_shape(run)
    if out.exists() and not out.is_dir():
        raise RunMismatchError(f"{out} is a file, not a run folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "holds a run" if (out / MANIFEST).exists() else "exists and is not empty"
        raise RunMismatchError(f"{out} {what}; choose another --out, or --overwrite to replace "
                               "it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        questions = [item.question for item in run.questions]
        store = RunStore.create_or_resume(tmp / "run", manifest_of(run, settings, m), questions)
        for item in run.questions:
            store.append(QuestionSamples(item.question.id, item.samples, item.greedy))
        if len(RunStore.open(tmp / "run").samples_by_id()) != len(questions):  # read back
            raise RuntimeError(f"the import into {tmp} did not read back complete")
        if out.exists():
            old = tmp / "replaced"
            out.rename(old)
        (tmp / "run").rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return RunStore.open(out)


def check_unique(seen: Mapping[str, int], key: str, file: Path, line: int, what: str,
                 fix: str) -> None:
    """Refuse ``key`` when ``seen`` already has it (duplicate ids), naming both lines."""
    if key in seen:
        raise ImportFormatError(file, line, f"duplicate {what} {key!r} (first on line "
                                f"{seen[key]})", fix)


def json_objects(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each non-blank line of the JSON Lines ``file``, split at
    ``"\n"`` only (:mod:`recal.lines`; the last line needs no ``"\n"``); a line that is not
    UTF-8, not JSON or not an object is refused naming the line."""
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist")
    if not file.is_file():
        raise IsADirectoryError(f"{file} is a folder; name the JSON Lines file to import")
    data = file.read_bytes()
    if data and not data.endswith(b"\n"):
        data += b"\n"
    lines = read_text_lines(data)
    while True:
        try:
            number, text = next(lines)
        except StopIteration:
            return
        except ValueError as exc:  # "line N: not UTF-8 text (...)"
            where, _, reason = str(exc).partition(": ")
            raise ImportFormatError(file, int(where.split()[-1]), reason,
                                    "save the file as UTF-8") from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(file, number, f"not JSON ({exc.msg} at column "
                                    f"{exc.colno})", "write one JSON object per line "
                                    "(JSON Lines)") from None
        if not isinstance(value, dict):
            raise ImportFormatError(file, number, f"expected a JSON object, got "
                                    f"{type(value).__name__}", "write one JSON object per line")
        yield number, value
