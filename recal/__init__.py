"""recal: measure and repair the semantic calibration of language models.

The public API is re-exported here; heavy backends (torch, transformers) are imported lazily so
that ``import recal`` stays cheap and never fails for want of an optional dependency.
"""

from recal.data.records import Question

__version__ = "0.1.0"

__all__ = ["Question", "__version__"]
