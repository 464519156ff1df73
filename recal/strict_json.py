"""Strict JSON: what recal writes and what it accepts from files that others may have edited.

Python's ``json`` module reads and writes ``NaN``, ``Infinity`` and ``-Infinity``, which are not
JSON (RFC 8259): other parsers refuse them. It also keeps the last of two equal keys without a
word, and a nesting bomb (``[[[[...]]]]``) ends in a ``RecursionError``. The helpers here decide
each once:

* :func:`finite_json` turns every non-finite float into ``None``, so undefined values are written
  as ``null``;
* :func:`loads_strict` refuses NaN and infinities, duplicate keys and nesting deeper than
  :data:`MAX_DEPTH`, with a :class:`StrictJSONError` naming the line and, where there is one,
  the key;
* :func:`canonical_json` is the one byte form of a value (sorted keys, compact, UTF-8, strict)
  that hashes and signatures are computed over.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_DEPTH", "StrictJSONError", "canonical_json", "finite_json", "loads_strict"]

MAX_DEPTH = 64
"""The deepest nesting of arrays and objects :func:`loads_strict` accepts (recal's own files
nest at most 6 deep)."""


class StrictJSONError(ValueError):
    """Text that is not strict JSON; the message names the line and the key where it can."""


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (``null`` when written), and
    tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of ``value``: sorted keys, no spaces, raw UTF-8, no NaN or Infinity
    (``ValueError`` for one)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


class _Constant(Exception):
    def __init__(self, token: str) -> None:
        self.token = token


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _refuse_constant(token: str) -> Any:
    raise _Constant(token)


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):  # 1e999 overflows to inf
        raise _Constant(token)
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _where(text: str, pattern: str) -> str:
    """``line N`` (and ``key 'K'``) of the first match of ``pattern`` in ``text``."""
    match = re.search(pattern, text)
    if match is None:
        return "somewhere"
    line = text.count("\n", 0, match.start()) + 1
    key = match.groupdict().get("key")
    return f"line {line}" + (f", key {key!r}" if key else "")


def _depth(value: Any) -> int:
    """Nesting depth of arrays and objects, without recursion (1 for ``[]``, 0 for a number)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else None)
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def loads_strict(text: str) -> Any:
    """Parse ``text`` as strict JSON (RFC 8259, at most :data:`MAX_DEPTH` deep, no key twice in
    one object); a :class:`StrictJSONError` names the problem, the line and the key."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                           object_pairs_hook=_no_duplicates)
    except _Constant as exc:
        token = re.escape(exc.token) + (r"\b" if exc.token[-1].isalpha() else r"(?![\d.eE])")
        where = _where(text, r'(?:"(?P<key>(?:[^"\\]|\\.)*)"\s*:|[\[,])\s*' + token)
        what = "is not a finite number" if exc.token[-1].isdigit() else "is not JSON"
        raise StrictJSONError(f"{exc.token} at {where} {what} (an undefined number is written "
                              "null)") from None
    except _Duplicate as exc:
        raise StrictJSONError(f"key {exc.key!r} appears twice in one object: which one is meant "
                              "is unclear") from None
    except RecursionError:
        raise StrictJSONError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column "
                              f"{exc.colno})") from None
    if _depth(value) > MAX_DEPTH:
        raise StrictJSONError(f"nested deeper than {MAX_DEPTH} levels")
    return value
