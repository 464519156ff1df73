"""Whether a run's questions can be graded: the one rule every command that needs gold answers
applies, and its one-line refusal.

A question set may come without gold answers (a question file with no answers field, a plain
text file of prompts, an imported run without them). Sampling, collapsing and the confidence
scorers work on it, and ``recal measure`` reports what needs no grades
(:mod:`recal.label_free`); calibration metrics, repairs, exported scorers and the bench need to
know which answers are correct, so they refuse such a set with :class:`UngradedError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from recal.data.records import Question

__all__ = ["UngradedError", "require_grades", "is_graded"]


class UngradedError(ValueError):
    """Questions without gold answers were given to a step that grades answers."""


def is_graded(questions: Sequence[Question]) -> bool:
    """Whether every question has at least one gold answer."""
    return all(q.labelled for q in questions)


def require_grades(questions: Sequence[Question], where: str, needs: str) -> None:
    """Raise :class:`UngradedError` (one line, naming ``where`` and what ``needs`` grades) when
    some of ``questions`` have no gold answers."""
    missing = [q for q in questions if not q.labelled]
    if not missing:
        return
    raise UngradedError(
        f"{where}: {len(missing)} of {len(questions)} questions have no gold answers (first: "
        f"{missing[0].id!r}); {needs} needs graded questions: give each an 'answers' field "
        "(recal measure reports the confidence of ungraded questions without them)")
