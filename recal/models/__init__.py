"""Model backends: what produces the answers.

``load_backend`` is the one entry point; heavy libraries (torch, transformers, later vLLM or an
HTTP client) are imported only when a backend of that kind is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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

BackendName = Literal["transformers", "http", "vllm"]
DEFAULT_MODEL = "smollm2-135m-instruct"


def load_backend(model: str = DEFAULT_MODEL, *, backend: BackendName | None = None,
                 kind: ModelKind | None = None, cache: Path | None = None,
                 **options: Any) -> Backend:
    """A backend for ``model``: a packaged name (see ``recal models``), a .gguf file, a local
    folder or a hub id (hub ids need internet); or the URL of an OpenAI-compatible server
    (``http://127.0.0.1:8080/v1``), which picks the http backend.

    ``backend`` defaults to 'http' for URLs and 'transformers' otherwise; 'vllm' runs the model
    in process with vLLM (GPU machines, ``pip install 'recal[vllm]'``). ``options`` go to the
    backend: for http ``served_model``, ``api_key``, ``concurrency``, ``timeout``, ... (see
    ``recal.models.http.HTTPConfig``); for vllm the ``vllm.LLM`` arguments.
    """
    if backend is None:
        backend = "http" if model.startswith(("http://", "https://")) else "transformers"
    if backend == "transformers":
        if options:
            raise ValueError(f"the transformers backend takes no options, got {sorted(options)}")
        from recal.models.hf import load_transformers

        return load_transformers(model, kind=kind, cache=cache)
    if backend == "http":
        from recal.models.http import load_http

        return load_http(model if model.startswith(("http://", "https://")) else None,
                         kind=kind, **options)
    if backend == "vllm":
        from recal.models.vllm_backend import load_vllm

        return load_vllm(model, kind=kind, cache=cache, **options)
    raise ValueError(f"backend must be 'transformers', 'http' or 'vllm', got {backend!r}")
