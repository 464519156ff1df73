"""The FastAPI application of ``recal serve`` and the function that runs it with uvicorn."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
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
from recal.abstention import AbstentionRule
from recal.models.http import HTTPBackendError, ServerRequestError
from recal.models.stop import STOP_SAMPLING, SamplingStopped, sampling_deadline
from recal.prompts import Prompt, PromptTooLongError
from recal.serve.config import ServeConfig
from recal.serve.scoring import ConfidenceService, message_text
from recal.strict_json import finite_json

__all__ = ["create_app", "run_server", "check_listen", "JsonLogFormatter", "LOOPBACK_HOSTS",
           "NULL_REASONS", "REFUSAL_TEXT", "abstention_rule"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Addresses only this machine can reach: the proxy may serve them without a key."""

NULL_REASONS = ("non_modal", "not_finite")
"""Why a choice's confidence is null, as /metrics counts them: the answer is not the samples'
modal class (:data:`recal.serve.scoring.NON_MODAL_NOTE`), or the map gave no finite number."""


def check_listen(host: str, api_key: str | None, *, insecure_no_key: bool = False) -> None:
    """Refuse to listen beyond loopback with no proxy key, unless ``insecure_no_key``: anyone
    who reaches the port could spend the upstream model's time."""
    if api_key is None and host not in LOOPBACK_HOSTS and not insecure_no_key:
        raise ValueError(f"--host {host} serves other machines: set a proxy key (--proxy-key or "
                         "$RECAL_PROXY_KEY), or pass --insecure-no-key to serve anyone")

log = logging.getLogger("recal.serve")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, event and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        row = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(),
               "event": record.getMessage()}
        row.update(getattr(record, "fields", {}))
        return json.dumps(finite_json(row), default=str, allow_nan=False)


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
        self.confidence_null: Counter[str] = Counter()
        self.upstream_errors = 0
        self.in_flight = 0
        self.below_threshold = 0

    def record(self, path: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(path, status)] += 1
            self.duration_sum += seconds
            self.duration_count += 1

    def observe(self, confidences: list[dict[str, Any]]) -> None:
        """Count each choice's confidence (its ``recal`` field): given, or null with the
        reason (the response carries a non-finite value as null too)."""
        with self.lock:
            for c in confidences:
                value = c["confidence"]
                if value is not None and math.isfinite(value):
                    self.confidence_sum += value
                    self.confidence_count += 1
                else:
                    reason = "not_finite" if c["agrees_with_modal"] else "non_modal"
                    self.confidence_null[reason] += 1

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
                "# HELP recal_confidence Calibrated confidence of each answered choice that "
                "has one.",
                "# TYPE recal_confidence summary",
                f"recal_confidence_sum {self.confidence_sum:.6f}",
                f"recal_confidence_count {self.confidence_count}",
                "# HELP recal_confidence_null_total Answered choices given a null confidence, "
                "by reason.",
                "# TYPE recal_confidence_null_total counter",
            ]
            for reason in NULL_REASONS:
                lines.append(f'recal_confidence_null_total{{reason="{reason}"}} '
                             f'{self.confidence_null[reason]}')
            lines += [
                "# TYPE recal_upstream_errors_total counter",
                f"recal_upstream_errors_total {self.upstream_errors}",
                "# TYPE recal_in_flight gauge",
                f"recal_in_flight {self.in_flight}",
                "# HELP recal_below_threshold_total Answers below the abstention threshold "
                "(flagged or withheld).",
                "# TYPE recal_below_threshold_total counter",
                f"recal_below_threshold_total {self.below_threshold}",
            ]
        return "\n".join(lines) + "\n"


