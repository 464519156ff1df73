"""What recal means by "a line", in its files and in model output: text up to ``"\\n"`` alone.

Python's ``str.splitlines`` also breaks at U+2028, U+2029, U+0085, ``\\x0b``, ``\\x0c`` and
``\\x1c``-``\\x1e``. A model sampling at T = 1 with no truncation can produce any of them, and JSON
written with ``ensure_ascii=False`` keeps U+2028, U+2029 and U+0085 raw, so a reader that used
``splitlines`` would cut one JSON Lines record in two. Every reader of a line-oriented file and
every place that means "a line" of an answer (answer extraction, the sampler's end-of-line stop)
uses the helpers here, so the rule is stated once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["NEWLINE", "split_lines", "first_line", "dumps_line", "iter_jsonl", "read_text_lines"]

NEWLINE = "\n"
"""The one line break recal recognises, in files and in model output."""


def split_lines(text: str) -> list[str]:
    """``text`` cut at ``"\\n"`` only (``"a\\u2028b\\nc"`` -> ``["a\\u2028b", "c"]``)."""
    return text.split(NEWLINE)


def first_line(text: str) -> str:
    """Everything before the first ``"\\n"`` (the whole text when it has none)."""
    return text.split(NEWLINE, 1)[0]


def dumps_line(value: Any) -> str:
    """One JSON Lines record: compact strict JSON, non-ASCII kept raw, ending in ``"\\n"``.

    JSON escapes every control character below U+0020, so ``"\\n"`` can only be the record's end.
    A NaN or infinite number (which strict JSON cannot hold, and other readers refuse) raises
    ``ValueError`` naming where it is, before anything is written.
    """
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False) + NEWLINE
    except ValueError:
        found = _first_non_finite(value)
        if found is None:
            raise
        where, number = found
        raise ValueError(f"a record to write holds {number!r} at {where}: JSON has no NaN or "
                         "infinity (an undefined number is written as None)") from None


def _first_non_finite(value: Any) -> tuple[str, float] | None:
    """(``path``, number) of the first NaN or infinity in ``value`` (``samples[0].logprobs[2]``)."""
    stack: list[tuple[str, Any]] = [("the top", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path, item
        prefix = "" if path == "the top" else path
        if isinstance(item, dict):
            stack.extend((f"{prefix}.{k}" if prefix else str(k), v)
                         for k, v in reversed(list(item.items())))
        elif isinstance(item, list | tuple):
            stack.extend((f"{prefix}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return None


def read_text_lines(data: bytes) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each complete line of UTF-8 ``data``, split at ``b"\\n"`` only.

    A last line without ``"\\n"`` is left out (a writer killed mid-line leaves one); blank lines
    are skipped but counted. Raises :class:`ValueError` naming the line for bytes that are not
    UTF-8.
    """
    complete = data[: data.rfind(b"\n") + 1]
    for number, raw in enumerate(complete.split(b"\n")[:-1], start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"line {number}: not UTF-8 text (bad byte at column "
                             f"{exc.start + 1})") from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        if text.strip():
            yield number, text


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each complete record of a JSON Lines file written by recal.

    Raises :class:`ValueError` naming the file and line for a line that is not JSON or not UTF-8.
    """
    path = Path(path)
    lines = read_text_lines(path.read_bytes())
    while True:
        try:
            number, text = next(lines)
        except StopIteration:
            return
        except ValueError as exc:
            raise ValueError(f"{path} {exc}") from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line {number}: damaged record ({exc})") from None
        yield number, value
