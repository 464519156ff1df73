"""The backend registry and the rule that picks a backend for a model.

=============  ==============================================  ===========================
backend        runs                                            entry
=============  ==============================================  ===========================
transformers   packaged names, .gguf files, local folders and  lazy: recal.models.hf
               hub ids in process (CPU or GPU)
http           an OpenAI-compatible server at a URL            this module (httpx on use)
vllm           a hub id, folder or converted packaged model    lazy: recal.models.vllm_backend
               in process with vLLM (CUDA GPUs)
=============  ==============================================  ===========================

Every entry is a loader ``loader(model, *, kind=None, cache=None, **options) -> Backend``.
:func:`choose_backend` is the dispatch rule: an explicit ``backend=`` wins; otherwise a URL
(``http://`` or ``https://``) goes to ``http`` and everything else (a packaged name, a .gguf file,
a folder, a hub id) to ``transformers``. Registering a loader here is all a new backend needs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recal.models.base import Backend, ModelKind
from recal.models.packaged import DEFAULT_MODEL
from recal.registry import Registry, UnknownNameError

__all__ = ["BACKENDS", "BackendLoader", "BackendName", "DEFAULT_BACKEND", "choose_backend",
           "is_url", "load_backend"]

BackendLoader = Callable[..., Backend]
"""``loader(model, *, kind=None, cache=None, **options) -> Backend``."""

BackendName = str
"""A name registered in :data:`BACKENDS` (listed by ``", ".join(BACKENDS)``)."""

BACKENDS: Registry[BackendLoader] = Registry("backend")
"""Model backends by name: ``transformers``, ``http``, ``vllm``."""

DEFAULT_BACKEND = "transformers"
"""The backend of every model that is not a URL."""

_URL_SCHEMES = ("http://", "https://")


def is_url(model: str) -> bool:
    """Whether ``model`` names a server (``http://`` or ``https://``) rather than weights."""
    return model.startswith(_URL_SCHEMES)


BACKENDS.register_lazy(
    "transformers", "recal.models.hf:load_transformers", install="recal",
    help="transformers in process: a packaged name, a .gguf file, a local folder or a hub id")
BACKENDS.register_lazy(
    "vllm", "recal.models.vllm_backend:load_vllm", install="recal[vllm]",
    help="vLLM in process on a CUDA GPU: a hub id, a folder or a converted packaged model")


@BACKENDS.register("http", help="an OpenAI-compatible server at a URL (http://HOST:PORT/v1)")
def load_http_backend(model: str | None = None, *, kind: ModelKind | None = None,
                      cache: Path | None = None, **options: Any) -> Backend:
    """The http backend for the server at ``model`` when it is a URL (several comma-separated
    URLs are replicas), else at ``$RECAL_BASE_URL``. ``cache`` is unused (the server holds the
    weights); ``options`` are :class:`recal.models.http.HTTPConfig` fields."""
    from recal.models.http import load_http

    return load_http(model if model is not None and is_url(model) else None, kind=kind, **options)


def load_recorded(model: dict[str, Any], **options: Any) -> Backend:
    """Load again the model a run or a scorer recorded (:meth:`ModelIdentity.to_dict`): a
    server at its URL asking for the model it served, else the weights by name, in the
    precision they ran in."""
    from recal.models import load_backend

    if model.get("backend") == "http":
        return load_backend(model["source"], kind=model.get("kind"),
                            served_model=model["name"], **options)
    if model.get("dtype") and model.get("backend") == "transformers":
        options = {"dtype": model["dtype"], **options}
    return load_backend(model["name"], kind=model.get("kind"), **options)


def choose_backend(model: str, backend: str | None = None) -> str:
    """The registered name of the backend that loads ``model``.

    ``backend`` wins when given (unknown names raise :class:`~recal.registry.UnknownNameError`,
    a ``KeyError`` and ``ValueError``, with "did you mean");
    otherwise a URL picks ``http`` and anything else :data:`DEFAULT_BACKEND`.
    """
    if backend is not None:
        if backend not in BACKENDS:
            raise UnknownNameError(BACKENDS.unknown_message(backend))
        return backend.lower()
    return "http" if is_url(model) else DEFAULT_BACKEND


def _check_options(name: str, loader: BackendLoader, options: dict[str, Any]) -> None:
    """Refuse options a loader without ``**options`` cannot take, naming them."""
    if not options:
        return
    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):  # not introspectable: let the call check
        return
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ValueError(f"the {name} backend takes no options, got {sorted(options)}")


def load_backend(model: str = DEFAULT_MODEL, *, backend: BackendName | None = None,
                 kind: ModelKind | None = None, cache: Path | None = None,
                 **options: Any) -> Backend:
    """A backend for ``model``: a packaged name (see ``recal models``), a .gguf file, a local
    folder or a hub id (hub ids need internet); or the URL of an OpenAI-compatible server
    (``http://127.0.0.1:8080/v1``), which picks the http backend.

    ``backend`` (a name in :data:`BACKENDS`) overrides :func:`choose_backend`; 'vllm' runs the
    model in process with vLLM (GPU machines, ``pip install 'recal[vllm]'``). ``options`` go to
    the backend: for http ``served_model``, ``api_key``, ``concurrency``, ``timeout``, ... (see
    ``recal.models.http.HTTPConfig``); for vllm the ``vllm.LLM`` arguments.
    """
    name = choose_backend(model, backend)
    loader = BACKENDS.get(name)
    _check_options(name, loader, options)
    return loader(model, kind=kind, cache=cache, **options)
