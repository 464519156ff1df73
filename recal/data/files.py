"""Question files: JSON Lines, JSON arrays and CSV read into questions, with line-exact errors.

Every reader yields :class:`Record` rows (first line, 0-based index, fields or the reason it is
unreadable); :func:`build_questions` converts them with a :class:`~recal.data.fields.FieldMap`,
refusing (or with ``skip_bad``, skipping with one warning) bad rows and duplicate ids.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recal.data.fields import (
    DEFAULT_ANSWER_FIELDS,
    DEFAULT_FIELDS,
    DataFormatError,
    FieldMap,
    RowError,
    describe_fields,
    describe_value,
)
from recal.data.records import Question
from recal.lines import read_text_lines

__all__ = [
    "Converter",
    "Record",
    "build_questions",
    "derived_id",
    "load_csv",
    "load_file",
    "load_jsonl",
    "load_text",
]

@dataclass(frozen=True)
class Record:
    """One raw row: its first line, its 0-based index (for derived ids), its fields or the error."""

    line: int
    index: int
    row: Mapping[str, Any] | None
    error: str | None = None


def _json_record(text: str, line: int, index: int) -> Record:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return Record(line, index, None, f"invalid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(value, dict):
        return Record(line, index, None, f"expected a JSON object, got {describe_value(value)}")
    return Record(line, index, value)


def _jsonl_records(path: Path) -> Iterator[Record]:
    # Binary lines split on b"\n" only: JSON strings may hold U+2028, which str.splitlines splits.
    index = 0
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Record(line_no, index, None, f"not UTF-8 text (bad byte at {exc.start + 1})")
                index += 1
                continue
            if line_no == 1:
                text = text.removeprefix("\ufeff")
            if text.strip():
                yield _json_record(text, line_no, index)
                index += 1


def _json_array_records(path: Path, source: str) -> Iterator[Record]:
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
            source, None,
            f"expected a JSON array of objects or JSON Lines, got {describe_value(value)}",
        )
    for index, item in enumerate(value):
        if isinstance(item, dict):
            yield Record(index + 1, index, item)
        else:
            reason = f"expected a JSON object, got {describe_value(item)}"
            yield Record(index + 1, index, None, reason)


def _csv_header(reader: Any, source: str, fields: FieldMap) -> list[str]:
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise DataFormatError(source, None, "the file is empty (expected a header row)") from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataFormatError(source, 1, f"column {repeated[0]!r} appears twice in the header")
    for what, names in (("question", fields.question), ("answers", fields.answers)):
        if what == "answers" and fields.answers_optional:
            continue  # no answers column: an unlabelled set
        if not any(name in header for name in names):
            raise DataFormatError(
                source,
                1,
                f"no {what} column {describe_fields(names)} in the header "
                f"(columns: {', '.join(header)})",
            )
    return header


def _csv_records(path: Path, source: str, fields: FieldMap) -> Iterator[Record]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        # strict: a quote never closed is an error at its row, not a field that swallows the
        # rest of the file (and, with skip_bad, the rows after it).
        reader = csv.reader(handle, strict=True)
        start = 1
        try:
            header = _csv_header(reader, source, fields)
            index = 0
            end_of_previous = reader.line_num
            start = end_of_previous + 1
            for cells in reader:
                start, end_of_previous = end_of_previous + 1, reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(header):
                    reason = f"has {len(cells)} fields but the header has {len(header)} columns"
                    yield Record(start, index, None, reason)
                else:
                    yield Record(start, index, dict(zip(header, cells, strict=True)))
                index += 1
                start = end_of_previous + 1
        except csv.Error as exc:
            reason = ("a quoted field is never closed" if "end of data" in str(exc)
                      else f"unreadable CSV ({exc})")
            raise DataFormatError(source, start, reason) from None
        except UnicodeDecodeError as exc:
            raise DataFormatError(source, None, f"is not UTF-8 text ({exc.reason})") from None


# --------------------------------------------------------------------------- rows to questions

Converter = Callable[[Mapping[str, Any], str], Question]

"""Turns one source row and its default id into a question (e.g. ``FieldMap.to_question``)."""


def derived_id(prefix: str, index: int) -> str:
    """The id of a row without one: ``<prefix>-<index>``, the 0-based index on 4 digits."""
    return f"{prefix}-{index:04d}"

def build_questions(
    records: Iterable[Record],
    convert: Converter,
    *,
    source: str,
    prefix: str,
    skip_bad: bool,
    unit: str = "line",
) -> list[Question]:
    """Convert records to questions, refusing (or with ``skip_bad``, skipping) unreadable rows."""
    questions: list[Question] = []
    lines: list[int] = []
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
        lines.append(record.line)
    if total == 0:
        raise DataFormatError(source, None, "holds no questions (it is empty)")
    questions = _not_mixed(questions, lines, source, unit, skipped if skip_bad else None)
    if not questions:
        raise DataFormatError(source, None, f"all {total} rows are bad; the first: {skipped[0]}")
    if skipped:
        warnings.warn(
            f"{source}: skipped {len(skipped)} of {total} rows that could not be read; "
            f"the first: {skipped[0]}",
            stacklevel=4,
        )
    return questions


def _not_mixed(questions: list[Question], lines: list[int], source: str, unit: str,
               skipped: list[DataFormatError] | None) -> list[Question]:
    """Refuse a file that grades some questions and not others (with ``skipped``, a list, drop
    the unlabelled rows into it instead): a missing answers field is then a mistake, not a
    choice."""
    labelled = [line for q, line in zip(questions, lines, strict=True) if q.labelled]
    if not labelled or len(labelled) == len(questions):
        return questions
    kept = []
    for question, line in zip(questions, lines, strict=True):
        if question.labelled:
            kept.append(question)
            continue
        error = DataFormatError(
            source, line, f"no gold answer (no field {describe_fields(DEFAULT_ANSWER_FIELDS)}) "
            f"but {unit} {labelled[0]} has one: give every row a gold answer, or none (an "
            "unlabelled set)", unit=unit)
        if skipped is None:
            raise error
        skipped.append(error)
    return kept


def _convert(
    record: Record, convert: Converter, prefix: str, first_seen: Mapping[str, int], unit: str
) -> Question:
    if record.error is not None or record.row is None:
        raise RowError(record.error or "empty row")
    question = convert(record.row, derived_id(prefix, record.index))
    if question.id in first_seen:
        raise RowError(
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
    return build_questions(
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
    return build_questions(
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
    return build_questions(
        _json_array_records(file, source),
        fields.to_question,
        source=source,
        prefix=id_prefix or file.stem,
        skip_bad=skip_bad,
        unit="item",
    )


def load_text(
    path: str | os.PathLike[str], *, skip_bad: bool = False, id_prefix: str | None = None
) -> list[Question]:
    """Read a plain text file of prompts, one per line, as unlabelled questions.

    Lines are cut at ``"\n"`` only (:mod:`recal.lines`: a prompt may hold U+2028); a trailing
    ``"\r"`` is dropped, blank lines are skipped but counted, the last line needs no ``"\n"``.
    Ids are ``<id_prefix>-<index>`` (default prefix: the file stem; 0-based over the prompts).
    """
    file = _existing_file(path)
    source = os.fspath(path)
    data = file.read_bytes()
    if data and not data.endswith(b"\n"):
        data += b"\n"  # a hand-written file's last line is a prompt, not a partial record

    def records() -> Iterator[Record]:
        index = 0
        try:
            for line, text in read_text_lines(data):
                yield Record(line, index, {"question": text.removesuffix("\r")})
                index += 1
        except ValueError as exc:  # not UTF-8: "line N: ..." from read_text_lines
            number, _, reason = str(exc).partition(": ")
            raise DataFormatError(source, int(number.split()[-1]), reason) from None

    return build_questions(records(), DEFAULT_FIELDS.to_question, source=source,
                           prefix=id_prefix or file.stem, skip_bad=skip_bad)


def load_file(
    path: Path, fields: FieldMap, *, skip_bad: bool, id_prefix: str | None = None
) -> list[Question]:
    """Read a question file by its ending: ``.csv``, ``.json`` (array or JSON Lines), ``.jsonl``,
    ``.txt`` (one prompt per line, unlabelled)."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if fields != DEFAULT_FIELDS:
            raise ValueError(f"{path} is a plain text file of prompts; fields apply to "
                             ".jsonl, .json and .csv files")
        return load_text(path, skip_bad=skip_bad, id_prefix=id_prefix)
    if suffix == ".csv":
        return load_csv(path, fields, skip_bad=skip_bad, id_prefix=id_prefix)
    if suffix == ".json":
        return _load_json(path, fields, skip_bad=skip_bad, id_prefix=id_prefix)
    if suffix == ".jsonl":
        return load_jsonl(path, fields, skip_bad=skip_bad, id_prefix=id_prefix)
    raise ValueError(f"cannot tell the format of {path}: name the file .jsonl, .json, .csv or "
                     ".txt")
