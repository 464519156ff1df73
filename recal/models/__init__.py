"""Model backends: what produces the answers.

``load_backend`` is the one entry point: it picks a backend from :data:`BACKENDS` by the rule of
:func:`choose_backend` (a URL goes to ``http``, anything else to ``transformers``, unless
``backend=`` names another). Heavy libraries (torch, transformers, vLLM, an HTTP client) are
imported only when a backend of that kind is loaded.
"""

from __future__ import annotations

from recal.models.backends import (
    BACKENDS,
    DEFAULT_BACKEND,
    BackendLoader,
    BackendName,
    choose_backend,
    is_url,
    load_backend,
)
from recal.models.base import Backend, ModelIdentity, ModelKind
from recal.models.packaged import (
    DEFAULT_MODEL,
    PACKAGED_MODELS,
    ModelFetchError,
    PackagedModel,
    cache_dir,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendLoader",
    "BackendName",
    "DEFAULT_BACKEND",
    "DEFAULT_MODEL",
    "ModelFetchError",
    "ModelIdentity",
    "ModelKind",
    "PACKAGED_MODELS",
    "PackagedModel",
    "cache_dir",
    "choose_backend",
    "is_url",
    "load_backend",
]
