"""``recal serve``: an OpenAI-compatible proxy that adds calibrated confidence to answers.

    POST /v1/chat/completions   the upstream model's answer, plus ``"recal": {...}`` and the
                                header ``X-Recal-Confidence``
    GET  /v1/models             the one model served
    GET  /health                liveness and what is served (no key needed)
    GET  /metrics               Prometheus text counters

The scorer file is read once at start; no request field names a file, a module or a model to
load. fastapi and uvicorn come with ``pip install 'recal[server]'`` and are imported only here.
"""

from recal.serve.config import ServeConfig
from recal.serve.scoring import Confidence, ConfidenceService

__all__ = ["ServeConfig", "Confidence", "ConfidenceService", "create_app", "run_server"]


def __getattr__(name: str):  # fastapi is imported only when the app is built
    if name in ("create_app", "run_server"):
        from recal.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'recal.serve' has no attribute {name!r}")
