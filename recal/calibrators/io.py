"""Saving and loading fitted recalibrators as JSON data (never pickle).

A file holds ``{"name", "params", "state", "schema", "recal_version"}`` with sorted keys: the
recalibrator's registered name, its hyperparameters, its fitted state (numbers and lists of
floats, written with ``repr`` precision, so a loaded map predicts bit for bit what the saved one
did), the layout version :data:`SCHEMA` and the recal version that wrote it.

Loading checks everything and raises ``ValueError`` naming the file and the key: invalid or
truncated JSON, missing or mistyped keys, an unknown name (with "did you mean"), a schema newer
than this recal reads. Unknown keys (at the top, in ``params`` or in ``state``) are what a newer
recal may add: they are ignored with a warning, as peft does with its configs.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from recal import __version__
from recal.calibrators.base import Recalibrator, recalibrator_from_dict

__all__ = ["SCHEMA", "load", "save"]

#: Layout version of the files :func:`save` writes; :func:`load` reads this one and older.
SCHEMA: int = 1

_KNOWN_KEYS = frozenset({"name", "params", "state", "schema", "recal_version"})


def save(recalibrator: Recalibrator, path: str | os.PathLike[str]) -> Path:
    """Write a fitted recalibrator to ``path`` as JSON; returns the path."""
    if not isinstance(recalibrator, Recalibrator):
        raise ValueError(f"recalibrator must be a Recalibrator, got {type(recalibrator).__name__}")
    document = {**recalibrator.to_dict(), "schema": SCHEMA, "recal_version": __version__}
    text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False)
    path = Path(path)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def load(path: str | os.PathLike[str]) -> Recalibrator:
    """The fitted recalibrator saved at ``path`` by :func:`save`."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column "
                         f"{err.colno}); is it truncated?") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(document).__name__}")
    if "schema" not in document:
        raise ValueError(f"{path}: key 'schema' is missing; is this a recal recalibrator file?")
    schema = document["schema"]
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise ValueError(f"{path}: key 'schema' must be a positive integer, got {schema!r}")
    if schema > SCHEMA:
        written_by = document.get("recal_version", "an unknown version")
        raise ValueError(f"{path} has schema {schema} (written by recal {written_by}), newer "
                         f"than the schema {SCHEMA} this recal ({__version__}) reads; upgrade "
                         f"recal to load it")
    unknown = sorted(set(document) - _KNOWN_KEYS)
    if unknown:
        warnings.warn(f"{path}: ignoring unknown key(s) {', '.join(map(repr, unknown))} "
                      f"(written by a newer recal?)", stacklevel=2)
    fields = {k: document[k] for k in ("name", "params", "state") if k in document}
    return recalibrator_from_dict(fields, str(path), stacklevel=3)
