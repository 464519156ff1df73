"""The FastAPI application of ``recal serve`` and the function that runs it with uvicorn."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from recal import __version__
from recal.models.http import HTTPBackendError, ServerRequestError
from recal.serve.config import ServeConfig
from recal.serve.scoring import ConfidenceService, message_text

__all__ = ["create_app", "run_server", "JsonLogFormatter"]

log = logging.getLogger("recal.serve")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, event and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        row = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(),
               "event": record.getMessage()}
        row.update(getattr(record, "fields", {}))
        return json.dumps(row, default=str)


def _setup_logging() -> None:
    if not any(isinstance(h.formatter, JsonLogFormatter) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLogFormatter())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


class _Metrics:
    """Counters for /metrics (Prometheus text format), safe across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.duration_sum = 0.0
        self.duration_count = 0
        self.confidence_sum = 0.0
        self.confidence_count = 0
        self.upstream_errors = 0
        self.in_flight = 0

    def record(self, path: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(path, status)] += 1
            self.duration_sum += seconds
            self.duration_count += 1

    def text(self) -> str:
        with self.lock:
            lines = ["# HELP recal_requests_total Requests answered, by path and status.",
                     "# TYPE recal_requests_total counter"]
            for (path, status), count in sorted(self.requests.items()):
                lines.append(f'recal_requests_total{{path="{path}",status="{status}"}} {count}')
            lines += [
                "# TYPE recal_request_duration_seconds summary",
                f"recal_request_duration_seconds_sum {self.duration_sum:.6f}",
                f"recal_request_duration_seconds_count {self.duration_count}",
                "# HELP recal_confidence Calibrated confidence of answered completions.",
                "# TYPE recal_confidence summary",
                f"recal_confidence_sum {self.confidence_sum:.6f}",
                f"recal_confidence_count {self.confidence_count}",
                "# TYPE recal_upstream_errors_total counter",
                f"recal_upstream_errors_total {self.upstream_errors}",
                "# TYPE recal_in_flight gauge",
                f"recal_in_flight {self.in_flight}",
            ]
        return "\n".join(lines) + "\n"


def _error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    """An error in OpenAI's shape, so that OpenAI clients show the message."""
    kind = "authentication_error" if status == 401 else (
        "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "code": code,
                                   "param": param}}, status_code=status)