class _StrictJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(finite_json(content), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")


def _error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    """An error in OpenAI's shape, so that OpenAI clients show the message."""
    kind = "authentication_error" if status == 401 else (
        "invalid_request_error" if status < 500 else "server_error")
    return _StrictJSON({"error": {"message": message, "type": kind, "code": code,
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
    _check_fields(body)
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise _Refused(_error(400, "messages has no user message: recal scores the answer to "
                              "the last user message", "no_question", "messages"))
    question = message_text(users[-1]["content"]).strip()
    if not question:
        raise _Refused(_error(400, "the last user message is empty", "no_question", "messages"))
    return question


# Standard fields with numeric ranges (OpenAI's): name -> (lowest, highest).
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0), "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0), "frequency_penalty": (-2.0, 2.0),
}


def _check_fields(body: dict[str, Any]) -> None:
    """The standard request fields recal forwards, by type and range; a bad one is named."""
    def refuse(key: str, expected: str) -> _Refused:
        return _Refused(_error(400, f"{key} must be {expected}, got {body[key]!r}",
                               "invalid_" + key, key))

    for key, (low, high) in _RANGES.items():
        value = body.get(key)
        if value is None:
            continue
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or not math.isfinite(value) or not low <= value <= high):
            raise refuse(key, f"a number from {low:g} to {high:g}")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)
                             or not 0 <= seed < 2**63):
        raise refuse("seed", "a non-negative integer")
    if body.get("logprobs") is not None and not isinstance(body["logprobs"], bool):
        raise refuse("logprobs", "true or false")
    top = body.get("top_logprobs")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool)
                            or not 0 <= top <= 20):
        raise refuse("top_logprobs", "an integer from 0 to 20")
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (
            isinstance(stop, list) and len(stop) <= 4 and all(isinstance(x, str) for x in stop))):
        raise refuse("stop", "a string or a list of at most 4 strings")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise refuse("user", "a string")


def _check_prompts(service: ConfidenceService, body: dict[str, Any], question: str) -> None:
    """Prompt lengths against the backend's limit, before any forward pass or upstream call:
    the scorer's prompt for the question, and (in-process upstream) the chat itself."""
    from recal.data.records import Question
    from recal.prompts import build_prompt

    backend = service.backend
    check = getattr(backend, "check_prompt", None)
    if check is None:  # a server upstream counts its own tokens and refuses with a 4xx
        return
    try:
        prompt = build_prompt(Question("request", question, ("?",)), service.scorer.style,
                              chat=backend.is_chat, shots=service.scorer.shots)
        check("the last user message", prompt, service.sampling.max_new_tokens or 0)
        if getattr(backend, "request", None) is None:
            chat = Prompt(messages=tuple((m["role"], message_text(m["content"]))
                                         for m in body["messages"]))
            check("messages", chat, int(body.get("max_tokens") or 256))
    except PromptTooLongError as exc:
        message = (f"{exc.question_id} is {exc.tokens} tokens long; this model takes at most "
                   f"{exc.limit} here")
        raise _Refused(_error(400, message, "context_length_exceeded", "messages")) from None


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


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


def _within(seconds: float, work: Any, *args: Any) -> Any:
    """``work(*args)`` in this worker thread, stopped past ``seconds``: a request that has
    timed out stops computing instead of holding a core (in-process sampling stops at its next
    decode step; an HTTP upstream's request and retries wait no longer than the deadline)."""
    with sampling_deadline(seconds):
        return work(*args)


async def _guarded(call_next: Any, request: Request) -> Response:
    """The route's response; a bug becomes an OpenAI-shaped 500 (logged with its traceback)."""
    try:
        return await call_next(request)
    except Exception:
        log.exception("internal_error", extra={"fields": {
            "request_id": request.state.request_id, "path": request.url.path}})
        return _error(500, f"internal error (request {request.state.request_id}); see the "
                      "server log", "internal_error")


REFUSAL_TEXT = "I am not confident enough in an answer to this question to give one."
"""What replaces an answer below the abstention threshold under ``--abstain refuse``."""


def abstention_rule(service: ConfidenceService, config: ServeConfig) -> AbstentionRule | None:
    """The rule ``--abstain flag|refuse`` applies; refused at start when the scorer has none."""
    if config.abstain == "off":
        return None
    rule = service.abstention
    if rule is None:
        raise ValueError(f"--abstain {config.abstain} needs a scorer exported with an abstention "
                         "threshold: export it again with this recal (recal export "
                         "--target-risk R)")
    if rule.threshold is None:
        raise ValueError(f"--abstain {config.abstain}: the scorer has no abstention threshold "
                         f"({rule.reason}); export it with a larger --target-risk or "
                         "--risk-delta, or on more questions")
    return rule


def _apply_abstention(answer: dict[str, Any], confs: list[Any], rule: AbstentionRule,
                      mode: str) -> int:
    """Mark (``flag``) or withhold (``refuse``) each choice below ``rule``'s threshold; the
    number below it. A choice with a null confidence is below every threshold."""
    below = 0
    for choice, c in zip(answer.get("choices") or [], confs, strict=False):
        answered = c.confidence is not None and rule.answers(c.raw_confidence)
        decision = "answer" if answered else ("flag" if mode == "flag" else "refuse")
        choice["recal"]["abstention"] = decision
        if not answered:
            below += 1
            if mode == "refuse":
                choice["message"] = {"role": "assistant", "content": REFUSAL_TEXT}
    return below


