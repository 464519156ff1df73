"""Read question sets: JSON Lines, JSON and CSV files, the packaged set and the named public sets.

Every loader returns a list of :class:`~recal.data.records.Question`. A row recal cannot read raises
:class:`DataFormatError` naming the file, the 1-based line and what is wrong; ``skip_bad=True``
skips such rows instead and warns once with a summary.

:func:`load_questions` is the one entry point: it reads a file (:mod:`recal.data.files`, with a
:class:`FieldMap` from :mod:`recal.data.fields`) or a named set (:mod:`recal.data.named_sets`).
The names of those modules are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path

from recal.data.fields import DEFAULT_FIELDS, FILE_SUFFIXES, DataFormatError, FieldMap
from recal.data.files import load_csv, load_file, load_jsonl
from recal.data.named_sets import DATA_DIR_ENV, DATASETS, DatasetSpec, load_named
from recal.data.records import Question

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DEFAULT_FIELDS",
    "DataFormatError",
    "DatasetSpec",
    "FieldMap",
    "load_csv",
    "load_jsonl",
    "load_questions",
]


def _is_file_path(name_or_path: str | os.PathLike[str]) -> bool:
    return not isinstance(name_or_path, str) or name_or_path.lower().endswith(FILE_SUFFIXES)


def load_questions(
    name_or_path: str | os.PathLike[str] = "builtin",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    skip_bad: bool = False,
    fields: FieldMap | None = None,
) -> list[Question]:
    """Load a question set by name (see :data:`DATASETS`) or from a file, in file order.

    - ``"builtin"``: the set packaged with recal.
    - a path ending in ``.txt``: one prompt per line, unlabelled questions.
    - a path ending in ``.jsonl``, ``.json`` or ``.csv`` (or any ``os.PathLike``): read with
      ``fields`` (default :data:`DEFAULT_FIELDS`: ``id``, ``question``, and ``answers`` or, when
      a row has no ``answers`` field, ``answer``).
    - a registered name: the local copy ``<data_dir>/<spec.local_path>`` when it exists
      (``data_dir`` defaults to ``$RECAL_DATA_DIR``), else the hub via the optional ``datasets``
      package; ``RuntimeError`` when neither is available. Ids missing from the source are
      ``<name>-<index>`` (e.g. ``gsm8k-0007``, 0-based), stable across runs.

    The whole source is read and checked; ``limit`` then keeps the first ``limit`` questions.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if _is_file_path(name_or_path):
        questions = load_file(Path(name_or_path), fields or DEFAULT_FIELDS, skip_bad=skip_bad)
    else:
        name = str(name_or_path)
        if name not in DATASETS and Path(name).is_file():
            raise ValueError(
                f"cannot tell the format of {name}: name the file .jsonl, .json, .csv or .txt"
            )
        spec = DATASETS.get(name)
        if fields is not None:
            raise ValueError(
                f"fields applies to question files; {spec.name!r} is a named set with a fixed "
                "layout (pass the path of your copy to read it with your own fields)"
            )
        questions = load_named(spec, data_dir, skip_bad=skip_bad)
    return questions if limit is None else questions[:limit]
