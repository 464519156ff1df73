"""The calibrated scorer: an exported, data-only artifact that others load and serve.

A scorer folder holds one file, ``scorer.json``: the schema version, recal's version, the fitted
recalibrator's parameters, the collapsing function, the confidence scorer, the prompt style, the
sampling settings, the model's identity (with a hash of its config) and the metrics on the
calibration and held-out splits (strict JSON: an undefined metric is ``null``); and
``content_sha256``, a hash of all of that, so that a file damaged in transit or changed by hand
without recomputing it is refused rather than trusted. The hash proves nothing about who wrote
the file (anyone can recompute it); a signing key does (``signature.json``, see
:mod:`recal.scorer_format`, which also checks every field's type and range on loading). Loading
reads JSON only (never pickle) and imports neither torch nor scikit-learn: the post-hoc map alone
loads in a few milliseconds. :meth:`CalibratedScorer.score` loads the model through its backend
on first use.

A scorer from ``recal tune`` also references a LoRA adapter folder (``adapter``: the tuning
method, the folder relative to the scorer's, and ``sha256``, a hash of every file in it). Such a
file is written with schema 2; loading checks the adapter's hash (reading bytes only) and loads
the adapter with the model, on first use. Scorers without an adapter keep schema 1.

    scorer = recal.load_scorer("scorer/")
    scorer.score_samples("What is the capital of France?", ["Paris", "paris", "Lyon"])
    scorer.score("What is the capital of France?")   # samples the model, then scores
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recal import __version__
from recal.calibrators.base import Recalibrator, recalibrator_from_dict
from recal.data.records import Question
from recal.models.base import Backend
from recal.samples import QuestionSamples, Sample, SamplingConfig
from recal.scorer_format import (
    SIGNATURE_FILE,
    ScorerFormatError,
    ScorerSignatureError,
    check_document,
    read_document,
    verify_signature,
    write_signature,
)
from recal.strict_json import finite_json

__all__ = ["CalibratedScorer", "ScoredAnswer", "RunScore", "ScorerFormatError",
           "ScorerSignatureError", "load_scorer", "SCORER_SCHEMA", "AdapterRef", "folder_sha256"]

SCORER_SCHEMA = 2
_PLAIN_SCHEMA = 1  # what a scorer without an adapter is written as (older recal reads it)
FILENAME = "scorer.json"


@dataclass(frozen=True)
class ScoredAnswer:
    answer: str
    """The predicted class (its label under the collapsing function)."""
    text: str
    """A sampled answer in that class, as the model wrote it."""
    confidence: float
    """The calibrated probability that the answer is correct."""
    raw_confidence: float
    """The scorer's confidence before recalibration."""
    classes: dict[str, int]
    """Every class among the samples, with its count."""


@dataclass(frozen=True)
class RunScore:
    """One stored question scored by a scorer (:meth:`CalibratedScorer.score_run`)."""

    id: str
    answer: str
    """The predicted class."""
    raw_confidence: float
    """The scorer's confidence before recalibration (a tuned scorer's readout)."""
    confidence: float
    """The calibrated probability that the answer is correct."""
    correct: bool

    def to_dict(self) -> dict[str, Any]:
        """The row ``recal apply`` writes: confidence is the raw one, calibrated the mapped."""
        return {"id": self.id, "answer": self.answer, "confidence": self.raw_confidence,
                "calibrated": self.confidence, "correct": self.correct}


MAX_ADAPTER_FILES = 1000
MAX_ADAPTER_BYTES = 2 * 1024**3
"""An adapter folder larger than this is refused before it is read (a LoRA adapter is MBs)."""


