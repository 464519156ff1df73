"""recal's own import format: one JSON object per line, documented in docs/import.md.

    {"id": "q1", "question": "What is the capital of France?", "answers": ["Paris"],
     "samples": ["Paris", {"text": "Paris.", "logprobs": [-0.02, -0.4], "finish_reason": "stop"}],
     "greedy": {"text": "Paris", "logprobs": [-0.01]}}

``question`` and ``samples`` are required; ``id`` defaults to ``<file stem>-<index>``;
``answers`` (or ``answer``) holds the gold answers and may be left out on every line (an
ungraded run); ``greedy`` and each sample's ``logprobs`` and ``finish_reason`` are optional.
A sample is a string (its text) or an object with ``text``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recal.data.fields import DEFAULT_FIELDS, RowError
from recal.data.files import derived_id
from recal.importing.base import (
    IMPORT_FORMATS,
    ImportedQuestion,
    ImportedRun,
    ImportFormat,
    ImportFormatError,
    check_unique,
    json_objects,
    make_sample,
)
from recal.samples import Sample

__all__ = ["parse_recal"]


def _sample(value: Any, file: Path, line: int, what: str) -> Sample:
    if isinstance(value, dict):
        return make_sample(value.get("text"), value.get("logprobs"), value.get("finish_reason"),
                           file=file, line=line, what=what)
    return make_sample(value, None, None, file=file, line=line, what=what)


def parse_recal(file: Path, questions_file: Path | None = None, **_: Any) -> ImportedRun:
    """Read a recal import file (see the module docstring)."""
    if questions_file is not None:
        raise ValueError("the recal format holds its questions; --questions applies to the "
                         "openai format")
    seen: dict[str, int] = {}
    items: list[ImportedQuestion] = []
    for index, (line, row) in enumerate(json_objects(file)):
        try:
            question = DEFAULT_FIELDS.to_question(row, derived_id(file.stem, index))
        except (RowError, ValueError) as exc:
            raise ImportFormatError(file, line, str(exc), "give every line a 'question' text "
                                    "(and, if graded, an 'answers' list)") from None
        check_unique(seen, question.id, file, line, "id",
                     "give every question its own id (merge the samples of one question)")
        seen[question.id] = line
        samples = row.get("samples")
        if not isinstance(samples, list):
            got = "no 'samples' field" if samples is None else "'samples' that is not a list"
            raise ImportFormatError(file, line, f"question {question.id!r} has {got}",
                                    "give each line a 'samples' list of answer texts")
        parsed = tuple(_sample(s, file, line, f"sample {k + 1} of {question.id!r}")
                       for k, s in enumerate(samples))
        greedy = row.get("greedy")
        items.append(ImportedQuestion(line, question, parsed, None if greedy is None else
                                      _sample(greedy, file, line,
                                              f"the greedy answer of {question.id!r}")))
    return ImportedRun(file, "recal", items)


IMPORT_FORMATS.register("recal", ImportFormat(parse_recal, needs_questions=False,
                                              help="recal's JSON Lines (docs/import.md)"))
