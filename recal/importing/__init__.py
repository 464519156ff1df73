"""``recal import``: a run store from answers sampled elsewhere.

==============  ============================================================================
module          holds
==============  ============================================================================
base            :data:`IMPORT_FORMATS`, :class:`ImportSettings`, :class:`ImportFormatError`,
                :func:`write_run` (the store appears only once complete)
recal_jsonl     ``recal``: recal's own JSON Lines (docs/import.md)
openai          ``openai``: chat completion responses (batch output), with a questions file
lm_eval         ``lm-eval``: lm-evaluation-harness ``--log_samples`` with repeats
==============  ============================================================================

    store = import_run("answers.jsonl", "runs/imported", format="recal",
                       settings=ImportSettings(model="my-model", temperature=1.0))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recal.importing import lm_eval, openai, recal_jsonl  # noqa: F401  (fill the registry)
from recal.importing.base import (
    IMPORT_FORMATS,
    ImportedRun,
    ImportFormatError,
    ImportSettings,
    write_run,
)
from recal.runstore import RunStore

__all__ = ["IMPORT_FORMATS", "ImportFormatError", "ImportSettings", "ImportedRun",
           "import_run", "read_source"]


def read_source(file: str | os.PathLike[str], format: str, *,
                questions: str | os.PathLike[str] | None = None, **options: Any) -> ImportedRun:
    """Parse ``file`` in the import format ``format`` (``questions``: the questions file the
    format needs, if it needs one); ``options`` go to the format's reader."""
    spec = IMPORT_FORMATS.get(format)
    return spec.parse(Path(file), Path(questions) if questions is not None else None, **options)


def import_run(file: str | os.PathLike[str], out: str | os.PathLike[str], *, format: str,
               questions: str | os.PathLike[str] | None = None,
               settings: ImportSettings | None = None, overwrite: bool = False,
               **options: Any) -> RunStore:
    """Read ``file`` and write it as the run store ``out`` (see :func:`write_run`)."""
    run = read_source(file, format, questions=questions, **options)
    return write_run(run, out, settings, overwrite=overwrite)
