"""The final number of an answer: the ``numeric`` collapsing function (the GSM8K convention).

The class of a text is one number, found in this order:

1. after the last ``####`` (GSM8K gold answers end in ``#### 42``): the first number after it;
2. after the last answer marker ("Answer:", "The answer is", "Final answer:"): the first number
   on the rest of that line, or, when the line has an ``=``, the first number after its last
   ``=`` ("The answer is 5 + 3 = 8" -> 8);
3. otherwise the last number in the text.

Number words up to the thousands count as numbers ("forty-two" -> 42; so do "one" and "no one"
-> 1, a known cost), thousands separators are dropped ("1,234"), a minus sign counts only before
a number that does not follow a letter or digit ("3-4" is 3 and 4, "x = -4" is -4), simple
fractions are divided ("3/4" -> 0.75), scientific notation is read ("2.5e3" -> 2500) and
decimals are canonical ("3.50" -> "3.5", "2.0" -> "2"). The label is that canonical decimal
string; a text with no number gets ``""``. A class is correct when it equals the number of any
gold alias (found the same way) within a relative tolerance of 1e-9.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from recal.data.records import Question
from recal.lines import first_line
from recal.semantic.base import NO_ANSWER, Collapser
from recal.semantic.normalize import number_words_to_digits

__all__ = ["NumericCollapser", "parse_number", "numbers_equal"]

_NUMBER = re.compile(
    r"(?P<sign>-)?(?P<num>(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+(?![\w.]))?)"
    r"(?:/(?P<den>\d+)(?![.\d]))?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_MARKER = re.compile(r"\b(?:final\s+)?answer\s*[*_]*\s*(?:is\b\s*:?|:)", re.IGNORECASE)
_DASHES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2012": "-"})


def _canonical(match: re.Match[str], text: str) -> str | None:
    try:
        value = Decimal(match.group("num"))
        den = match.group("den")
        if den is not None and int(den) != 0:
            value = value / Decimal(den)
    except InvalidOperation:
        return None
    start = match.start()
    if match.group("sign") and start > 0 and text[start - 1].isalnum():
        pass  # "3-4": a range or a subtraction, not a negative number
    elif match.group("sign"):
        value = -value
    out = format(value.normalize(), "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return "0" if out in ("-0", "") else out


def parse_number(text: str) -> str:
    """The canonical final number of ``text`` as a string (see the module doc), or ``""``."""
    s = unicodedata.normalize("NFKC", text).translate(_DASHES)
    s = number_words_to_digits(_THOUSANDS.sub("", s))
    first = False
    if "####" in s:
        s, first = s.rsplit("####", 1)[1], True
    else:
        markers = list(_MARKER.finditer(s))
        if markers:
            rest = s[markers[-1].end():].lstrip()
            line = first_line(rest)
            s = line.rsplit("=", 1)[1] if "=" in line else line
            first = True
    matches = list(_NUMBER.finditer(s))
    for match in matches if first else reversed(matches):
        value = _canonical(match, s)
        if value is not None:
            return value
    return NO_ANSWER


def numbers_equal(a: str, b: str, *, rel_tol: float = 1e-9) -> bool:
    """Whether two canonical number strings are equal within ``rel_tol`` (``""`` never is)."""
    if not a or not b:
        return False
    try:
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=0.0)
    except ValueError:
        return False


class NumericCollapser(Collapser):
    """Classes are final numbers (see the module doc); ``rel_tol`` is the grading tolerance."""

    name = "numeric"

    def __init__(self, *, rel_tol: float = 1e-9) -> None:
        if not (isinstance(rel_tol, int | float) and 0 <= rel_tol < 1):
            raise ValueError(f"rel_tol must be a number in [0, 1), got {rel_tol!r}")
        self.rel_tol = float(rel_tol)

    def collapse(self, question: Question, texts: Sequence[str]) -> list[str]:
        return [parse_number(t) for t in texts]

    def is_correct(self, question: Question, label: str) -> bool:
        value = parse_number(label)  # labels are canonical already; raw text also works
        return any(numbers_equal(value, parse_number(a), rel_tol=self.rel_tol)
                   for a in question.answers)
