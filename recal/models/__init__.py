"""Model backends: what produces the answers.

``load_backend`` is the one entry point; heavy libraries (torch, transformers, later vLLM or an
HTTP client) are imported only when a backend of that kind is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from recal.models.base import Backend, ModelIdentity, ModelKind
from recal.models.packaged import PACKAGED_MODELS, ModelFetchError, PackagedModel, cache_dir

__all__ = [
    "Backend",
    "BackendName",
    "ModelIdentity",
    "ModelKind",
    "PACKAGED_MODELS",
    "PackagedModel",
    "ModelFetchError",
    "cache_dir",
    "load_backend",
]

BackendName = Literal["transformers"]
DEFAULT_MODEL = "smollm2-135m-instruct"


def load_backend(model: str = DEFAULT_MODEL, *, backend: BackendName = "transformers",
                 kind: ModelKind | None = None, cache: Path | None = None) -> Backend:
    """A backend for ``model``: a packaged name (see ``recal models``), a .gguf file, a local
    folder or a hub id (hub ids need internet)."""
    if backend == "transformers":
        from recal.models.hf import load_transformers

        return load_transformers(model, kind=kind, cache=cache)
    raise ValueError(f"backend must be 'transformers', got {backend!r}")
