"""recal: measure and repair the semantic calibration of language models.

The public API is re-exported here; heavy backends (torch, transformers) are imported lazily so
that ``import recal`` stays cheap and never fails for want of an optional dependency.
"""

from __future__ import annotations

from typing import Any

from recal.data.records import Question

__version__ = "0.1.0"

__all__ = ["Question", "load_scorer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "load_scorer":  # imported on first use: numpy and the recalibrators, no torch
        from recal.scorer import load_scorer

        return load_scorer
    raise AttributeError(f"module 'recal' has no attribute {name!r}")