def create_app(service: ConfidenceService, config: ServeConfig | None = None) -> FastAPI:
    """The proxy in front of ``service``'s upstream, with ``service``'s scorer (fixed here).

    With ``config.abstain`` 'flag' or 'refuse', each choice carries ``recal.abstention``
    ('answer', 'flag' or 'refuse') from the scorer's abstention threshold (a scorer without one
    is refused here, with the reason)."""
    config = config or ServeConfig()
    rule = abstention_rule(service, config)
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
                response = await _guarded(call_next, request)
        else:
            response = await _guarded(call_next, request)
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
                body = json.loads(raw, parse_constant=_json_constant)
            except RecursionError:
                raise _Refused(_error(400, "the request body nests too deeply",
                                      "invalid_json")) from None
            except ValueError:  # also NaN / Infinity, which JSON does not have
                raise _Refused(_error(400, "the request body is not valid JSON (NaN and "
                                      "Infinity are not JSON)", "invalid_json")) from None
            question = _check_body(body, config)
            await run_in_threadpool(_check_prompts, service, body, question)
        except _Refused as refused:
            return refused.response
        request.state.log["n"] = body.get("n") or 1
        deadline = time.monotonic() + config.request_timeout
        try:
            result = await asyncio.wait_for(_answer(body, question, deadline),
                                            config.request_timeout)
        except (TimeoutError, SamplingStopped):
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
        metrics.observe([choice["recal"] for choice in result.get("choices") or []
                         if "recal" in choice])
        header = "null" if conf is None or not math.isfinite(conf) else f"{conf:.6f}"
        headers = {"X-Recal-Confidence": header}
        if rule is not None:
            headers["X-Recal-Abstention"] = result["recal"]["abstention"]["decision"]
        return _StrictJSON(result, headers=headers)

    async def _answer(body: dict[str, Any], question: str, deadline: float
                      ) -> dict[str, Any]:
        async with gate:
            with metrics.lock:
                metrics.in_flight += 1
            try:
                # What is left of the request's time, passed down to the upstream request and
                # to sampling, so that nothing keeps working once the client has its 504.
                seconds = max(deadline - time.monotonic(), 0.0)
                answer, record = await asyncio.gather(
                    run_in_threadpool(_within, seconds, service.answer, body),
                    run_in_threadpool(_within, seconds, service.sample, question))
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
                                                  "agrees_with_modal": False, "note": None}
        answer["recal"] = {**first, **summary, "method": service.scorer.recalibrator.name,
                           "scorer": service.scorer.scorer}
        if rule is not None:
            below = _apply_abstention(answer, confs, rule, config.abstain)
            with metrics.lock:
                metrics.below_threshold += below
            choices = answer.get("choices") or []
            answer["recal"]["abstention"] = {
                "decision": (choices[0]["recal"]["abstention"] if choices else config.abstain),
                "threshold": rule.threshold, "calibrated_threshold": rule.calibrated_threshold,
                "target_risk": rule.target_risk, "delta": rule.delta}
        return answer

    return app


def run_server(service: ConfidenceService, config: ServeConfig, *, host: str = "127.0.0.1",
               port: int = 8000) -> None:
    """Serve until interrupted (uvicorn; its own access log is replaced by recal's JSON log).

    SIGTERM or Ctrl-C stops it within seconds: samplers stop at their next decode step
    (:data:`recal.models.hf.STOP_SAMPLING`) and requests still open get 5 s to finish."""
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            STOP_SAMPLING.set()
            log.info("stop", extra={"fields": {"signal": sig}})
            super().handle_exit(sig, frame)

    STOP_SAMPLING.clear()  # a server run earlier in this process may have set it
    app = create_app(service, config)
    log.info("start", extra={"fields": {"host": host, "port": port, "auth": config.api_key
                                        is not None, **service.describe()}})
    server = _Server(uvicorn.Config(app, host=host, port=port, log_config=None,
                                    access_log=False, log_level="warning",
                                    timeout_graceful_shutdown=5))
    try:
        server.run()
    finally:
        STOP_SAMPLING.set()
