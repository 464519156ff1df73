"""A backend for any OpenAI-compatible server (vLLM, llama.cpp, TGI, Ollama, hosted APIs).

Chat models are asked through ``/chat/completions`` (the server applies the chat template);
base models (``kind='base'``) through ``/completions`` with the k-shot text prompt.

How M samples are drawn: a first small request with ``n=2`` tells whether the server honours
``n``. Where it does, each question costs ``ceil(M / max_n)`` requests; where it does not
(llama.cpp's server answers one choice whatever ``n`` asks), M single requests are sent,
``concurrency`` at a time. Every request carries a ``seed`` derived from (seed, question id,
sample index), so servers that honour it (llama.cpp, vLLM) draw the same answers again on a
resumed run.

What the backend can and cannot give the confidence scorers:

- ``modal_share``, ``heldout_modal``, ``semantic_entropy``: the answer texts only; always work.
- ``greedy_likelihood``: the greedy answer's token log-probabilities. They are asked for on
  the greedy request only (``logprobs='greedy'``, the default: llama-cpp-python's server takes
  about six times as long per request when it computes them); ``'all'`` asks for them on every
  sample too, ``'none'`` never. A server that returns none leaves ``Sample.logprobs`` empty and
  the scorer then raises. Servers report log-probabilities at temperature 1 (OpenAI semantics)
  and without the stop token, so the value differs slightly from the transformers backend's.
- refitting the sampling temperature (``tau_grid``) needs every logit: not over HTTP.
- ``verbalized``: one greedy reply per question; works.
- ``p_true``: next-token probabilities, read from ``top_logprobs`` (the 20 likeliest first
  tokens; a candidate outside them counts as probability 0). Servers without top log-probs
  raise ``NotImplementedError``.

Servers that decode one request at a time (llama-cpp-python's server) gain little from
concurrency; ``replicas`` (``--model URL1,URL2``) spreads the requests round robin over several
servers of the same model, and a retry goes to the next replica.

Faults: requests time out after ``timeout`` seconds; 429, 5xx, timeouts and dropped or refused
connections are retried with exponential backoff and full jitter (``Retry-After`` is honoured,
capped); other 4xx are answered at once with the server's message, since sending the same request
again cannot succeed. A question is yielded only once all its requests have succeeded, so the run
store never holds part of a question, and a failed run keeps every finished question on disk.

Sampling is untruncated when ``sampler_fields`` is on (the default): ``top_p=1`` plus the
llama.cpp/vLLM fields ``top_k=0``, ``min_p=0`` and ``repeat_penalty=1`` (llama.cpp's server
otherwise truncates to top-k 40 and min-p 0.05). Hosted APIs that refuse unknown fields need
``sampler_fields=False`` (``--no-sampler-fields``); they then sample with their own defaults.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from recal.lines import first_line
from recal.models.base import Backend, ModelIdentity, ModelKind
from recal.models.rng import row_keys
from recal.models.stop import (
    SamplingStopped,
    check_stop,
    current_deadline,
    deadline_at,
    time_left,
)
from recal.prompts import Prompt
from recal.samples import QuestionSamples, Sample, SamplingConfig

__all__ = [
    "HTTPConfig",
    "HTTPBackend",
    "HTTPStats",
    "ServerCapabilities",
    "HTTPBackendError",
    "ServerUnreachableError",
    "ServerRequestError",
    "load_http",
    "resolve_base_url",
    "resolve_api_key",
]

NMode = Literal["auto", "n", "single"]
LogprobsMode = Literal["greedy", "all", "none"]
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_TOP_LOGPROBS = 20
_SEED_MOD = 2**31 - 1  # llama.cpp and vLLM take a signed 32-bit seed


class HTTPBackendError(RuntimeError):
    """A request to the model server failed for good; the message says what to do."""


class ServerUnreachableError(HTTPBackendError):
    """The server could not be reached (or kept failing) through every retry."""


class ServerRequestError(HTTPBackendError):
    """The server refused a request with a 4xx status that a retry cannot change."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def resolve_base_url(base_url: str | None = None) -> str:
    """``base_url``, else ``$RECAL_BASE_URL``, else ``$OPENAI_BASE_URL``; without a trailing /."""
    url = base_url or os.environ.get("RECAL_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
    if not url:
        raise ValueError("no server URL: pass --model http://HOST:PORT/v1 (or base_url=...), or "
                         "set RECAL_BASE_URL")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"server URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def resolve_api_key(api_key: str | None = None) -> str | None:
    """``api_key``, else ``$RECAL_API_KEY``, else ``$OPENAI_API_KEY``, else none."""
    return api_key or os.environ.get("RECAL_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


@dataclass(frozen=True)
class HTTPConfig:
    """How to reach an OpenAI-compatible server and how hard to try."""

    base_url: str
    """Server root including the API prefix, e.g. ``http://127.0.0.1:8080/v1``."""
    replicas: tuple[str, ...] = ()
    """More servers of the same model: requests go round robin over base_url and these."""
    served_model: str | None = None
    """The ``model`` field of requests; None: the only model ``/models`` lists."""
    api_key: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer``; never written to a run folder."""
    kind: ModelKind = "chat"
    """'chat': ``/chat/completions`` with messages; 'base': ``/completions`` with text."""
    concurrency: int = 8
    """Requests in flight at once."""
    timeout: float = 60.0
    """Seconds one request may take (connect and read) before it counts as failed."""
    max_retries: int = 5
    """Retries of a request after the first try (429, 5xx, timeouts, dropped connections)."""
    backoff_base: float = 0.5
    """Seconds: retry k waits a uniform draw in [0, min(backoff_max, backoff_base * 2**k)]."""
    backoff_max: float = 20.0
    """Longest wait between two tries, also the cap on a server's Retry-After."""
    n_mode: NMode = "auto"
    """'auto': detect whether the server honours ``n``; 'n' or 'single' force one way."""
    max_n: int = 64
    """Most choices asked in one request when the server honours ``n``."""
    logprobs: LogprobsMode = "greedy"
    """Which requests ask for token log-probabilities: the greedy answer's (what
    greedy_likelihood reads), every sample's, or none."""
    sampler_fields: bool = True
    """Send top_k=0, min_p=0, repeat_penalty=1 (llama.cpp/vLLM) so sampling is untruncated."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", resolve_base_url(self.base_url))
        object.__setattr__(self, "replicas",
                           tuple(resolve_base_url(u) for u in self.replicas))
        if self.kind not in ("chat", "base"):
            raise ValueError(f"kind must be 'chat' or 'base', got {self.kind!r}")
        if self.logprobs not in ("greedy", "all", "none"):
            raise ValueError(f"logprobs must be 'greedy', 'all' or 'none', got {self.logprobs!r}")
        if self.n_mode not in ("auto", "n", "single"):
            raise ValueError(f"n_mode must be 'auto', 'n' or 'single', got {self.n_mode!r}")
        for name in ("concurrency", "max_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        for name in ("timeout", "backoff_base", "backoff_max"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True)
class ServerCapabilities:
    """What the first request found out about the server."""

    honours_n: bool
    logprobs: bool


@dataclass
class HTTPStats:
    """Counts of what the backend sent (thread-safe through ``lock``)."""

    requests: int = 0
    """HTTP requests sent, retries included."""
    retries: int = 0
    sample_requests: dict[str, int] = field(default_factory=dict)
    """Requests sent per question id (probes and next-token queries are not counted)."""
    per_server: dict[str, int] = field(default_factory=dict)
    """Requests sent to each server (base URL)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, question_id: str | None, retry: bool, server: str = "") -> None:
        with self.lock:
            self.requests += 1
            self.per_server[server] = self.per_server.get(server, 0) + 1
            self.retries += int(retry)
            if question_id is not None:
                self.sample_requests[question_id] = self.sample_requests.get(question_id, 0) + 1


@dataclass(frozen=True)
class _Job:
    question: int
    slot: int
    """First sample index this request fills; M for the greedy answer."""
    count: int
    """Choices the request asks for (1 unless the server honours n)."""
    greedy: bool


def _request_seed(seed: int, question_id: str, index: int) -> int:
    key = int(row_keys(seed, [question_id], [index])[0])
    return key % _SEED_MOD


class HTTPBackend(Backend):
    """Samples from an OpenAI-compatible server; see the module docstring."""

    def __init__(self, config: HTTPConfig, *, client: Any | None = None) -> None:
        import httpx

        self.config = config
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._client = client or httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
            limits=httpx.Limits(max_connections=config.concurrency + 2,
                                max_keepalive_connections=config.concurrency + 2),
        )
        self.stats = HTTPStats()
        self.capabilities: ServerCapabilities | None = None
        self._sampler_fields = config.sampler_fields
        self._servers = (config.base_url, *config.replicas)
        self._turn = itertools.count()
        served, model_info = self._find_model()
        for replica in config.replicas:
            other, _ = self._find_model(replica)
            if other != served:
                raise HTTPBackendError(f"replica {replica} serves {other!r}, but {config.base_url} "
                                       f"serves {served!r}: replicas must serve the same model")
        self.served_model = served
        blob = json.dumps({"model": served, "owned_by": model_info.get("owned_by")},
                          sort_keys=True)
        self.identity = ModelIdentity(
            name=served, kind=config.kind, backend="http", source=config.base_url,
            # The URL stays out of the hash: a restarted server on another port is the same model.
            config_hash=hashlib.sha256(blob.encode()).hexdigest()[:16])

    # -- transport -------------------------------------------------------------------------------

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        cap = min(self.config.backoff_max, self.config.backoff_base * 2**attempt)
        if retry_after:
            try:
                return min(self.config.backoff_max, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return random.uniform(0, cap)  # "full jitter" (Brooker 2015): spreads retries out

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
                question_id: str | None = None, retries: int | None = None,
                server: str | None = None) -> dict[str, Any]:
        """Send one request with retries; the parsed JSON response.

        Raises ``ServerRequestError`` at once on a 4xx other than 408/409/425/429, and
        ``ServerUnreachableError`` once ``retries`` (default ``max_retries``) retries failed.
        Within a :func:`recal.models.stop.sampling_deadline` no try waits past the deadline,
        and :class:`recal.models.stop.SamplingStopped` is raised there instead of retrying.
        Requests go round robin over the replicas (each retry to the next) unless ``server``
        names one.
        """
        import httpx

        servers = (server,) if server else self._servers
        first = next(self._turn)
        last = ""
        retries = self.config.max_retries if retries is None else retries
        for attempt in range(retries + 1):
            root = servers[(first + attempt) % len(servers)]
            url = f"{root}/{path.lstrip('/')}"
            wait = self._wait_limit()  # the request's own deadline (recal serve's timeout)
            self.stats.count(question_id, retry=attempt > 0, server=root)
            retry_after = None
            try:
                response = self._client.request(
                    method, url, json=body,
                    timeout=httpx.Timeout(wait, connect=min(wait, 10.0)))
            except httpx.TimeoutException:
                check_stop()  # past the caller's deadline: stop, do not retry
                last = f"no answer within {self.config.timeout:g} s (timeout)"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        last = f"status {response.status_code} with a body that is not JSON"
                elif response.status_code in _RETRY_STATUS:
                    last = f"status {response.status_code}: {_error_text(response)}"
                    retry_after = response.headers.get("Retry-After")
                else:
                    raise ServerRequestError(_refusal(response, url, self.config),
                                             response.status_code)
            if attempt < retries:
                left = time_left()
                delay = self._delay(attempt, retry_after)
                time.sleep(delay if left is None else max(0.0, min(delay, left)))
        raise ServerUnreachableError(
            f"{method} {url} failed {retries + 1} times (last: {last}). Check "
            "that the server is running and --model names its URL; questions already finished "
            "are kept, so running the same command again resumes the run.")

    def _wait_limit(self) -> float:
        """Seconds the next request may wait: the configured timeout, or less when the caller's
        deadline comes sooner (raises :class:`SamplingStopped` once it has passed)."""
        check_stop()
        left = time_left()
        return self.config.timeout if left is None else min(self.config.timeout, left)

    def _find_model(self, server: str | None = None) -> tuple[str, dict[str, Any]]:
        server = server or self.config.base_url
        try:  # at start a wrong URL is likelier than a busy server: fail fast
            listing = self.request("GET", "models", retries=min(2, self.config.max_retries),
                                   server=server)
        except ServerRequestError as exc:
            if self.config.served_model and exc.status in (404, 405):
                return self.config.served_model, {}  # a server without /models
            raise
        models = [m for m in listing.get("data", []) if isinstance(m, dict) and "id" in m]
        ids = [str(m["id"]) for m in models]
        if self.config.served_model is not None:
            info = next((m for m in models if m["id"] == self.config.served_model), {})
            return self.config.served_model, info
        if len(ids) == 1:
            return ids[0], models[0]
        if not ids:
            raise HTTPBackendError(f"{server}/models lists no model: name it with "
                                   "--served-model")
        raise HTTPBackendError(f"{server} serves {len(ids)} models "
                               f"({', '.join(ids[:5])}); choose one with --served-model")

    # -- requests --------------------------------------------------------------------------------

    def _body(self, prompt: Prompt, config: SamplingConfig, *, n: int, greedy: bool,
              seed: int | None, max_tokens: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.served_model,
            "max_tokens": max_tokens or config.max_new_tokens,
            "temperature": 0.0 if greedy else config.temperature,
            "top_p": 1.0,
        }
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        if self._sampler_fields:
            body.update(top_k=0, min_p=0.0, repeat_penalty=1.0)
        if config.stop_at_newline:
            body["stop"] = ["\n"]
        logprobs = self.config.logprobs == "all" or (greedy and self.config.logprobs == "greedy")
        if self.is_chat:
            if prompt.messages is None:
                raise ValueError("a chat model got a text prompt; build prompts with chat=True")
            body["messages"] = [{"role": r, "content": c} for r, c in prompt.messages]
            if logprobs:  # llama.cpp returns none unless top_logprobs is at least 1
                body.update(logprobs=True, top_logprobs=1)
        else:
            if prompt.text is None:
                raise ValueError("a base model got chat messages; build prompts with chat=False")
            body["prompt"] = prompt.text
            if logprobs:
                body["logprobs"] = 1
        return body

    def _path(self) -> str:
        return "chat/completions" if self.is_chat else "completions"

    def _probe(self, prompt: Prompt, config: SamplingConfig) -> ServerCapabilities:
        """Ask for two one-token choices: does the server honour n, return log-probs, and
        accept the llama.cpp/vLLM sampler fields?"""

        def body_() -> dict[str, Any]:
            body = self._body(prompt, config, n=2, greedy=False, seed=1, max_tokens=1)
            if self.config.logprobs != "none":
                body.update({"logprobs": True, "top_logprobs": 1} if self.is_chat
                            else {"logprobs": 1})
            return body

        body = body_()
        try:
            reply = self.request("POST", self._path(), body)
        except ServerRequestError as exc:
            if not (self._sampler_fields and exc.status in (400, 422)):
                raise
            # A strict server refusing top_k/min_p/repeat_penalty: sample with its defaults.
            self._sampler_fields = False
            body = body_()
            reply = self.request("POST", self._path(), body)
        choices = reply.get("choices") or []
        honours_n = {self.config.n_mode == "n": True, self.config.n_mode == "single": False}.get(
            True, len(choices) >= 2)
        has_logprobs = bool(choices) and bool(self._token_logprobs(choices[0]))
        return ServerCapabilities(honours_n=honours_n, logprobs=has_logprobs)

    def _token_logprobs(self, choice: Mapping[str, Any]) -> list[float]:
        lp = choice.get("logprobs") or {}
        if self.is_chat:
            return [float(t["logprob"]) for t in (lp.get("content") or [])
                    if t.get("logprob") is not None]
        return [float(x) for x in (lp.get("token_logprobs") or []) if x is not None]

    def _to_sample(self, choice: Mapping[str, Any], config: SamplingConfig) -> Sample:
        if self.is_chat:
            text = (choice.get("message") or {}).get("content") or ""
        else:
            text = choice.get("text") or ""
        text = first_line(text.strip()).strip() if config.stop_at_newline else text.strip()
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return Sample(text=text, token_ids=(), logprobs=tuple(self._token_logprobs(choice)),
                      finish_reason=finish)

    def _run_job(self, job: _Job, qid: str, prompt: Prompt,
                 config: SamplingConfig) -> list[Sample]:
        seed = _request_seed(config.seed, qid, job.slot)
        body = self._body(prompt, config, n=job.count, greedy=job.greedy, seed=seed)
        reply = self.request("POST", self._path(), body, question_id=qid)
        choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) < job.count:
            raise HTTPBackendError(
                f"{self.config.base_url} returned {len(choices)} choices for n={job.count}; "
                "run with n_mode='single' (--n-mode single) for this server")
        return [self._to_sample(c, config) for c in choices[:job.count]]

    def _run_job_by(self, deadline: float | None, job: _Job, qid: str, prompt: Prompt,
                    config: SamplingConfig) -> list[Sample]:
        with deadline_at(deadline):
            return self._run_job(job, qid, prompt, config)

    def _jobs(self, question: int, config: SamplingConfig) -> list[_Job]:
        assert self.capabilities is not None
        m = config.n_samples
        step = min(m, self.config.max_n) if self.capabilities.honours_n else 1
        jobs = [_Job(question, s, min(step, m - s), False) for s in range(0, m, step)]
        if config.greedy:
            jobs.append(_Job(question, m, 1, True))
        return jobs

    # -- the Backend interface -------------------------------------------------------------------

    def generate(self, question_ids: Sequence[str], prompts: Sequence[Prompt],
                 config: SamplingConfig) -> Iterator[QuestionSamples]:
        self.check_generate_args(question_ids, prompts, config)
        if config.tau_grid:
            raise ValueError("tau_grid needs every logit of every step, which a server does not "
                             "return: sample without --tau-grid over HTTP")
        if not prompts:
            return
        if self.capabilities is None:
            self.capabilities = self._probe(prompts[0], config)
        m = config.n_samples
        deadline = current_deadline()  # the workers inherit it: they are other threads
        slots: list[list[Sample | None]] = [[None] * (m + 1) for _ in prompts]
        pending = [0] * len(prompts)
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency,
                                  thread_name_prefix="recal-http")
        futures: dict[Future[list[Sample]], _Job] = {}
        failure: BaseException | None = None
        try:
            for q, (qid, prompt) in enumerate(zip(question_ids, prompts, strict=True)):
                for job in self._jobs(q, config):
                    futures[pool.submit(self._run_job_by, deadline, job, qid, prompt,
                                        config)] = job
                    pending[q] += 1
            remaining = set(futures)
            while remaining:
                left = time_left()
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED,
                                       timeout=None if left is None else max(left, 0.0))
                if not done:  # past the deadline: send no more; those in flight time out too
                    for other in remaining:
                        other.cancel()
                    failure = SamplingStopped("sampling stopped: past its deadline")
                    break
                for future in done:
                    job = futures[future]
                    if future.cancelled():
                        continue
                    exc = future.exception()
                    if exc is not None:
                        if failure is None:
                            failure = exc
                            for other in remaining:  # finish what is in flight, send no more
                                other.cancel()
                        continue
                    for k, sample in enumerate(future.result()):
                        slots[job.question][job.slot + k] = sample
                    pending[job.question] -= 1
                    if pending[job.question] == 0:
                        row = slots[job.question]
                        slots[job.question] = []
                        yield QuestionSamples(
                            question_id=question_ids[job.question],
                            samples=tuple(s for s in row[:m] if s is not None),
                            greedy=row[m] if config.greedy else None)
        finally:
            pool.shutdown(wait=failure is not None, cancel_futures=True)
        if failure is not None:
            raise failure

    def next_token_logprobs(self, prompts: Sequence[Prompt],
                            candidates: Sequence[str]) -> list[list[float]]:
        """From the server's ``top_logprobs`` (the 20 likeliest first tokens): a candidate's
        value is the log-prob of the listed token that equals it, or that it begins with
        (-inf when none is listed)."""
        out: list[list[float]] = []
        config = SamplingConfig(n_samples=1, greedy=True, max_new_tokens=1, stop_at_newline=False)
        for prompt in prompts:
            body = self._body(prompt, config, n=1, greedy=True, seed=None, max_tokens=1)
            if self.is_chat:
                body.update(logprobs=True, top_logprobs=_TOP_LOGPROBS)
            else:
                body["logprobs"] = _TOP_LOGPROBS
            reply = self.request("POST", self._path(), body)
            top = _first_top_logprobs(reply, chat=self.is_chat)
            if top is None:
                raise NotImplementedError(
                    f"{self.config.base_url} returns no top_logprobs, which the p_true scorer "
                    "needs; use a scorer that reads the samples (modal_share, ...)")
            row = []
            for cand in candidates:
                exact = [lp for tok, lp in top.items() if tok == cand]
                prefix = [lp for tok, lp in top.items() if tok and cand.startswith(tok)]
                found = exact or sorted(prefix, reverse=True)
                row.append(found[0] if found else -math.inf)
            out.append(row)
        return out

    def close(self) -> None:
        self._client.close()


