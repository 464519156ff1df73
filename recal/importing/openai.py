"""OpenAI-compatible chat completion responses: a batch output file, or captured responses.

Each line holds one response and the ``custom_id`` of its request, in the shape of the OpenAI
Batch API's output file::

    {"custom_id": "q1", "response": {"status_code": 200, "body": {"model": "...",
     "choices": [{"message": {"content": "Paris"}, "finish_reason": "stop",
                  "logprobs": {"content": [{"token": "Paris", "logprob": -0.1}]}}, ...]}},
     "error": null}

``{"custom_id": ..., "body": {...}}`` and a bare completion object with a ``custom_id`` field are
read the same way, and a text completion's ``choices[i].text`` with
``logprobs.token_logprobs`` too. A question's samples are every choice of every response to it:
one request with ``n`` choices, or repeated requests (a server that ignores ``n``) whose
``custom_id`` is the question's id followed by a separator and a number (``q1-0``, ``q1-1``,
``q1#2``). The questions come from a separate questions file (``--questions``), matched by id.
Token log-probs are read when every choice has them: request them with ``"logprobs": true`` and
``"top_logprobs": 1`` (llama.cpp's server returns none unless ``top_logprobs`` is given).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from recal.data.loaders import load_questions
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
from recal.samples import Sample

__all__ = ["parse_openai"]

_REPEAT = re.compile(r"(.+)[-_#:/.](\d+)")


def _body(row: dict[str, Any], file: Path, line: int) -> dict[str, Any]:
    error = row.get("error")
    if error:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ImportFormatError(file, line, f"the request failed ({message})",
                                "rerun the failed requests, or remove the line")
    if "response" in row:
        response = row["response"] or {}
        status = response.get("status_code", 200)
        if status != 200:
            raise ImportFormatError(file, line, f"the request failed (status {status})",
                                    "rerun the failed requests, or remove the line")
        body = response.get("body")
    else:
        body = row.get("body", row if "choices" in row else None)
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise ImportFormatError(file, line, "holds no completion (no response.body.choices)",
                                "give each line a response body with its choices, as the "
                                "OpenAI Batch API writes it")
    return body


def _choice(choice: Any, file: Path, line: int, what: str) -> Sample:
    if not isinstance(choice, dict):
        raise ImportFormatError(file, line, f"{what} is not an object",
                                "write each choice as the API returns it")
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    logprobs = choice.get("logprobs")
    values = None
    if isinstance(logprobs, dict):
        if isinstance(logprobs.get("content"), list):
            values = [t.get("logprob") if isinstance(t, dict) else None
                      for t in logprobs["content"]]
        elif isinstance(logprobs.get("token_logprobs"), list):
            values = logprobs["token_logprobs"]
    return make_sample(text, values, choice.get("finish_reason"), file=file, line=line,
                       what=what)


def _question_id(custom_id: str, by_id: dict[str, Question]) -> str | None:
    if custom_id in by_id:
        return custom_id
    match = _REPEAT.fullmatch(custom_id)
    return match.group(1) if match and match.group(1) in by_id else None


def parse_openai(file: Path, questions_file: Path | None = None, **_: Any) -> ImportedRun:
    """Read a file of chat completion responses, matched to ``questions_file`` by id."""
    if questions_file is None:
        raise ValueError("the openai format holds answers only: name the questions file with "
                         "--questions (a .jsonl/.csv/.json with ids, or a .txt of prompts)")
    questions = load_questions(questions_file)
    by_id = {q.id: q for q in questions}
    seen: dict[str, int] = {}
    first_line: dict[str, int] = {}
    samples: dict[str, list[Sample]] = {}
    models: dict[str, int] = {}
    for line, row in json_objects(file):
        custom_id = row.get("custom_id")
        if not isinstance(custom_id, str | int) or isinstance(custom_id, bool):
            raise ImportFormatError(file, line, "has no custom_id",
                                    "give each line the custom_id of its request (the "
                                    "question's id)")
        custom_id = str(custom_id)
        check_unique(seen, custom_id, file, line, "custom_id",
                     "give each request its own custom_id ('<id>-<k>' for the k-th request "
                     "of one question)")
        seen[custom_id] = line
        qid = _question_id(custom_id, by_id)
        if qid is None:
            raise ImportFormatError(file, line, f"custom_id {custom_id!r} matches no question "
                                    f"id of {questions_file}", "use the question's id as "
                                    "custom_id, or '<id>-<k>' for its k-th request")
        body = _body(row, file, line)
        if isinstance(body.get("model"), str):
            models.setdefault(body["model"], line)
        first_line.setdefault(qid, line)
        samples.setdefault(qid, []).extend(
            _choice(c, file, line, f"choice {k} of custom_id {custom_id!r}")
            for k, c in enumerate(body["choices"]))
    if len(models) > 1:
        (a, la), (b, lb) = list(models.items())[:2]
        raise ImportFormatError(file, lb, f"the response comes from model {b!r} but line {la}'s "
                                f"from {a!r}", "import one model's answers per run")
    if seen:
        missing = [q.id for q in questions if q.id not in samples]
        if missing:
            raise ImportFormatError(file, None, f"{len(missing)} questions of {questions_file} "
                                    f"have no response (first: {missing[0]!r})",
                                    "add their responses, or remove them from the questions "
                                    "file")
    items = [ImportedQuestion(first_line[q.id], q, tuple(samples[q.id])) for q in questions
             if q.id in samples]
    return ImportedRun(file, "openai", items,
                       stated={"model": next(iter(models))} if models else {},
                       questions_file=Path(questions_file))


IMPORT_FORMATS.register("openai", ImportFormat(
    parse_openai, needs_questions=True,
    help="OpenAI-compatible chat completion responses (batch output), with --questions"))
