"""The run store: a folder of plain files that holds one sampling run and survives being killed.

    manifest.json    model identity, prompt style, sampling settings, hash of the questions
    questions.jsonl  the questions with their gold answers (later stages need nothing else)
    samples.jsonl    one line per finished question, appended as questions finish

A line is written with a single ``write`` and flushed to disk before the next question is
counted as done. A process killed mid-write leaves at most one partial last line; opening the
store for appending cuts it off, so a resumed run redoes only unfinished questions and never
duplicates one.

A store verifies itself, so that a hand-edited folder is refused rather than trusted: opening it
checks the manifest's fields and types and recomputes the questions' hash from
``questions.jsonl``; reading the samples checks every record against the manifest (M samples,
a greedy answer when the manifest says so, a question id of ``questions.jsonl``, no id twice).
A mismatch raises :class:`RunFormatError` naming the field.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from recal import __version__
from recal.data.records import Question, questions_hash
from recal.lines import dumps_line, iter_jsonl
from recal.samples import QuestionSamples

__all__ = ["RunStore", "RunMismatchError", "RunFormatError", "SCHEMA_VERSION", "UNKNOWN"]

SCHEMA_VERSION = 1
UNKNOWN = "unknown"
"""A manifest value an imported run's source did not give (never guessed)."""
MANIFEST, QUESTIONS, SAMPLES = "manifest.json", "questions.jsonl", "samples.jsonl"
# The keys whose values must agree for a stored run to be reused or resumed.
_IDENTITY_KEYS = ("model", "style", "shots", "sampling", "questions")


class RunMismatchError(ValueError):
    """The folder holds a run made with different settings."""


class RunFormatError(ValueError):
    """A run folder's files are damaged beyond the partial last line a kill can leave."""


def _model_key(model: dict[str, Any]) -> dict[str, Any]:
    # The name a user typed may differ (a path vs a registry name); the weights and the precision
    # they ran in may not (runs made before precision was recorded ran in float32).
    key = {k: model.get(k) for k in ("kind", "backend", "config_hash")}
    key["dtype"] = model.get("dtype") or ("float32" if model.get("backend") == "transformers"
                                          else None)
    return key