def folder_sha256(folder: str | os.PathLike[str]) -> str:
    """sha256 over every file of a folder: each relative path and the sha256 of its bytes.

    Refuses (``ScorerFormatError``), before reading any file, a folder holding a link that leads
    outside it, more than :data:`MAX_ADAPTER_FILES` files or more than :data:`MAX_ADAPTER_BYTES`.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"adapter folder {root} does not exist")
    inside = root.resolve()
    files = []
    for path in root.rglob("*"):
        if not path.resolve().is_relative_to(inside):
            raise ScorerFormatError(f"adapter folder {root} holds {path.name!r}, a link that "
                                    "leads outside it")
        if path.is_file():
            files.append(path)
        if len(files) > MAX_ADAPTER_FILES:
            raise ScorerFormatError(f"adapter folder {root} holds more than {MAX_ADAPTER_FILES} "
                                    "files: not an adapter")
    if sum(f.stat().st_size for f in files) > MAX_ADAPTER_BYTES:
        raise ScorerFormatError(f"adapter folder {root} holds more than "
                                f"{MAX_ADAPTER_BYTES // 1024**3} GiB: not an adapter")
    outer = hashlib.sha256()
    for file in sorted(files):
        outer.update(file.relative_to(root).as_posix().encode() + b"\0")
        outer.update(hashlib.sha256(file.read_bytes()).hexdigest().encode() + b"\n")
    return outer.hexdigest()


def _confined_adapter(scorer_file: Path, relative: str) -> Path:
    """The adapter folder ``relative`` names, which must lie inside the scorer's folder (no
    absolute path, no ``..``, no link out); checked before anything in it is read."""
    root = scorer_file.parent.resolve()
    path = Path(relative)
    folder = (root / path).resolve()
    if path.is_absolute() or ".." in path.parts or not folder.is_relative_to(root) \
            or folder == root:
        raise ScorerFormatError(f"{scorer_file}: the adapter path {relative!r} must name a "
                                "folder inside the scorer's folder (as `recal tune` writes it)")
    return folder


@dataclass(frozen=True)
class AdapterRef:
    """The LoRA adapter a tuned scorer uses (see :mod:`recal.tuning`)."""

    method: str
    """'distribution', 'confidence_head' or 'amortised'."""
    path: str
    """The adapter folder, relative to the scorer folder (or absolute)."""
    sha256: str
    """:func:`folder_sha256` of the folder."""

    def to_dict(self) -> dict[str, str]:
        return {"method": self.method, "path": self.path, "sha256": self.sha256}


def _digest(doc: Mapping[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class CalibratedScorer:
    recalibrator: Recalibrator
    collapse: str
    scorer: str
    style: str
    sampling: dict[str, Any]
    model: dict[str, Any]
    shots: int | None = None
    collapse_options: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    backend: Backend | None = None
    adapter: AdapterRef | None = None
    abstention: dict[str, Any] | None = None
    """The abstention threshold with a known risk (:class:`recal.abstention.AbstentionRule` as
    a dict), when the scorer was exported with one."""
    folder: Path | None = None
    """Where the scorer was loaded from or saved to (relative adapter paths start there)."""
    _tuned: Any = field(default=None, repr=False)

    # -- scoring ---------------------------------------------------------------------------------

    def score_samples(self, question: Question | str, samples: Sequence[str | Sample],
                      greedy: Sample | str | None = None) -> ScoredAnswer:
        """Score answers the caller already sampled (texts, or recal ``Sample`` records)."""
        from recal.confidence import classify
        from recal.semantic import get_collapser

        if not samples:
            raise ValueError("samples is empty: score at least one sampled answer")
        q = question if isinstance(question, Question) else Question("q", question, ("?",))

        def as_sample(s: str | Sample) -> Sample:
            return s if isinstance(s, Sample) else Sample(s, (), (), "stop")

        record = QuestionSamples(q.id, tuple(as_sample(s) for s in samples),
                                 as_sample(greedy) if greedy is not None else None)
        collapser = get_collapser(self.collapse, **self.collapse_options)
        [item] = classify([q], [record], collapser)
        [(prediction, raw, calibrated)] = self._score_items([item], collapser)
        return ScoredAnswer(prediction.answer, item.text_of(prediction.answer), calibrated,
                            raw, dict(item.counts()))

    def score_run(self, store: Any) -> list[RunScore]:
        """Score every finished question of a stored run (a :class:`recal.runstore.RunStore`)
        as :meth:`score_samples` scores one: the collapsing function, the confidence scorer, a
        tuned scorer's readout and the recalibrator, in the run's question order."""
        from recal.confidence import classify_run
        from recal.semantic import get_collapser

        collapser = get_collapser(self.collapse, **self.collapse_options)
        items = classify_run(store, collapser)
        return [RunScore(p.question_id, p.answer, raw, calibrated, bool(p.correct))
                for p, raw, calibrated in self._score_items(items, collapser)]

    def _score_items(self, items: Sequence[Any], collapser: Any
                     ) -> list[tuple[Any, float, float]]:
        """(prediction, raw confidence, calibrated confidence) of each classified question."""
        from recal.judged import JudgedRun

        predictions = JudgedRun.from_items(items, collapser, self.scorer,
                                           backend=self.backend).predictions
        out = []
        for item, prediction in zip(items, predictions, strict=True):
            raw = prediction.confidence
            if self.adapter is not None and self.adapter.method != "distribution":
                # The tuned readout replaces the sampled confidence (the answer is still the
                # mode); one question at a time, as a served request is read.
                text = item.text_of(prediction.answer)
                raw = float(self._tuned_model().confidence([item.question], [text])[0])
            out.append((prediction, raw, float(self.recalibrator.predict_proba([raw])[0])))
        return out

    def score(self, question: Question | str) -> ScoredAnswer:
        """Sample the model as at fitting time (same style, M, T), then score the answers."""
        from recal.prompts import build_prompt

        backend = self._load_backend()
        q = question if isinstance(question, Question) else Question("q", question, ("?",))
        config = SamplingConfig(**{k: (tuple(v) if k == "tau_grid" else v)
                                   for k, v in self.sampling.items()})
        prompt = build_prompt(q, self.style, chat=backend.is_chat, shots=self.shots)
        if self.adapter is not None and self.adapter.method == "distribution":
            backend = self._tuned_model().sampling_backend()  # the tuned model answers
        [record] = list(backend.generate([q.id], [prompt], config))
        return self.score_samples(q, record.samples, record.greedy)

    def _load_backend(self) -> Backend:
        if self.backend is None:
            from recal.models.backends import load_recorded

            self.backend = load_recorded(self.model)
            found = self.backend.identity.config_hash
            if found != self.model.get("config_hash"):
                raise ScorerFormatError(
                    f"the model {self.model['name']!r} loaded here has config hash {found}, but "
                    f"the scorer was fitted on {self.model.get('config_hash')}: refit it for "
                    "this model")
        return self.backend

    def adapter_folder(self) -> Path:
        if self.adapter is None:
            raise ValueError("this scorer has no adapter")
        path = Path(self.adapter.path)
        return path if path.is_absolute() or self.folder is None else self.folder / path

    def _tuned_model(self) -> Any:
        """The base model with the adapter (loaded once, on first use)."""
        if self._tuned is None:
            from recal.tuning import load_tuned

            backend = self._load_backend()
            self._tuned = load_tuned(self.adapter_folder(), backend=backend)
        return self._tuned

    # -- saving and loading ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "schema": SCORER_SCHEMA if self.adapter is not None else _PLAIN_SCHEMA,
            "recal_version": __version__,
            "recalibrator": self.recalibrator.to_dict(),
            "collapse": {"name": self.collapse, "options": self.collapse_options},
            "scorer": self.scorer, "prompt": {"style": self.style, "shots": self.shots},
            "sampling": self.sampling, "model": self.model, "metrics": self.metrics,
        }
        if self.adapter is not None:
            doc["adapter"] = self.adapter.to_dict()
        if self.abstention is not None:
            doc["abstention"] = self.abstention
        doc = finite_json(doc)  # strict JSON: an undefined metric is null
        doc["content_sha256"] = _digest(doc)
        return doc

    def save(self, path: str | os.PathLike[str], *, key: bytes | str | None = None) -> Path:
        """Write ``path/scorer.json`` (data only) and return the folder; with a signing ``key``
        (at least 16 bytes) also ``path/signature.json``, its HMAC-SHA256.

        An adapter outside the folder is copied into ``path/adapter`` first, so that the folder
        is complete on its own. Saving without a key removes an older signature.
        """
        import shutil

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        if self.adapter is not None:
            source = self.adapter_folder().resolve()
            inside = folder.resolve() in source.parents
            if not inside:
                if folder_sha256(source) != self.adapter.sha256:
                    raise ScorerFormatError(f"adapter folder {source} does not match its sha256")
                shutil.rmtree(folder / "adapter", ignore_errors=True)
                shutil.copytree(source, folder / "adapter")
            rel = (source.relative_to(folder.resolve()).as_posix() if inside else "adapter")
            self.adapter = AdapterRef(self.adapter.method, rel, self.adapter.sha256)
        self.folder = folder
        doc = self.to_dict()
        tmp = folder / (FILENAME + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n",
                       encoding="utf-8")
        (folder / SIGNATURE_FILE).unlink(missing_ok=True)  # never beside a file it did not sign
        tmp.replace(folder / FILENAME)
        if key is not None:
            write_signature(folder, doc, key)
        return folder


def load_scorer(path: str | os.PathLike[str], *, backend: Backend | None = None,
                key: bytes | str | None = None) -> CalibratedScorer:
    """Load an exported scorer folder (or its ``scorer.json``). Reads data only.

    The file is read as strict JSON and every field is checked (type and range); a problem is a
    :class:`ScorerFormatError` naming the file and the key. With a signing ``key`` a scorer that
    is unsigned, or signed with another key or changed since, is refused
    (:class:`ScorerSignatureError`) before any field is used.
    """
    file = Path(path)
    if file.is_dir():
        file = file / FILENAME
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist: export a scorer with `recal export`")
    doc = read_document(file)
    schema = doc.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise ScorerFormatError(f"{file}: key 'schema' must be a positive integer, got "
                                f"{schema!r}: not a recal scorer file")
    if schema > SCORER_SCHEMA:
        raise ScorerFormatError(f"{file} has schema {schema}, written by recal "
                                f"{doc.get('recal_version')}; this recal ({__version__}) reads "
                                f"schema <= {SCORER_SCHEMA}: upgrade recal")
    if doc.get("content_sha256") != _digest(doc):
        raise ScorerFormatError(f"{file} does not match its content_sha256: it was changed "
                                "after export or damaged; export it again")
    if key is not None:
        verify_signature(file, doc, key)
    check_document(file, doc)
    try:
        recalibrator = recalibrator_from_dict(doc["recalibrator"], f"{file} (recalibrator)",
                                              stacklevel=3)
    except ValueError as exc:
        raise ScorerFormatError(str(exc)) from None
    adapter = None
    if doc.get("adapter") is not None:
        adapter = AdapterRef(doc["adapter"]["method"], doc["adapter"]["path"],
                             doc["adapter"]["sha256"])
        folder = _confined_adapter(file, adapter.path)
        if not folder.is_dir():
            raise ScorerFormatError(f"{file} references the adapter folder {folder}, which does "
                                    "not exist: copy the whole scorer folder")
        if folder_sha256(folder) != adapter.sha256:
            raise ScorerFormatError(f"the adapter folder {folder} does not match the sha256 in "
                                    f"{file}: it was changed or damaged; export it again")
    return CalibratedScorer(
        recalibrator=recalibrator,
        collapse=doc["collapse"]["name"], collapse_options=dict(doc["collapse"]["options"]),
        scorer=doc["scorer"], style=doc["prompt"]["style"], shots=doc["prompt"].get("shots"),
        sampling=dict(doc["sampling"]), model=dict(doc["model"]),
        metrics=dict(doc.get("metrics") or {}), backend=backend, adapter=adapter,
        abstention=(dict(doc["abstention"]) if doc.get("abstention") is not None else None),
        folder=file.parent)