def _first_top_logprobs(reply: Mapping[str, Any], *, chat: bool) -> dict[str, float] | None:
    choices = reply.get("choices") or []
    if not choices:
        return None
    lp = choices[0].get("logprobs") or {}
    if chat:
        content = lp.get("content") or []
        if not content or not content[0].get("top_logprobs"):
            return None
        return {t["token"]: float(t["logprob"]) for t in content[0]["top_logprobs"]}
    tops = lp.get("top_logprobs") or []
    if not tops or not tops[0]:
        return None
    return {str(k): float(v) for k, v in tops[0].items()}


def _error_text(response: Any) -> str:
    try:
        doc = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(doc, dict):
        err = doc.get("error", doc.get("detail", doc))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return str(doc)[:300]


def _refusal(response: Any, url: str, config: HTTPConfig) -> str:
    status, text = response.status_code, _error_text(response)
    hint = {
        401: "the server wants an API key: pass --api-key or set RECAL_API_KEY",
        403: "the API key was refused: check --api-key / RECAL_API_KEY",
        404: "no such endpoint or model: the URL should end with the API prefix (often /v1) "
             "and --served-model should name a model the server lists",
    }.get(status, "the server refused the request; sending it again cannot help")
    return f"{url} answered {status} ({text}): {hint}"


def load_http(base_url: str | None = None, *, served_model: str | None = None,
              api_key: str | None = None, kind: ModelKind | None = None,
              **options: Any) -> HTTPBackend:
    """An ``HTTPBackend`` for the server at ``base_url`` (or ``$RECAL_BASE_URL``); several
    comma-separated URLs are replicas of one model. The API key comes from ``api_key``,
    ``$RECAL_API_KEY`` or ``$OPENAI_API_KEY``."""
    first, *replicas = [u.strip() for u in resolve_base_url(base_url).split(",") if u.strip()]
    config = HTTPConfig(base_url=first, replicas=tuple(replicas), served_model=served_model,
                        api_key=resolve_api_key(api_key), kind=kind or "chat", **options)
    return HTTPBackend(config)
