"""How a source row becomes a :class:`~recal.data.records.Question`: the field map, and the
errors a question source raises.

:class:`FieldMap` names the fields holding a question's id, text, answers and metadata (dotted
names reach into nested objects); :class:`DataFormatError` names the file, line and reason when a
row cannot be read; :class:`RowError` is what one row's conversion raises before the caller adds
the file and line.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recal.data.records import Question

__all__ = [
    "DEFAULT_ANSWER_FIELDS",
    "DEFAULT_FIELDS",
    "FILE_SUFFIXES",
    "DataFormatError",
    "FieldMap",
    "RowError",
    "describe_fields",
    "describe_value",
]

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".txt")
"""The file name endings recal reads as question files (``.txt``: one prompt per line,
unlabelled)."""

DEFAULT_ANSWER_FIELDS = ("answers", "answer")
"""The fields read for gold answers unless told otherwise."""

class DataFormatError(ValueError):
    """A question file (or hub split) holds something recal cannot read.

    ``source`` names the file, ``line`` is the 1-based line where the bad row starts (``None`` when
    the whole file is at fault) and ``reason`` says what is wrong.
    """

    def __init__(self, source: str, line: int | None, reason: str, unit: str = "line") -> None:
        self.source = source
        self.line = line
        self.reason = reason
        self.unit = unit
        where = source if line is None else f"{source} {unit} {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the parts, so the error survives pickling (e.g. in worker processes).
        return (type(self), (self.source, self.line, self.reason, self.unit))



class RowError(ValueError):
    """One row is unreadable; the caller adds the file and line (as :class:`DataFormatError`)."""

# --------------------------------------------------------------------------- field mapping


@dataclass(frozen=True, kw_only=True)
class FieldMap:
    """Which fields of a source row hold a question's id, text, answers and metadata.

    A name may be dotted (``answer.value``) to reach into nested objects. ``question`` and
    ``answers`` take one name or a tuple of candidates: the first candidate a row holds (for CSV:
    the first the header names) is read, so the default reads ``answers`` and falls back to
    ``answer`` when a row has no ``answers`` field.

    With the default ``answers`` (and no ``aliases`` or ``answer_regex``), a row with neither
    field is an unlabelled question (``answers == ()``); a file may not mix the two
    (:func:`recal.data.files.build_questions` refuses it). A field named by the caller must be
    present.
    """

    id: str | None = field(
        default="id",
        metadata={
            "help": "Field holding the question id; when None, absent or empty, the id is "
            "'<prefix>-<index>' (file stem or set name, 0-based row index, 4 digits)."
        },
    )
    question: str | tuple[str, ...] = field(
        default="question", metadata={"help": "Field (or candidates) holding the question text."}
    )
    answers: str | tuple[str, ...] = field(
        default=DEFAULT_ANSWER_FIELDS,
        metadata={
            "help": "Field (or candidates) holding the gold answer: a string or a list of "
            "strings, gold first."
        },
    )
    aliases: str | None = field(
        default=None,
        metadata={"help": "Optional field with more accepted answers (string or list)."},
    )
    metadata: str | None = field(
        default="metadata",
        metadata={
            "help": "Optional field kept as Question.metadata: an object, or text holding a "
            "JSON object or Python dict literal."
        },
    )
    answer_regex: str | None = field(
        default=None,
        metadata={
            "help": "Regex with one group applied (re.search) to each answers value; group 1 "
            "is the gold, e.g. r'####\\s*(.+?)\\s*$' for GSM8K."
        },
    )
    question_regex: str | None = field(
        default=None,
        metadata={
            "help": "Regex with one group applied (re.search) to the question text; group 1 "
            "is the question."
        },
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "question", _field_names("question", self.question))
        object.__setattr__(self, "answers", _field_names("answers", self.answers))
        for name in ("id", "aliases", "metadata"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be a field name or None, got {value!r}")
        shared = set(self.question) & set(self.answers)
        if shared:
            raise ValueError(f"question and answers both name the field {sorted(shared)[0]!r}")
        _check_regex("answer_regex", self.answer_regex)
        _check_regex("question_regex", self.question_regex)

    def to_question(self, row: Mapping[str, Any], default_id: str) -> Question:
        """Build a :class:`Question` from one source row; ``default_id`` is used without an id."""
        return Question(
            id=self._id(row, default_id),
            question=self._question_text(row),
            answers=self._answers(row),
            metadata=self._metadata(row),
        )

    def _id(self, row: Mapping[str, Any], default_id: str) -> str:
        if self.id is None:
            return default_id
        value = _lookup(row, self.id)
        if value is _MISSING or value is None or (isinstance(value, str) and not value.strip()):
            return default_id
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RowError(f"id field {self.id!r} holds {describe_value(value)}, "
                           "expected text or an integer")
        return str(value).strip()

    def _question_text(self, row: Mapping[str, Any]) -> str:
        name, value = _first_present(row, self.question)
        if value is _MISSING:
            raise RowError(f"missing question (no field {describe_fields(self.question)})")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise RowError(f"question field {name!r} holds {describe_value(value)}, expected text")
        text = value.strip()
        if text and self.question_regex is not None:
            match = re.search(self.question_regex, text)
            if match is None:
                raise RowError(
                    f"question field {name!r} does not match question_regex {self.question_regex!r}"
                )
            text = (match.group(1) or "").strip()
        if not text:
            raise RowError(f"missing question (field {name!r} is empty)")
        return text

    @property
    def answers_optional(self) -> bool:
        """Whether a row without an answers field is an unlabelled question (the default fields
        only: a field the caller named must be there)."""
        return (self.answers == DEFAULT_ANSWER_FIELDS and self.aliases is None
                and self.answer_regex is None)

    def _answers(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        name, value = _first_present(row, self.answers)
        if value is _MISSING and self.answers_optional:
            return ()
        if value is _MISSING:
            raise RowError(f"no gold answer (no field {describe_fields(self.answers)})")
        gold = [text for text in _texts(value, name) if text.strip()]
        if self.answer_regex is not None:
            gold = [self._extract_gold(text, name) for text in gold]
        gold = _clean(gold)
        if not gold:
            raise RowError(f"no gold answer (field {name!r} is empty)")
        aliases: list[str] = []
        if self.aliases is not None:
            alias_value = _lookup(row, self.aliases)
            if alias_value is not _MISSING:
                aliases = _texts(alias_value, self.aliases)
        return tuple(_clean([*gold, *aliases]))

    def _extract_gold(self, text: str, name: str) -> str:
        match = re.search(self.answer_regex or "", text)
        if match is None:
            raise RowError(
                f"no gold answer (field {name!r} does not match answer_regex {self.answer_regex!r})"
            )
        return match.group(1) or ""

    def _metadata(self, row: Mapping[str, Any]) -> dict[str, Any]:
        if self.metadata is None:
            return {}
        value = _lookup(row, self.metadata)
        if value is _MISSING or value is None or value == "":
            return {}
        if isinstance(value, str):
            value = _parse_mapping_text(value)
        if isinstance(value, Mapping):
            return dict(value)
        return {self.metadata: value}


_MISSING: Any = object()


def _field_names(argument: str, names: str | Sequence[str]) -> tuple[str, ...]:
    candidates = (names,) if isinstance(names, str) else tuple(names)
    if not candidates or not all(isinstance(n, str) and n.strip() for n in candidates):
        raise ValueError(
            f"{argument} must be a field name or a tuple of field names, got {names!r}"
        )
    return candidates


def _check_regex(argument: str, pattern: str | None) -> None:
    if pattern is None:
        return
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{argument} {pattern!r} is not a valid regex ({exc})") from None
    if compiled.groups != 1:
        raise ValueError(
            f"{argument} {pattern!r} must have exactly one capturing group, "
            f"it has {compiled.groups}"
        )


def _lookup(row: Mapping[str, Any], name: str) -> Any:
    """The value of field ``name`` (dots reach into nested objects), or ``_MISSING``."""
    if name in row:
        return row[name]
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _first_present(row: Mapping[str, Any], names: Sequence[str]) -> tuple[str, Any]:
    for name in names:
        value = _lookup(row, name)
        if value is not _MISSING:
            return name, value
    return names[0], _MISSING


def describe_fields(names: Sequence[str]) -> str:
    """Candidate field names for a message: ``'answers' or 'answer'``."""
    return " or ".join(repr(n) for n in names)


def describe_value(value: Any) -> str:
    """What a JSON value is, for a message: "null", "a number", "an object", "a list", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _texts(value: Any, name: str) -> list[str]:
    """A string, a number or a list of them as a list of strings (numbers written as text)."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    texts = []
    for position, item in enumerate(items):
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            texts.append(str(item))
        else:
            where = "" if items is not value else f" at position {position}"
            raise RowError(
                f"field {name!r} holds {describe_value(item)}{where}, "
                "expected text or a list of text"
            )
    return texts


def _clean(answers: Iterable[str]) -> list[str]:
    """Strip each answer, drop empty ones and repeats, keep the first-seen order."""
    return list(dict.fromkeys(a.strip() for a in answers if a.strip()))


def _parse_mapping_text(text: str) -> Any:
    """Text holding a JSON object or a Python dict literal (SimpleQA's metadata), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


DEFAULT_FIELDS = FieldMap()
"""Reads ``id``, ``question``, ``answers`` (or ``answer``) and ``metadata``."""
