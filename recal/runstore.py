"""The run store: a folder of plain files that holds one sampling run and survives being killed.

    manifest.json    model identity, prompt style, sampling settings, hash of the questions
    questions.jsonl  the questions with their gold answers (later stages need nothing else)
    samples.jsonl    one line per finished question, appended as questions finish

A line is written with a single ``write`` and flushed to disk before the next question is
counted as done. A process killed mid-write leaves at most one partial last line; opening the
store for appending cuts it off, so a resumed run redoes only unfinished questions and never
duplicates one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from recal import __version__
from recal.data.records import Question
from recal.lines import dumps_line, iter_jsonl
from recal.samples import QuestionSamples

__all__ = ["RunStore", "RunMismatchError", "RunFormatError", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
MANIFEST, QUESTIONS, SAMPLES = "manifest.json", "questions.jsonl", "samples.jsonl"
# The keys whose values must agree for a stored run to be reused or resumed.
_IDENTITY_KEYS = ("model", "style", "shots", "sampling", "questions")


class RunMismatchError(ValueError):
    """The folder holds a run made with different settings."""


class RunFormatError(ValueError):
    """A run folder's files are damaged beyond the partial last line a kill can leave."""


def _model_key(model: dict[str, Any]) -> dict[str, Any]:
    # The name a user typed may differ (a path vs a registry name); the weights may not.
    return {k: model.get(k) for k in ("kind", "backend", "config_hash")}


@dataclass
class RunStore:
    path: Path
    manifest: dict[str, Any]

    @classmethod
    def create_or_resume(cls, path: str | Path, manifest: dict[str, Any],
                         questions: Sequence[Question], *, overwrite: bool = False) -> RunStore:
        """Open ``path`` for a run with ``manifest``: a new folder, or a matching earlier run."""
        path = Path(path)
        manifest = {"schema": SCHEMA_VERSION, "recal_version": __version__, **manifest}
        if (path / MANIFEST).exists() and not overwrite:
            store = cls.open(path)
            store._check_matches(manifest)
            store._repair_tail()
            return store
        if path.exists() and any(path.iterdir()) and not (path / MANIFEST).exists():
            raise RunMismatchError(f"{path} exists and is not a recal run folder; choose another "
                                   "--out or empty it")
        path.mkdir(parents=True, exist_ok=True)
        for name in (SAMPLES, QUESTIONS, MANIFEST):
            (path / name).unlink(missing_ok=True)
        _write_atomic(path / QUESTIONS, "".join(dumps_line(q.to_dict()) for q in questions))
        (path / SAMPLES).touch()
        _write_atomic(path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return cls(path, manifest)

    @classmethod
    def open(cls, path: str | Path) -> RunStore:
        """Open an existing run folder to read it."""
        path = Path(path)
        if not (path / MANIFEST).exists():
            raise FileNotFoundError(f"{path} is not a recal run folder (no {MANIFEST}); "
                                    "create one with `recal sample --out ...`")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except json.JSONDecodeError as exc:
            raise RunFormatError(f"{path / MANIFEST} is not valid JSON ({exc})") from exc
        schema = manifest.get("schema")
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise RunFormatError(f"{path / MANIFEST} has schema {schema!r}; this recal "
                                 f"({__version__}) reads schema <= {SCHEMA_VERSION}: upgrade recal")
        return cls(path, manifest)

    def _check_matches(self, manifest: dict[str, Any]) -> None:
        differ = []
        for key in _IDENTITY_KEYS:
            old, new = self.manifest.get(key), manifest.get(key)
            if key == "model":
                old, new = _model_key(old or {}), _model_key(new or {})
            if old != new:
                differ.append(f"{key}: stored {json.dumps(old, sort_keys=True)}, "
                              f"asked {json.dumps(new, sort_keys=True)}")
        if differ:
            raise RunMismatchError(
                f"{self.path} holds a run with other settings ({'; '.join(differ)}). Use another "
                "--out folder, or --overwrite to discard the stored samples."
            )

    def _repair_tail(self) -> None:
        """Cut a partial last line left by a process killed while writing it."""
        file = self.path / SAMPLES
        data = file.read_bytes()
        if data and not data.endswith(b"\n"):
            with file.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    # -- reading ---------------------------------------------------------------------------------

    def questions(self) -> list[Question]:
        file = self.path / QUESTIONS
        return [_parse(file, number, value, Question.from_dict)
                for number, value in _records(file)]

    def __iter__(self) -> Iterator[QuestionSamples]:
        """Every finished question's samples, in the order they finished.

        Lines are split at ``"\n"`` only (:mod:`recal.lines`): a sampled answer may hold U+2028
        or U+0085, which JSON keeps raw. A partial last line (a writer killed mid-line) is not yet
        a record and is skipped.
        """
        file = self.path / SAMPLES
        if not file.exists():
            return
        for number, value in _records(file):
            yield _parse(file, number, value, QuestionSamples.from_dict)

    def done_ids(self) -> set[str]:
        return {record.question_id for record in self}

    def samples_by_id(self) -> dict[str, QuestionSamples]:
        out: dict[str, QuestionSamples] = {}
        for record in self:
            if record.question_id in out:
                raise RunFormatError(f"{self.path / SAMPLES} holds question "
                                     f"{record.question_id!r} twice")
            out[record.question_id] = record
        return out

    # -- writing ---------------------------------------------------------------------------------

    def append(self, record: QuestionSamples) -> None:
        line = dumps_line(record.to_dict())
        with (self.path / SAMPLES).open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _records(file: Path) -> Iterator[tuple[int, Any]]:
    try:
        yield from iter_jsonl(file)
    except ValueError as exc:
        raise RunFormatError(str(exc)) from None


_T = TypeVar("_T")


def _parse(file: Path, number: int, value: Any, parse: Callable[[dict[str, Any]], _T]) -> _T:
    try:
        return parse(value)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RunFormatError(f"{file} line {number}: damaged record ({exc!r})") from None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
