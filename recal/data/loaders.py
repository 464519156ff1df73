"""Read question sets: JSON Lines, JSON and CSV files, the packaged set and the named public sets.

Every loader returns a list of :class:`~recal.data.records.Question`. A row recal cannot read raises
:class:`DataFormatError` naming the file, the 1-based line and what is wrong; ``skip_bad=True``
skips such rows instead and warns once with a summary.

Named sets (:data:`DATASETS`) are read from a local copy under a data folder (``data_dir`` or the
``RECAL_DATA_DIR`` environment variable) when one is there, and otherwise from the Hugging Face hub
through the optional ``datasets`` package (``pip install 'recal[hub]'``), imported only then.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from recal.data.records import Question
from recal.registry import Registry

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DEFAULT_FIELDS",
    "DataFormatError",
    "DatasetSpec",
    "FieldMap",
    "load_csv",
    "load_jsonl",
    "load_questions",
]

DATA_DIR_ENV = "RECAL_DATA_DIR"
"""Environment variable naming the folder that holds local copies of the named sets."""

_FILE_SUFFIXES = (".jsonl", ".json", ".csv")


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


class _BadRow(ValueError):
    """One row is unreadable; the caller adds the file and line."""


# --------------------------------------------------------------------------- field mapping


@dataclass(frozen=True, kw_only=True)
class FieldMap:
    """Which fields of a source row hold a question's id, text, answers and metadata.

    A name may be dotted (``answer.value``) to reach into nested objects. ``question`` and
    ``answers`` take one name or a tuple of candidates: the first candidate a row holds (for CSV:
    the first the header names) is read, so the default reads ``answers`` and falls back to
    ``answer`` when a row has no ``answers`` field.
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
        default=("answers", "answer"),
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
            raise _BadRow(f"id field {self.id!r} holds {_kind(value)}, expected text or an integer")
        return str(value).strip()

    def _question_text(self, row: Mapping[str, Any]) -> str:
        name, value = _first_present(row, self.question)
        if value is _MISSING:
            raise _BadRow(f"missing question (no field {_describe(self.question)})")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise _BadRow(f"question field {name!r} holds {_kind(value)}, expected text")
        text = value.strip()
        if text and self.question_regex is not None:
            match = re.search(self.question_regex, text)
            if match is None:
                raise _BadRow(
                    f"question field {name!r} does not match question_regex {self.question_regex!r}"
                )
            text = (match.group(1) or "").strip()
        if not text:
            raise _BadRow(f"missing question (field {name!r} is empty)")
        return text

    def _answers(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        name, value = _first_present(row, self.answers)
        if value is _MISSING:
            raise _BadRow(f"no gold answer (no field {_describe(self.answers)})")
        gold = [text for text in _texts(value, name) if text.strip()]
        if self.answer_regex is not None:
            gold = [self._extract_gold(text, name) for text in gold]
        gold = _clean(gold)
        if not gold:
            raise _BadRow(f"no gold answer (field {name!r} is empty)")
        aliases: list[str] = []
        if self.aliases is not None:
            alias_value = _lookup(row, self.aliases)
            if alias_value is not _MISSING:
                aliases = _texts(alias_value, self.aliases)
        return tuple(_clean([*gold, *aliases]))

    def _extract_gold(self, text: str, name: str) -> str:
        match = re.search(self.answer_regex or "", text)
        if match is None:
            raise _BadRow(
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


def _describe(names: Sequence[str]) -> str:
    return " or ".join(repr(n) for n in names)


def _kind(value: Any) -> str:
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
            raise _BadRow(
                f"field {name!r} holds {_kind(item)}{where}, expected text or a list of text"
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


# --------------------------------------------------------------------------- reading rows


@dataclass(frozen=True)
class _Record:
    """One raw row: its first line, its 0-based index (for derived ids), its fields or the error."""

    line: int
    index: int
    row: Mapping[str, Any] | None
    error: str | None = None


def _json_record(text: str, line: int, index: int) -> _Record:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return _Record(line, index, None, f"invalid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(value, dict):
        return _Record(line, index, None, f"expected a JSON object, got {_kind(value)}")
    return _Record(line, index, value)


def _jsonl_records(path: Path) -> Iterator[_Record]:
    # Binary lines split on b"\n" only: JSON strings may hold U+2028, which str.splitlines splits.
    index = 0
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield _Record(line_no, index, None, f"not UTF-8 text (bad byte at {exc.start + 1})")
                index += 1
                continue
            if line_no == 1:
                text = text.removeprefix("\ufeff")
            if text.strip():
                yield _json_record(text, line_no, index)
                index += 1


def _json_array_records(path: Path, source: str) -> Iterator[_Record]:
    """Items of a file holding one JSON array; ``line`` counts items, not lines."""
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataFormatError(source, None, f"is not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            source, exc.lineno, f"invalid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if not isinstance(value, list):
        raise DataFormatError(
            source, None, f"expected a JSON array of objects or JSON Lines, got {_kind(value)}"
        )
    for index, item in enumerate(value):
        if isinstance(item, dict):
            yield _Record(index + 1, index, item)
        else:
            yield _Record(index + 1, index, None, f"expected a JSON object, got {_kind(item)}")


def _csv_header(reader: Any, source: str, fields: FieldMap) -> list[str]:
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise DataFormatError(source, None, "the file is empty (expected a header row)") from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataFormatError(source, 1, f"column {repeated[0]!r} appears twice in the header")
    for what, names in (("question", fields.question), ("answers", fields.answers)):
        if not any(name in header for name in names):
            raise DataFormatError(
                source,
                1,
                f"no {what} column {_describe(names)} in the header (columns: {', '.join(header)})",
            )
    return header


def _csv_records(path: Path, source: str, fields: FieldMap) -> Iterator[_Record]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = _csv_header(reader, source, fields)
            index = 0
            end_of_previous = reader.line_num
            for cells in reader:
                start, end_of_previous = end_of_previous + 1, reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(header):
                    reason = f"has {len(cells)} fields but the header has {len(header)} columns"
                    yield _Record(start, index, None, reason)
                else:
                    yield _Record(start, index, dict(zip(header, cells, strict=True)))
                index += 1
        except csv.Error as exc:
            raise DataFormatError(source, reader.line_num, f"unreadable CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise DataFormatError(source, None, f"is not UTF-8 text ({exc.reason})") from None


# --------------------------------------------------------------------------- rows to questions

_Converter = Callable[[Mapping[str, Any], str], Question]


def _derived_id(prefix: str, index: int) -> str:
    return f"{prefix}-{index:04d}"


def _build(
    records: Iterable[_Record],
    convert: _Converter,
    *,
    source: str,
    prefix: str,
    skip_bad: bool,
    unit: str = "line",
) -> list[Question]:
    """Convert records to questions, refusing (or with ``skip_bad``, skipping) unreadable rows."""
    questions: list[Question] = []
    first_seen: dict[str, int] = {}
    skipped: list[DataFormatError] = []
    total = 0
    for record in records:
        total += 1
        try:
            question = _convert(record, convert, prefix, first_seen, unit)
        except ValueError as exc:
            error = DataFormatError(source, record.line, str(exc), unit=unit)
            if not skip_bad:
                raise error from None
            skipped.append(error)
            continue
        first_seen[question.id] = record.line
        questions.append(question)
    if total == 0:
        raise DataFormatError(source, None, "holds no questions (it is empty)")
    if not questions:
        raise DataFormatError(source, None, f"all {total} rows are bad; the first: {skipped[0]}")
    if skipped:
        warnings.warn(
            f"{source}: skipped {len(skipped)} of {total} rows that could not be read; "
            f"the first: {skipped[0]}",
            stacklevel=4,
        )
    return questions


def _convert(
    record: _Record, convert: _Converter, prefix: str, first_seen: Mapping[str, int], unit: str
) -> Question:
    if record.error is not None or record.row is None:
        raise _BadRow(record.error or "empty row")
    question = convert(record.row, _derived_id(prefix, record.index))
    if question.id in first_seen:
        raise _BadRow(
            f"duplicate id {question.id!r} (first used on {unit} {first_seen[question.id]})"
        )
    return question


def _existing_file(path: str | os.PathLike[str]) -> Path:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"question file {os.fspath(path)} does not exist")
    if not file.is_file():
        raise IsADirectoryError(f"{os.fspath(path)} is a folder, expected a question file")
    return file


def load_jsonl(
    path: str | os.PathLike[str],
    fields: FieldMap = DEFAULT_FIELDS,
    *,
    skip_bad: bool = False,
    id_prefix: str | None = None,
) -> list[Question]:
    """Read a JSON Lines file, one object per line; blank lines are ignored.

    Rows without an id get ``<id_prefix>-<index>`` (default prefix: the file stem).
    """
    file = _existing_file(path)
    return _build(
        _jsonl_records(file),
        fields.to_question,
        source=os.fspath(path),
        prefix=id_prefix or file.stem,
        skip_bad=skip_bad,
    )


def load_csv(
    path: str | os.PathLike[str],
    fields: FieldMap = DEFAULT_FIELDS,
    *,
    skip_bad: bool = False,
    id_prefix: str | None = None,
) -> list[Question]:
    """Read a CSV file with a header row; errors name the line where the bad row starts.

    Cells are text, so ``answers`` and ``aliases`` hold one answer each; blank rows are ignored.
    """
    file = _existing_file(path)
    source = os.fspath(path)
    return _build(
        _csv_records(file, source, fields),
        fields.to_question,
        source=source,
        prefix=id_prefix or file.stem,
        skip_bad=skip_bad,
    )


def _load_json(
    path: str | os.PathLike[str],
    fields: FieldMap,
    *,
    skip_bad: bool,
    id_prefix: str | None = None,
) -> list[Question]:
    """A ``.json`` file: one JSON array of objects (errors count items), or else JSON Lines."""
    file = _existing_file(path)
    with file.open("rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        return load_jsonl(path, fields, skip_bad=skip_bad, id_prefix=id_prefix)
    source = os.fspath(path)
    return _build(
        _json_array_records(file, source),
        fields.to_question,
        source=source,
        prefix=id_prefix or file.stem,
        skip_bad=skip_bad,
        unit="item",
    )


def _load_file(
    path: Path, fields: FieldMap, *, skip_bad: bool, id_prefix: str | None = None
) -> list[Question]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return load_csv(path, fields, skip_bad=skip_bad, id_prefix=id_prefix)
    if suffix == ".json":
        return _load_json(path, fields, skip_bad=skip_bad, id_prefix=id_prefix)
    if suffix == ".jsonl":
        return load_jsonl(path, fields, skip_bad=skip_bad, id_prefix=id_prefix)
    raise ValueError(f"cannot tell the format of {path}: name the file .jsonl, .json or .csv")


# --------------------------------------------------------------------------- named sets


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """A named public question set: where its local copy lies and where the hub keeps it."""

    name: str = field(metadata={"help": "Registry name, lower case; prefix of derived ids."})
    description: str = field(metadata={"help": "One line for listings."})
    local_path: str = field(
        metadata={
            "help": "Path of the local copy relative to the data folder (for the packaged set: "
            "relative to recal/data/); .jsonl, .json or .csv."
        }
    )
    fields: FieldMap = field(
        default=DEFAULT_FIELDS, metadata={"help": "How to read the local copy's rows."}
    )
    hub_id: str | None = field(
        default=None, metadata={"help": "Hugging Face dataset id; None when there is no hub copy."}
    )
    hub_config: str | None = field(default=None, metadata={"help": "Hub config name, if any."})
    hub_split: str = field(default="test", metadata={"help": "Hub split to read."})
    hub_fields: FieldMap | None = field(
        default=None,
        metadata={"help": "How to read hub rows; None means the same as the local copy."},
    )
    packaged: bool = field(
        default=False, metadata={"help": "True for the set shipped inside the recal package."}
    )

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower():
            raise ValueError(f"name must be a non-empty lower-case string, got {self.name!r}")
        if not self.local_path.lower().endswith(_FILE_SUFFIXES):
            raise ValueError(
                f"local_path of {self.name!r} must end in .jsonl, .json or .csv, "
                f"got {self.local_path!r}"
            )
        if self.packaged and self.hub_id is not None:
            raise ValueError(f"the packaged set {self.name!r} cannot also name a hub copy")
        if self.hub_fields is None:
            object.__setattr__(self, "hub_fields", self.fields)

    def from_hub_row(self, row: Mapping[str, Any], index: int) -> Question:
        """Convert the ``index``-th (0-based) row of the hub split into a :class:`Question`."""
        fields = self.hub_fields or self.fields
        return fields.to_question(row, _derived_id(self.name, index))


DATASETS: Registry[DatasetSpec] = Registry("dataset")
"""The named question sets ``load_questions`` knows, by name."""


def _register(spec: DatasetSpec) -> None:
    DATASETS.register(spec.name, spec)


_register(
    DatasetSpec(
        name="builtin",
        description="recal's small packaged question set, for offline smoke runs",
        local_path="builtin/questions.jsonl",
        packaged=True,
    )
)
_register(
    DatasetSpec(
        name="triviaqa",
        description="TriviaQA trivia questions (local: 3,000-question subset; hub: rc.nocontext "
        "validation, 17,944)",
        local_path="triviaqa/triviaqa_sm_sub.jsonl",
        fields=FieldMap(
            id=None,
            question="context",
            question_regex=r"(?s)^Question:\s*(.+?)\s*\n\s*Answer:\s*$",
            answers="answer",
            aliases="aliases",
            metadata=None,
        ),
        hub_id="mandarjoshi/trivia_qa",
        hub_config="rc.nocontext",
        hub_split="validation",
        hub_fields=FieldMap(
            id="question_id",
            question="question",
            answers="answer.value",
            aliases="answer.aliases",
            metadata=None,
        ),
    )
)
_register(
    DatasetSpec(
        name="nq-open",
        description="Natural Questions, open-domain form (dev split, 3,610 questions)",
        local_path="nq_open/NQ-open.dev.jsonl",
        fields=FieldMap(id=None, answers="answer", metadata=None),
        hub_id="google-research-datasets/nq_open",
        hub_split="validation",
    )
)
_register(
    DatasetSpec(
        name="simpleqa",
        description="OpenAI SimpleQA, short factual questions (test set, 4,326)",
        local_path="simpleqa/simple_qa_test_set.csv",
        # The copy we know renames OpenAI's columns problem/answer to question/true_answer.
        fields=FieldMap(
            id=None,
            question=("question", "problem"),
            answers=("true_answer", "answer"),
            metadata="metadata",
        ),
        hub_id="basicv8vc/SimpleQA",
        hub_split="test",
        hub_fields=FieldMap(id=None, question="problem", answers="answer", metadata="metadata"),
    )
)
_register(
    DatasetSpec(
        name="gsm8k",
        description="GSM8K grade-school maths (test, 1,319); the gold is the number after ####",
        local_path="gsm8k/test.jsonl",
        fields=FieldMap(id=None, answers="answer", answer_regex=r"####\s*(.+?)\s*$", metadata=None),
        hub_id="openai/gsm8k",
        hub_config="main",
        hub_split="test",
    )
)
_register(
    DatasetSpec(
        name="sciq",
        description="SciQ science exam questions, correct answer only (test, 1,000)",
        local_path="sciq/sciq_test.jsonl",
        fields=FieldMap(id=None, answers="answer", metadata=None),
        hub_id="allenai/sciq",
        hub_split="test",
        hub_fields=FieldMap(id=None, answers="correct_answer", metadata=None),
    )
)
_register(
    DatasetSpec(
        name="popqa",
        description="PopQA entity questions (local: FlashRAG 1,000 sample; hub: FlashRAG test, "
        "14,267)",
        local_path="popqa/flashrag_test_1k_subsample.jsonl",
        fields=FieldMap(id="id", answers="golden_answers", metadata="metadata"),
        hub_id="RUC-NLPIR/FlashRAG_datasets",
        hub_config="popqa",
        hub_split="test",
    )
)


def _data_root(data_dir: str | os.PathLike[str] | None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir)
    from_env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(from_env) if from_env else None


def _load_packaged(spec: DatasetSpec, *, skip_bad: bool) -> list[Question]:
    resource = resources.files("recal").joinpath("data", *spec.local_path.split("/"))
    if not resource.is_file():
        raise FileNotFoundError(
            f"the packaged question set recal/data/{spec.local_path} is missing from this "
            "installation of recal; reinstall recal or pass a question file instead"
        )
    with resources.as_file(resource) as path:
        return _load_file(path, spec.fields, skip_bad=skip_bad, id_prefix=spec.name)


def _offline_error(spec: DatasetSpec, root: Path | None, reason: str) -> RuntimeError:
    if root is None:
        where = f"no data folder was given (--data-dir or ${DATA_DIR_ENV})"
    else:
        where = f"there is no {root / spec.local_path}"
    return RuntimeError(
        f"dataset {spec.name!r} is not available offline: {where}, and {reason}. Install "
        "recal[hub] (pip install 'recal[hub]') on a machine with internet access, or pass "
        f"--data-dir pointing at a folder holding {spec.local_path}"
    )


def _load_from_hub(spec: DatasetSpec, root: Path | None, *, skip_bad: bool) -> list[Question]:
    if spec.hub_id is None:
        raise _offline_error(spec, root, "it has no copy on the hub")
    try:
        import datasets  # optional: recal[hub]
    except ImportError:
        raise _offline_error(spec, root, "the `datasets` package is not installed") from None
    try:
        table = datasets.load_dataset(spec.hub_id, spec.hub_config, split=spec.hub_split)
    except Exception as exc:  # no network, gated, renamed...: all mean "not reachable from here"
        reason = f"the hub copy {spec.hub_id} could not be loaded ({type(exc).__name__}: {exc})"
        raise _offline_error(spec, root, reason) from exc
    config = f"{spec.hub_config}/" if spec.hub_config else ""
    return _build(
        (_Record(index + 1, index, row) for index, row in enumerate(table)),
        (spec.hub_fields or spec.fields).to_question,
        source=f"{spec.hub_id} ({config}{spec.hub_split}) from the hub",
        prefix=spec.name,
        skip_bad=skip_bad,
        unit="row",
    )


def _load_named(
    spec: DatasetSpec, data_dir: str | os.PathLike[str] | None, *, skip_bad: bool
) -> list[Question]:
    if spec.packaged:
        return _load_packaged(spec, skip_bad=skip_bad)
    root = _data_root(data_dir)
    if root is not None and (root / spec.local_path).is_file():
        return _load_file(
            root / spec.local_path, spec.fields, skip_bad=skip_bad, id_prefix=spec.name
        )
    questions = _load_from_hub(spec, root, skip_bad=skip_bad)
    if root is not None:
        warnings.warn(
            f"no {spec.local_path} under {root}; read dataset {spec.name!r} from the hub instead",
            stacklevel=3,
        )
    return questions


def _is_file_path(name_or_path: str | os.PathLike[str]) -> bool:
    return not isinstance(name_or_path, str) or name_or_path.lower().endswith(_FILE_SUFFIXES)


def load_questions(
    name_or_path: str | os.PathLike[str] = "builtin",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    skip_bad: bool = False,
    fields: FieldMap | None = None,
) -> list[Question]:
    """Load a question set by name (see :data:`DATASETS`) or from a file, in file order.

    - ``"builtin"``: the set packaged with recal.
    - a path ending in ``.jsonl``, ``.json`` or ``.csv`` (or any ``os.PathLike``): read with
      ``fields`` (default :data:`DEFAULT_FIELDS`: ``id``, ``question``, and ``answers`` or, when
      a row has no ``answers`` field, ``answer``).
    - a registered name: the local copy ``<data_dir>/<spec.local_path>`` when it exists
      (``data_dir`` defaults to ``$RECAL_DATA_DIR``), else the hub via the optional ``datasets``
      package; ``RuntimeError`` when neither is available. Ids missing from the source are
      ``<name>-<index>`` (e.g. ``gsm8k-0007``, 0-based), stable across runs.

    The whole source is read and checked; ``limit`` then keeps the first ``limit`` questions.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if _is_file_path(name_or_path):
        questions = _load_file(Path(name_or_path), fields or DEFAULT_FIELDS, skip_bad=skip_bad)
    else:
        name = str(name_or_path)
        if name not in DATASETS and Path(name).is_file():
            raise ValueError(
                f"cannot tell the format of {name}: name the file .jsonl, .json or .csv"
            )
        spec = DATASETS.get(name)
        if fields is not None:
            raise ValueError(
                f"fields applies to question files; {spec.name!r} is a named set with a fixed "
                "layout (pass the path of your copy to read it with your own fields)"
            )
        questions = _load_named(spec, data_dir, skip_bad=skip_bad)
    return questions if limit is None else questions[:limit]
