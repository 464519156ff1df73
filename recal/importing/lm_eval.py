"""lm-evaluation-harness sample logs (``lm_eval ... --log_samples``) of a ``generate_until``
task with repeated generations (``repeats: M`` in the task's YAML).

Each line of ``samples_<task>_<date>.jsonl`` is one document under one filter::

    {"doc_id": 0, "doc": {"question": "...", ...}, "target": "Paris",
     "arguments": {"gen_args_0": {"arg_0": "<prompt>", "arg_1": {"temperature": 1.0, ...}}},
     "resps": [["Paris", "Lyon", ...]], "filtered_resps": ["Paris"], "filter": "none", ...}

(older versions write ``"arguments": [["<prompt>", {gen_kwargs}]]``). ``resps[0]`` holds the M
raw generations of the one request; ``filtered_resps`` holds what the task's filter kept (with
the default ``take_first`` filter, only the first), so the raw ``resps`` are read unless
``responses="filtered_resps"`` is asked for. A document logged under several filters appears
once per filter: the rows of the first filter (or of ``filter``) are read, the others skipped.

The question is ``doc[question_field]`` (default ``question``), else the prompt of the request;
the gold answers are ``target`` (a string or a list; absent or empty on every line: ungraded);
the id is ``doc_id``. The request's generation arguments give the temperature and the answer
length, as stated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recal.data.records import Question
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

__all__ = ["parse_lm_eval"]


def _request(arguments: Any) -> tuple[Any, dict[str, Any]]:
    """(prompt, generation kwargs) of the first request, in either layout lm-eval writes."""
    if isinstance(arguments, dict) and arguments:
        first = next(iter(arguments.values()))
        if isinstance(first, dict):
            kwargs = first.get("arg_1")
            return first.get("arg_0"), kwargs if isinstance(kwargs, dict) else {}
    if isinstance(arguments, list) and arguments and isinstance(arguments[0], list | tuple):
        request = arguments[0]
        kwargs = request[1] if len(request) > 1 and isinstance(request[1], dict) else {}
        return (request[0] if request else None), kwargs
    return None, {}


def _gold(target: Any) -> tuple[str, ...]:
    items = target if isinstance(target, list) else [target]
    return tuple(dict.fromkeys(str(t).strip() for t in items
                               if isinstance(t, str | int | float) and not isinstance(t, bool)
                               and str(t).strip()))


def _stated(kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(kwargs.get("temperature"), int | float) and kwargs["temperature"] > 0:
        out["temperature"] = float(kwargs["temperature"])
    if isinstance(kwargs.get("top_p"), int | float):
        out["top_p"] = float(kwargs["top_p"])
    tokens = kwargs.get("max_gen_toks", kwargs.get("max_new_tokens"))
    if isinstance(tokens, int) and tokens > 0:
        out["max_new_tokens"] = tokens
    return out


def parse_lm_eval(file: Path, questions_file: Path | None = None, *,
                  responses: str = "resps", question_field: str = "question",
                  filter: str | None = None, **_: Any) -> ImportedRun:
    """Read an lm-evaluation-harness sample log (see the module docstring)."""
    if questions_file is not None:
        raise ValueError("an lm-eval sample log holds its documents; --questions applies to "
                         "the openai format")
    if responses not in ("resps", "filtered_resps"):
        raise ValueError(f"responses must be 'resps' or 'filtered_resps', got {responses!r}")
    seen: dict[str, int] = {}
    items: list[ImportedQuestion] = []
    stated: dict[str, Any] = {}
    for line, row in json_objects(file):
        row_filter = row.get("filter")
        filter = row_filter if filter is None else filter
        if row_filter != filter:
            continue  # the same document under another filter
        if "doc_id" not in row:
            raise ImportFormatError(file, line, "has no doc_id",
                                    "import the samples_*.jsonl file lm_eval --log_samples wrote")
        qid = str(row["doc_id"])
        check_unique(seen, qid, file, line, "doc_id",
                     "import one task's sample log per run (each document once per filter)")
        seen[qid] = line
        prompt, kwargs = _request(row.get("arguments"))
        doc = row.get("doc") if isinstance(row.get("doc"), dict) else {}
        text = doc.get(question_field, prompt)
        if not isinstance(text, str) or not text.strip():
            raise ImportFormatError(file, line, f"document {qid} has no question (no doc field "
                                    f"{question_field!r} and no request prompt)",
                                    "name the doc field that holds the question "
                                    "(--question-field)")
        value = row.get(responses)
        if not isinstance(value, list) or len(value) != 1:
            got = "nothing" if not isinstance(value, list) else f"{len(value)} requests"
            raise ImportFormatError(file, line, f"document {qid}'s {responses} holds {got}, "
                                    "expected one generate_until request", "import a "
                                    "generate_until task's log (one request with repeats)")
        texts = value[0] if isinstance(value[0], list) else [value[0]]
        samples = tuple(make_sample(t, None, None, file=file, line=line,
                                    what=f"response {k + 1} of document {qid}")
                        for k, t in enumerate(texts))
        question = Question(qid, text.strip(), _gold(row.get("target")),
                            {"lm_eval_filter": row_filter} if row_filter else {})
        items.append(ImportedQuestion(line, question, samples))
        for key, setting in _stated(kwargs).items():
            stated.setdefault(key, setting)
    return ImportedRun(file, "lm-eval", items, stated=stated)


IMPORT_FORMATS.register("lm-eval", ImportFormat(
    parse_lm_eval, needs_questions=False,
    help="lm-evaluation-harness --log_samples JSONL of a task with repeats"))
