"""The question record every stage of recal reads, and a stable hash of a question set."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Question", "questions_hash"]


@dataclass(frozen=True)
class Question:
    """One short-answer question.

    ``answers`` holds the gold answer first and then its aliases; a prediction is correct when it
    matches any of them under the collapsing function in use. An *unlabelled* question has no
    answers (``answers == ()``): it can be sampled and collapsed, and its confidence measured,
    but it cannot be graded (:attr:`labelled` is False).
    """

    id: str
    question: str
    answers: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError(f"question {self.id!r} has an empty question text")
        answers = tuple(self.answers)
        if not all(isinstance(a, str) and a.strip() for a in answers):
            raise ValueError(
                f"question {self.id!r} has an empty or non-text gold answer in {answers!r}"
            )
        object.__setattr__(self, "answers", answers)

    @property
    def labelled(self) -> bool:
        """Whether the question has gold answers to grade a prediction against."""
        return bool(self.answers)

    @property
    def answer(self) -> str:
        """The canonical gold answer (the first of ``answers``); an unlabelled question has
        none and raises ``ValueError``."""
        if not self.answers:
            raise ValueError(f"question {self.id!r} has no gold answer (it is unlabelled)")
        return self.answers[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Question:
        return cls(
            id=str(row["id"]),
            question=row["question"],
            answers=tuple(row.get("answers") or ()),
            metadata=dict(row.get("metadata") or {}),
        )


def questions_hash(questions: Iterable[Question]) -> str:
    """SHA-256 over ids, texts and answers, in order: two runs on the same questions share it."""
    digest = hashlib.sha256()
    for q in questions:
        line = json.dumps([q.id, q.question, list(q.answers)], ensure_ascii=False)
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]
