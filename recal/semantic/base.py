"""The collapsing-function interface, the class distribution it induces, and their registry.

A collapsing function B maps each sampled answer to a semantic class. The model's semantic
distribution for a question is the share of its M samples in each class; the modal class is the
prediction, its share the confidence, and it is correct when it matches a gold alias under the
same B (Nakkiran et al. 2025, "Trained on Tokens, Calibrated on Concepts", arXiv 2511.04869).
"""

from __future__ import annotations

import difflib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from recal.data.records import Question
from recal.registry import Registry

__all__ = [
    "NO_ANSWER",
    "COLLAPSERS",
    "ClassDistribution",
    "Collapser",
    "CollapserFactory",
    "distribution",
    "get_collapser",
    "merge_correct",
]

NO_ANSWER = ""
"""The label of the "no answer" class: empty, unparseable or number-free (under ``numeric``)
answers. It is a class like any other (it can be modal) but it is never correct."""


class Collapser(ABC):
    """A collapsing function B: groups a question's answers into classes and grades a class.

    Labels are readable canonical strings (the normalised answer, a number, or the normalised
    text of a cluster's representative); texts in one class share a label, and texts in
    different classes have different labels. :data:`NO_ANSWER` (``""``) labels the texts with
    no answer in them.
    """

    name: str

    @abstractmethod
    def collapse(self, question: Question, texts: Sequence[str]) -> list[str]:
        """One class label per text, in order. Clustering collapsers may make a text's label
        depend on the other texts (a text joins an earlier class), so pass a question's samples
        together."""

    @abstractmethod
    def is_correct(self, question: Question, label: str) -> bool:
        """Whether the class ``label`` matches any of ``question.answers`` under this B.
        :data:`NO_ANSWER` is never correct."""

    def explain(self, question: Question, texts: Sequence[str]) -> list[tuple[str, str]] | None:
        """Why each text lands where it does, for a person reading the samples: per text, the
        answer span this B read from it and how the grader judged that span (``("paris city",
        "starts with gold 'paris' (+1 word)")``). ``None`` when this B cannot say (the report
        then shows the class and its grade alone)."""
        return None

    def distribution(self, question: Question, texts: Sequence[str]) -> ClassDistribution:
        """The class distribution of ``texts``: :func:`distribution` of :meth:`collapse`."""
        return distribution(self.collapse(question, texts))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


@dataclass(frozen=True)
class ClassDistribution:
    """The share of samples in each class.

    ``classes`` are sorted by count, largest first; classes with equal counts keep the order in
    which they first occur among the labels, so the modal class of a tie is the one sampled
    first (deterministic for a fixed sample order).
    """

    classes: tuple[str, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.counts):
            raise ValueError(
                f"classes has {len(self.classes)} entries but counts has {len(self.counts)}")
        if not self.classes:
            raise ValueError("a class distribution needs at least one class")
        if any(not isinstance(c, int) or c < 1 for c in self.counts):
            raise ValueError(f"counts must be positive integers, got {self.counts!r}")

    @property
    def total(self) -> int:
        """M: the number of labelled samples."""
        return sum(self.counts)

    @property
    def shares(self) -> tuple[float, ...]:
        """count / M for each class, in the order of ``classes``."""
        total = self.total
        return tuple(c / total for c in self.counts)

    @property
    def modal(self) -> str:
        """The most frequent class (the first sampled among ties)."""
        return self.classes[0]

    @property
    def modal_share(self) -> float:
        """The modal class's share in [1/M, 1]: the plug-in confidence."""
        return self.counts[0] / self.total

    def share(self, label: str) -> float:
        """The share of ``label`` (0.0 for a class that was not sampled)."""
        for cls, count in zip(self.classes, self.counts, strict=True):
            if cls == label:
                return count / self.total
        return 0.0


def distribution(labels: Sequence[str]) -> ClassDistribution:
    """Count ``labels`` into a :class:`ClassDistribution` (count desc, ties by first occurrence)."""
    if len(labels) == 0:
        raise ValueError("labels is empty; a class distribution needs at least one label")
    counts: dict[str, int] = {}
    for label in labels:  # dicts keep first-insertion order, which breaks the ties
        counts[label] = counts.get(label, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: ties keep first occurrence
    return ClassDistribution(tuple(k for k, _ in ordered), tuple(v for _, v in ordered))


def merge_correct(labels: Sequence[str], is_correct: Callable[[str], bool],
                  gold_label: str) -> list[str]:
    """``labels`` with every label that ``is_correct`` accepts replaced by ``gold_label``.

    The grader decides that a class is the gold answer; every class it accepts names the same
    meaning, so they are one class (the reference protocol: the modal class is correct when it
    matches a gold answer under the same B). Without this, "paris" and "paris city" would be two
    classes, both graded correct, and the right meaning's share would be split between them.
    ``is_correct`` is asked once per distinct label; :data:`NO_ANSWER` is never asked.
    """
    verdict: dict[str, bool] = {NO_ANSWER: False}
    out = []
    for label in labels:
        if label not in verdict:
            verdict[label] = bool(is_correct(label))
        out.append(gold_label if verdict[label] else label)
    return out


CollapserFactory = Callable[..., Collapser]
"""What :data:`COLLAPSERS` holds: a Collapser class, or any callable of keyword options."""
COLLAPSERS: Registry[CollapserFactory] = Registry("collapsing function")
"""Collapsing functions by name (``normalized``, ``numeric``, ``embedding``, ``judge``; filled by
:mod:`recal.semantic`): each entry is a callable taking keyword options and returning a
:class:`Collapser` whose ``name`` is the registered name."""


def get_collapser(name: str, **options: Any) -> Collapser:
    """The collapsing function registered as ``name``, built with ``options``.

    Unknown names raise ``KeyError`` with the closest known names; unknown or missing required
    options raise ``ValueError`` naming the options the function takes.
    """
    factory = COLLAPSERS.get(name)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: let the call check
        params = {}
    if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        known = [k for k, p in params.items() if p.kind in named]
        for option in options:
            if option not in known:
                close = difflib.get_close_matches(option, known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"collapsing function {name!r} has no option {option!r}{hint} "
                    f"(options: {', '.join(known) or 'none'})")
        missing = [k for k in known
                   if params[k].default is inspect.Parameter.empty and k not in options]
        if missing:
            raise ValueError(
                f"collapsing function {name!r} needs the option(s) {', '.join(missing)}")
    return factory(**options)