@dataclass
class RunStore:
    path: Path
    manifest: dict[str, Any]
    _ids: set[str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def create_or_resume(cls, path: str | Path, manifest: dict[str, Any],
                         questions: Sequence[Question], *, overwrite: bool = False) -> RunStore:
        """Open ``path`` for a run with ``manifest``: a new folder, or a matching earlier run."""
        path = Path(path)
        # The stored hash and count are those of the questions written here, always.
        stated = manifest.get("questions")
        manifest = {"schema": SCHEMA_VERSION, "recal_version": __version__, **manifest,
                    "questions": {**(stated if isinstance(stated, dict) else {}),
                                  "count": len(questions), "hash": questions_hash(questions)}}
        if (path / MANIFEST).exists() and not overwrite:
            store = cls.open(path)
            store._check_matches(manifest)
            store._repair_tail()
            return store
        cls.check_folder(path, overwrite=True)
        # Serialised first: a manifest that is not valid JSON (a NaN) is refused before the
        # folder is touched.
        manifest_text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"
        path.mkdir(parents=True, exist_ok=True)
        if (path / MANIFEST).exists():  # --overwrite: what was derived from the old samples too
            _remove_derived(path)
        for name in (SAMPLES, QUESTIONS, MANIFEST):
            (path / name).unlink(missing_ok=True)
        _write_atomic(path / QUESTIONS, "".join(dumps_line(q.to_dict()) for q in questions))
        (path / SAMPLES).touch()
        _write_atomic(path / MANIFEST, manifest_text)
        store = cls(path, manifest)
        store._ids = {q.id for q in questions}
        return store

    @classmethod
    def check_folder(cls, path: str | Path, *, overwrite: bool = False) -> None:
        """Refuse, before any work, a folder that :meth:`create_or_resume` would refuse: a file,
        a folder holding other things than a run, or a damaged run (unless ``overwrite``)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunMismatchError(f"{path} is a file, not a run folder; choose another --out")
        if (path / MANIFEST).exists():
            if not overwrite:
                cls.open(path)
            return
        if path.exists() and any(path.iterdir()):
            raise RunMismatchError(f"{path} exists and is not a recal run folder; choose another "
                                   "--out or empty it")

    @classmethod
    def open(cls, path: str | Path) -> RunStore:
        """Open an existing run folder to read it, checking its manifest and questions."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise FileNotFoundError(f"{path} is a file, not a recal run folder")
        if not (path / MANIFEST).exists():
            raise FileNotFoundError(f"{path} is not a recal run folder (no {MANIFEST}); "
                                    "create one with `recal sample --out ...`")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except json.JSONDecodeError as exc:
            raise RunFormatError(f"{path / MANIFEST} is not valid JSON ({exc})") from exc
        if not isinstance(manifest, dict):
            raise RunFormatError(f"{path / MANIFEST} must hold a JSON object, not "
                                 f"{type(manifest).__name__}")
        schema = manifest.get("schema")
        if not isinstance(schema, int) or isinstance(schema, bool) or schema > SCHEMA_VERSION:
            raise RunFormatError(f"{path / MANIFEST} has schema {schema!r}; this recal "
                                 f"({__version__}) reads schema <= {SCHEMA_VERSION}: upgrade recal")
        _check_manifest(path / MANIFEST, manifest)
        store = cls(path, manifest)
        store._check_questions()
        return store

    def _check_questions(self) -> None:
        """questions.jsonl against the manifest's count and hash (edited gold answers show)."""
        if not (self.path / QUESTIONS).exists():
            raise RunFormatError(f"{self.path} has a {MANIFEST} but no {QUESTIONS}")
        questions = self.questions()
        stored = self.manifest["questions"]
        if len(questions) != stored["count"]:
            raise RunFormatError(f"{self.path / QUESTIONS} holds {len(questions)} questions but "
                                 f"{MANIFEST} says questions.count = {stored['count']}")
        digest = questions_hash(questions)
        if digest != stored["hash"]:
            raise RunFormatError(f"{self.path / QUESTIONS} does not match {MANIFEST}'s "
                                 f"questions.hash ({stored['hash']}; the file hashes to {digest}):"
                                 " the questions or gold answers were edited")
        self._ids = {q.id for q in questions}

    @property
    def n_samples(self) -> int:
        """M, as the manifest records it (every record is checked to hold M samples)."""
        return int(self.manifest["sampling"]["n_samples"])

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
            old_dtype = _model_key(self.manifest.get("model") or {})["dtype"]
            hint = (f" To resume it, sample in its precision (--dtype {old_dtype})."
                    if old_dtype and old_dtype != _model_key(manifest.get("model") or {})["dtype"]
                    else "")
            raise RunMismatchError(
                f"{self.path} holds a run with other settings ({'; '.join(differ)}).{hint} Use "
                "another --out folder, or --overwrite to discard the stored samples."
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
        sampling = self.manifest.get("sampling") or {}
        m, greedy = sampling.get("n_samples"), sampling.get("greedy")
        ids = self._ids
        for number, value in _records(file):
            record = _parse(file, number, value, QuestionSamples.from_dict)
            where = f"{file} line {number}"
            if m is not None and len(record.samples) != m:
                raise RunFormatError(f"{where}: question {record.question_id!r} has "
                                     f"{len(record.samples)} samples but {MANIFEST} says "
                                     f"sampling.n_samples = {m}")
            if greedy is not None and (record.greedy is not None) != greedy:
                raise RunFormatError(f"{where}: question {record.question_id!r} "
                                     f"{'lacks' if greedy else 'has'} a greedy answer but "
                                     f"{MANIFEST} says sampling.greedy = {json.dumps(greedy)}")
            if ids is not None and record.question_id not in ids:
                raise RunFormatError(f"{where}: question {record.question_id!r} is not in "
                                     f"{QUESTIONS}")
            yield record

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


def _check_manifest(file: Path, manifest: dict[str, Any]) -> None:
    """The manifest's fields, their types and ranges; a bad one is named."""
    def bad(field: str, expected: str) -> RunFormatError:
        value = manifest
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return RunFormatError(f"{file}: {field} must be {expected}, got "
                              f"{json.dumps(value, default=str)[:80]}")

    for key in ("model", "sampling", "questions"):
        if not isinstance(manifest.get(key), dict):
            raise bad(key, "an object")
    for key in ("style",):
        if not isinstance(manifest.get(key), str):
            raise bad(key, "a string")
    shots = manifest.get("shots")
    if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots < 0):
        raise bad("shots", "null or a non-negative integer")
    sampling, questions = manifest["sampling"], manifest["questions"]
    m = sampling.get("n_samples")
    if not isinstance(m, int) or isinstance(m, bool) or m < 1:
        raise bad("sampling.n_samples", "a positive integer")
    # An imported run records what its source said; a setting it did not give is "unknown".
    t = sampling.get("temperature")
    if t != UNKNOWN and (not isinstance(t, int | float) or isinstance(t, bool)
                         or not math.isfinite(t) or t <= 0):
        raise bad("sampling.temperature", f'a positive number or "{UNKNOWN}"')
    if "greedy" in sampling and not isinstance(sampling["greedy"], bool):
        raise bad("sampling.greedy", "true or false")
    tokens = sampling.get("max_new_tokens")
    if tokens is not None and tokens != UNKNOWN and (
            not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1):
        raise bad("sampling.max_new_tokens", f'a positive integer or "{UNKNOWN}"')
    count = questions.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise bad("questions.count", "a positive integer")
    if not isinstance(questions.get("hash"), str):
        raise bad("questions.hash", "a string")


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


def _remove_derived(path: Path) -> None:
    """Delete what recal derived from a run's samples (``recal apply``'s calibrated.jsonl,
    ``recal fit``'s fit-* folders), so that an overwritten run does not keep stale results."""
    import shutil

    (path / "calibrated.jsonl").unlink(missing_ok=True)
    for folder in path.glob("fit-*"):
        if folder.is_dir() and not folder.is_symlink() and (folder / "fit.json").exists():
            shutil.rmtree(folder)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