class _Refused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _check_body(body: Any, config: ServeConfig) -> str:
    """Check a chat request against the bounds; the question (last user message)."""
    if not isinstance(body, dict):
        raise _Refused(_error(400, "the request body must be a JSON object", "invalid_body"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refused(_error(400, "messages must be a non-empty list of chat messages",
                              "invalid_messages", "messages"))
    if len(messages) > config.max_messages:
        raise _Refused(_error(400, f"messages has {len(messages)} entries; this proxy takes at "
                              f"most {config.max_messages} (--max-messages)",
                              "too_many_messages", "messages"))
    for i, m in enumerate(messages):
        ok = isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and (
            isinstance(m.get("content"), str) or (isinstance(m.get("content"), list) and all(
                isinstance(p, dict) and p.get("type") == "text"
                and isinstance(p.get("text"), str) for p in m["content"])))
        if not ok:
            raise _Refused(_error(400, f"messages[{i}] must have role system, user or assistant "
                                  "and text content", "invalid_messages", "messages"))
    if body.get("stream"):
        raise _Refused(_error(400, "stream=true is not supported: recal serve answers once the "
                              "confidence is known", "stream_unsupported", "stream"))
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _Refused(_error(400, f"n must be a positive integer, got {n!r}", "invalid_n", "n"))
    if n > config.max_n:
        raise _Refused(_error(400, f"n is {n}; this proxy gives at most {config.max_n} choices "
                              "per request (--max-n)", "too_many_samples", "n"))
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _Refused(_error(400, f"{key} must be a positive integer", "invalid_" + key,
                                  key))
        if value > config.max_tokens:
            raise _Refused(_error(400, f"{key} is {value}; this proxy allows at most "
                                  f"{config.max_tokens} (--max-tokens)", "too_many_tokens", key))
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise _Refused(_error(400, "messages has no user message: recal scores the answer to "
                              "the last user message", "no_question", "messages"))
    question = message_text(users[-1]["content"]).strip()
    if not question:
        raise _Refused(_error(400, "the last user message is empty", "no_question", "messages"))
    return question


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_big = _error(413, f"the request body exceeds {limit} bytes (--max-body-bytes)",
                     "request_too_large")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(too_big)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(too_big)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(service: ConfidenceService, config: ServeConfig | None = None) -> FastAPI:
    """The proxy in front of ``service``'s upstream, with ``service``'s scorer (fixed here)."""
    config = config or ServeConfig()
    _setup_logging()
    metrics = _Metrics()
    app = FastAPI(title="recal serve", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    gate = asyncio.Semaphore(config.max_concurrent)
    open_paths = {"/health"}

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        request.state.request_id = request_id
        request.state.log = {}
        if request.url.path not in open_paths and config.api_key is not None:
            sent = request.headers.get("authorization", "")
            expected = f"Bearer {config.api_key}"
            if not hmac.compare_digest(sent.encode(), expected.encode()):
                response: Response = _error(
                    401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                    "invalid_api_key")
            else:
                response = await call_next(request)
        else:
            response = await call_next(request)
        seconds = time.perf_counter() - start
        metrics.record(request.url.path, response.status_code, seconds)
        response.headers["X-Request-Id"] = request_id
        log.info("request", extra={"fields": {
            "request_id": request_id, "method": request.method, "path": request.url.path,
            "status": response.status_code, "latency_ms": round(seconds * 1000, 1),
            "client": request.client.host if request.client else None,
            **request.state.log}})
        return response

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "recal_version": __version__, **service.describe()}

    @app.get("/metrics")
    async def metrics_text() -> PlainTextResponse:
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": service.served_model, "object": "model",
                                            "owned_by": "recal"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        try:
            raw = await _read_body(request, config.max_body_bytes)
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise _Refused(_error(400, "the request body is not valid JSON",
                                      "invalid_json")) from None
            question = _check_body(body, config)
        except _Refused as refused:
            return refused.response
        request.state.log["n"] = body.get("n") or 1
        try:
            result = await asyncio.wait_for(_answer(body, question), config.request_timeout)
        except TimeoutError:
            return _error(504, f"no answer within {config.request_timeout:g} s "
                          "(--request-timeout)", "timeout")
        except ServerRequestError as exc:
            with metrics.lock:
                metrics.upstream_errors += 1
            status = exc.status if 400 <= exc.status < 500 else 502
            return _error(status, f"the upstream model refused the request: {exc}",
                          "upstream_refused")
        except HTTPBackendError as exc:
            with metrics.lock:
                metrics.upstream_errors += 1
            return _error(502, f"the upstream model failed: {exc}", "upstream_unavailable")
        conf = result["recal"]["confidence"]
        request.state.log["confidence"] = conf
        if conf is not None:
            with metrics.lock:
                metrics.confidence_sum += conf
                metrics.confidence_count += 1
        header = "null" if conf is None else f"{conf:.6f}"
        return JSONResponse(result, headers={"X-Recal-Confidence": header})

    async def _answer(body: dict[str, Any], question: str) -> dict[str, Any]:
        async with gate:
            with metrics.lock:
                metrics.in_flight += 1
            try:
                answer, record = await asyncio.gather(
                    run_in_threadpool(service.answer, body),
                    run_in_threadpool(service.sample, question))
                texts = [(c.get("message") or {}).get("content") or ""
                         for c in answer.get("choices") or []]
                confs, summary = await run_in_threadpool(service.confidences, question, record,
                                                         texts)
            finally:
                with metrics.lock:
                    metrics.in_flight -= 1
        for choice, c in zip(answer.get("choices") or [], confs, strict=False):
            choice["recal"] = c.to_dict()
        first = confs[0].to_dict() if confs else {"answer": None, "confidence": None,
                                                  "raw_confidence": None,
                                                  "agrees_with_modal": False}
        answer["recal"] = {**first, **summary, "method": service.scorer.recalibrator.name,
                           "scorer": service.scorer.scorer}
        return answer

    return app


def run_server(service: ConfidenceService, config: ServeConfig, *, host: str = "127.0.0.1",
               port: int = 8000) -> None:
    """Serve until interrupted (uvicorn; its own access log is replaced by recal's JSON log)."""
    import uvicorn

    app = create_app(service, config)
    log.info("start", extra={"fields": {"host": host, "port": port, "auth": config.api_key
                                        is not None, **service.describe()}})
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                log_level="warning")
