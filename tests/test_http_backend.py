"""The HTTP backend against a small fake OpenAI-compatible server (stdlib, in a thread), where
each fault can be injected exactly: 429/5xx then success, hopeless 4xx, dropped connections,
slow answers, servers that do or do not honour ``n``. Tests against the real llama.cpp server
are in test_http_llamacpp.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("httpx", reason="the http backend needs httpx: pip install 'recal[http]'")

from recal.data.records import Question  # noqa: E402
from recal.models import load_backend  # noqa: E402
from recal.models.http import (  # noqa: E402
    HTTPBackend,
    HTTPBackendError,
    HTTPConfig,
    ServerRequestError,
    ServerUnreachableError,
    _request_seed,
)
from recal.runstore import RunStore  # noqa: E402
from recal.samples import SamplingConfig  # noqa: E402
from recal.sampling import sample_run  # noqa: E402

Reply = tuple[int, dict[str, Any] | str]
"""(status, JSON body), or (0, "drop") to close the connection without answering."""


class FakeServer:
    """A fake /v1 server: ``behave(path, body, number)`` decides each answer."""

    def __init__(self, behave: Callable[[str, dict[str, Any], int], Reply] | None = None,
                 honours_n: bool = True) -> None:
        self.behave = behave
        self.honours_n = honours_n
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, body: dict[str, Any] | None) -> None:
                with fake.lock:
                    fake.bodies.append((self.path, body or {}))
                    number = len(fake.bodies)
                status, out = (fake.behave or fake.default)(self.path, body or {}, number)
                if status == 0:  # drop the connection
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(out, str) and out.startswith("sleep:"):
                    time.sleep(float(out.split(":")[1]))
                    status, out = fake.default(self.path, body or {}, number)
                retry_after = "0"
                if isinstance(out, str) and out.startswith("retry-after:"):
                    retry_after, out = out.split(":", 1)[1], {"error": {"message": "busy"}}
                raw = isinstance(out, str) and out.startswith("raw:")
                data = out[4:].encode() if raw else json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self._reply(json.loads(self.rfile.read(length)))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def default(self, path: str, body: dict[str, Any], number: int) -> Reply:
        if path.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": "fake-model", "object": "model",
                                                    "owned_by": "test"}]}
        n = body.get("n", 1) if self.honours_n else 1
        text = "Paris" if body.get("temperature") == 0 else f"answer {body.get('seed', 0) % 3}"
        choices = [{"index": i, "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": {"content": [{"token": "P", "logprob": -0.25},
                                             {"token": "aris", "logprob": -0.5}]}}
                   for i in range(n)]
        return 200, {"object": "chat.completion", "choices": choices}

    def posts(self) -> list[dict[str, Any]]:
        return [b for p, b in self.bodies if p.endswith("/completions")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    servers: list[FakeServer] = []

    def make(**kwargs: Any) -> FakeServer:
        servers.append(FakeServer(**kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _backend(url: str, **kwargs: Any) -> HTTPBackend:
    options = {"max_retries": 3, "backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5.0}
    options.update(kwargs)
    return HTTPBackend(HTTPConfig(base_url=url, **options))


QUESTIONS = [Question(f"q{i}", f"Question {i}?", ("Paris",)) for i in range(5)]


def test_identity_and_served_model_come_from_the_server(fake):
    server = fake()
    backend = _backend(server.url)
    assert backend.served_model == "fake-model"
    assert backend.identity.backend == "http" and backend.identity.kind == "chat"
    assert backend.identity.source == server.url
    # The URL is not part of the model's identity: a restarted server on another port matches.
    other = fake()
    assert _backend(other.url).identity.config_hash == backend.identity.config_hash


def test_load_backend_picks_http_for_urls(fake, monkeypatch):
    server = fake()
    monkeypatch.setenv("RECAL_API_KEY", "secret-key-123")
    backend = load_backend(server.url)
    assert isinstance(backend, HTTPBackend) and backend.config.api_key == "secret-key-123"
    with pytest.raises(ValueError, match="http:// or https://"):
        HTTPConfig(base_url="127.0.0.1:8080/v1")


def test_n_is_used_where_the_server_honours_it(fake, tmp_path):
    server = fake(honours_n=True)
    backend = _backend(server.url)
    store = sample_run(backend, QUESTIONS, out=tmp_path / "run",
                       config=SamplingConfig(n_samples=6), progress=False)
    assert backend.capabilities is not None and backend.capabilities.honours_n
    assert backend.capabilities.logprobs
    # one request of n=6 and one greedy request per question, after the probe
    assert {q: c for q, c in backend.stats.sample_requests.items()} == {q.id: 2 for q in QUESTIONS}
    records = store.samples_by_id()
    assert all(len(r.samples) == 6 and r.greedy.text == "Paris" for r in records.values())
    assert records["q0"].greedy.logprobs == (-0.25, -0.5)
    sampled = [b for b in server.posts() if b.get("n") == 6]
    assert len(sampled) == 5 and all(b["top_p"] == 1.0 and b["top_k"] == 0 for b in sampled)


def test_single_requests_where_the_server_ignores_n(fake, tmp_path):
    server = fake(honours_n=False)
    backend = _backend(server.url, concurrency=4)
    store = sample_run(backend, QUESTIONS, out=tmp_path / "run",
                       config=SamplingConfig(n_samples=6), progress=False)
    assert backend.capabilities is not None and not backend.capabilities.honours_n
    assert backend.stats.sample_requests == {q.id: 7 for q in QUESTIONS}
    assert all(len(r.samples) == 6 for r in store.samples_by_id().values())
    # each sample request carries the seed of (seed, question, sample index)
    seeds = {b["seed"] for b in server.posts() if b.get("temperature") == 1.0 and "n" not in b}
    expected = {_request_seed(0, q.id, j) for q in QUESTIONS for j in range(6)}
    assert seeds == expected and len(expected) == 30
    # the sample texts follow the seeds, in sample order
    record = store.samples_by_id()["q1"]
    assert [s.text for s in record.samples] == [
        f"answer {_request_seed(0, 'q1', j) % 3}" for j in range(6)]


def test_forced_single_mode_skips_n(fake):
    server = fake(honours_n=True)
    backend = _backend(server.url, n_mode="single")
    config = SamplingConfig(n_samples=3, greedy=False).resolved("concise", chat=True)
    from recal.prompts import build_prompt

    [record] = list(backend.generate(["a"], [build_prompt(QUESTIONS[0], chat=True)], config))
    assert len(record.samples) == 3 and record.greedy is None
    assert backend.stats.sample_requests == {"a": 3}


def test_429_and_5xx_are_retried_then_succeed(fake):
    fails = {2: 429, 3: 503, 4: 500}  # request numbers 2-4 (after GET /models) fail

    def behave(path, body, number):
        if number in fails:
            return fails[number], {"error": {"message": "busy"}}
        return server.default(path, body, number)

    server = fake(behave=behave)
    backend = _backend(server.url)
    reply = backend.request("POST", "chat/completions", {"messages": []})
    assert reply["choices"]
    assert backend.stats.retries == 3 and backend.stats.requests == 5


@pytest.mark.parametrize("status,hint", [(400, "cannot help"), (401, "--api-key"),
                                         (404, "/v1"), (422, "cannot help")])
def test_hopeless_4xx_is_not_retried(fake, status, hint):
    def behave(path, body, number):
        if path.endswith("/completions"):
            return status, {"error": {"message": "bad request field"}}
        return server.default(path, body, number)

    server = fake(behave=behave)
    backend = _backend(server.url)
    with pytest.raises(ServerRequestError, match=hint) as info:
        backend.request("POST", "chat/completions", {"messages": []})
    assert info.value.status == status and "bad request field" in str(info.value)
    assert len(server.posts()) == 1  # sent once, never again


def test_dropped_connections_are_retried(fake):
    def behave(path, body, number):
        if number in (2, 3):
            return 0, "drop"
        return server.default(path, body, number)

    server = fake(behave=behave)
    backend = _backend(server.url)
    assert backend.request("POST", "chat/completions", {"messages": []})["choices"]
    assert backend.stats.retries == 2


def test_a_slow_server_times_out_after_the_retries(fake):
    def behave(path, body, number):
        if path.endswith("/completions"):
            return 200, "sleep:1.5"
        return server.default(path, body, number)

    server = fake(behave=behave)
    backend = _backend(server.url, timeout=0.2, max_retries=2)
    with pytest.raises(ServerUnreachableError, match="timeout") as info:
        backend.request("POST", "chat/completions", {"messages": []})
    assert "failed 3 times" in str(info.value) and "resume" in str(info.value)
    assert len(server.posts()) == 3


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerUnreachableError, match="server is running"):
        _backend(f"http://127.0.0.1:{port}/v1", max_retries=1)


def test_backoff_grows_exponentially_with_full_jitter(fake):
    server = fake()
    backend = _backend(server.url, backoff_base=1.0, backoff_max=8.0)
    for attempt, cap in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        draws = [backend._delay(attempt, None) for _ in range(300)]
        assert min(draws) >= 0 and max(draws) <= cap
        assert max(draws) > 0.7 * cap and min(draws) < 0.3 * cap  # spread over [0, cap]
    assert backend._delay(0, "3") == 3.0 and backend._delay(0, "100") == 8.0


def test_a_failing_question_keeps_the_finished_ones_on_disk(fake, tmp_path):
    def behave(path, body, number):
        question = (body.get("messages") or [{}])[-1].get("content", "")
        if question.startswith("Question 3?"):
            return 400, {"error": {"message": "context too long"}}
        return server.default(path, body, number)

    server = fake(behave=behave, honours_n=False)
    backend = _backend(server.url, concurrency=1)
    with pytest.raises(ServerRequestError, match="context too long"):
        sample_run(backend, QUESTIONS, out=tmp_path / "run",
                   config=SamplingConfig(n_samples=2), progress=False)
    done = RunStore.open(tmp_path / "run").done_ids()
    assert done == {"q0", "q1", "q2"}  # finished before the failure, none after it was seen
    # the resumed run sends nothing for the stored questions
    server.behave = None
    again = _backend(server.url)
    sample_run(again, QUESTIONS, out=tmp_path / "run", config=SamplingConfig(n_samples=2),
               progress=False)
    assert set(again.stats.sample_requests) == {"q3", "q4"}
    assert RunStore.open(tmp_path / "run").done_ids() == {q.id for q in QUESTIONS}


def test_a_strict_server_refusing_sampler_fields_is_detected(fake):
    def behave(path, body, number):
        if "top_k" in body:
            return 400, {"error": {"message": "Unrecognized request argument: top_k"}}
        return server.default(path, body, number)

    server = fake(behave=behave)
    backend = _backend(server.url)
    config = SamplingConfig(n_samples=2, greedy=False).resolved("concise", chat=True)
    from recal.prompts import build_prompt

    [record] = list(backend.generate(["a"], [build_prompt(QUESTIONS[0], chat=True)], config))
    assert len(record.samples) == 2
    assert "top_k" not in server.posts()[-1]


def test_base_models_use_the_completions_endpoint(fake):
    def behave(path, body, number):
        if path.endswith("/v1/completions"):
            return 200, {"choices": [{"index": 0, "text": " Paris\n", "finish_reason": "stop",
                                      "logprobs": {"token_logprobs": [-0.1, -0.2]}}]}
        return server.default(path, body, number)

    server = fake(behave=behave)
    backend = _backend(server.url, kind="base")
    config = SamplingConfig(n_samples=2).resolved("concise", chat=False)
    from recal.prompts import build_prompt

    prompt = build_prompt(QUESTIONS[0], chat=False)
    [record] = list(backend.generate(["a"], [prompt], config))
    assert [s.text for s in record.samples] == ["Paris", "Paris"]
    assert record.samples[0].logprobs == (-0.1, -0.2)
    sent = [b for b in server.posts() if "n" not in b]
    assert all(b["prompt"].endswith("A:") and b["stop"] == ["\n"] for b in sent)
    # log-probabilities are asked for the greedy answer only (they are costly on llama.cpp)
    assert [b.get("logprobs") for b in sent if b["temperature"] == 0] == [1]
    assert all("logprobs" not in b for b in sent if b["temperature"] == 1.0)


def test_next_token_logprobs_from_top_logprobs(fake):
    def behave(path, body, number):
        if body.get("top_logprobs"):
            top = [{"token": "Yes", "logprob": -0.2}, {"token": "No", "logprob": -1.8}]
            return 200, {"choices": [{"index": 0, "message": {"content": "Yes"},
                                      "logprobs": {"content": [{"token": "Yes", "logprob": -0.2,
                                                                "top_logprobs": top}]}}]}
        return server.default(path, body, number)

    server = fake(behave=behave)
    backend = _backend(server.url)
    from recal.prompts import Prompt

    [row] = backend.next_token_logprobs([Prompt(messages=(("user", "Is it?"),))],
                                        ["Yes", "No", " maybe"])
    assert row[:2] == [-0.2, -1.8] and row[2] == float("-inf")


def test_replicas_share_the_requests_and_take_over_on_failure(fake, tmp_path):
    a, b = fake(honours_n=False), fake(honours_n=False)
    backend = load_backend(f"{a.url},{b.url}", max_retries=2, backoff_base=0.01)
    assert isinstance(backend, HTTPBackend) and backend.config.replicas == (b.url,)
    sample_run(backend, QUESTIONS, out=tmp_path / "run", config=SamplingConfig(n_samples=4),
               progress=False)
    assert len(a.posts()) >= 10 and len(b.posts()) >= 10  # 25 sample requests + the probe
    assert len(a.posts()) + len(b.posts()) == 26
    b.behave = lambda path, body, number: (503, {"error": {"message": "down"}})
    # one replica fails: each request it gets is retried on the other
    before = len(a.posts())
    backend.request("POST", "chat/completions", {"messages": []})
    backend.request("POST", "chat/completions", {"messages": []})
    assert len(a.posts()) == before + 2


def test_replicas_must_serve_the_same_model(fake):
    a = fake()

    def other(path, body, number):
        if path.endswith("/models"):
            return 200, {"data": [{"id": "another-model"}]}
        return b.default(path, body, number)

    b = fake(behave=other)
    with pytest.raises(Exception, match="replicas must serve the same model"):
        load_backend(f"{a.url},{b.url}")


# --------------------------------------------------------------------------- issue 21, item 4


def _prompts(k: int = 1):
    from recal.prompts import build_prompt

    return [build_prompt(q, chat=True) for q in QUESTIONS[:k]]


def test_m_is_split_over_requests_of_at_most_max_n(fake):
    server = fake(honours_n=True)
    backend = _backend(server.url, max_n=4)
    config = SamplingConfig(n_samples=10, greedy=False).resolved("concise", chat=True)
    [record] = list(backend.generate(["a"], _prompts(), config))
    assert len(record.samples) == 10
    asked = [b.get("n", 1) for b in server.posts()[1:]]  # after the probe
    assert sorted(asked) == [2, 4, 4]
    # each request of the split draws with its own seed
    assert len({b["seed"] for b in server.posts()[1:]}) == 3


@pytest.mark.parametrize(("mode", "sample_lp", "greedy_lp"), [
    ("greedy", False, True), ("all", True, True), ("none", False, False)])
def test_logprob_modes_ask_for_what_they_say(fake, mode, sample_lp, greedy_lp):
    server = fake(honours_n=True)
    backend = _backend(server.url, logprobs=mode)
    config = SamplingConfig(n_samples=2, greedy=True).resolved("concise", chat=True)
    [record] = list(backend.generate(["a"], _prompts(), config))
    posts = server.posts()[1:]
    sampled = [b for b in posts if b["temperature"] != 0]
    greedy = [b for b in posts if b["temperature"] == 0]
    assert len(sampled) == 1 and len(greedy) == 1
    assert bool(sampled[0].get("logprobs")) is sample_lp
    assert bool(greedy[0].get("logprobs")) is greedy_lp
    if greedy_lp:  # read from the reply (this fake sends them even unasked)
        assert record.greedy.logprobs == (-0.25, -0.5)


def test_a_temperature_grid_is_refused_over_http(fake):
    backend = _backend(fake().url)
    config = SamplingConfig(n_samples=2, tau_grid=(0.5, 1.0)).resolved("concise", chat=True)
    with pytest.raises(ValueError, match="tau_grid .* over HTTP"):
        list(backend.generate(["a"], _prompts(), config))


def test_a_server_without_models_needs_the_served_model_named(fake):
    def behave(path, body, number):
        if path.endswith("/models"):
            return 404, {"error": {"message": "not found"}}
        return server.default(path, body, number)

    server = fake(behave=behave)
    with pytest.raises(ServerRequestError):
        _backend(server.url)
    backend = _backend(server.url, served_model="named")
    assert backend.served_model == "named"
    [record] = list(backend.generate(
        ["a"], _prompts(), SamplingConfig(n_samples=2, greedy=False).resolved("concise",
                                                                               chat=True)))
    assert len(record.samples) == 2 and server.posts()[-1]["model"] == "named"


def test_several_served_models_must_be_chosen_between(fake):
    def behave(path, body, number):
        if path.endswith("/models"):
            return 200, {"data": [{"id": "one"}, {"id": "two"}]}
        return server.default(path, body, number)

    server = fake(behave=behave)
    with pytest.raises(HTTPBackendError, match="serves 2 models .*one, two.*--served-model"):
        _backend(server.url)
    assert _backend(server.url, served_model="two").served_model == "two"


def test_a_200_reply_that_is_not_json_is_retried_then_named(fake):
    def behave(path, body, number):
        if path.endswith("/completions"):
            return 200, "raw:<html>proxy error</html>"
        return server.default(path, body, number)

    server = fake(behave=behave)
    backend = _backend(server.url, max_retries=1)
    with pytest.raises(ServerUnreachableError, match="status 200 with a body that is not JSON"):
        backend.request("POST", "chat/completions", {"messages": []})
    assert len(server.posts()) == 2


def test_retry_after_is_waited_inside_the_retry_loop(fake):
    def behave(path, body, number):
        if path.endswith("/completions") and len(server.posts()) == 1:
            return 429, "retry-after:0.6"
        return server.default(path, body, number)

    server = fake(behave=behave)
    backend = _backend(server.url, backoff_base=0.001, backoff_max=5.0)
    start = time.monotonic()
    reply = backend.request("POST", "chat/completions", {"messages": []})
    waited = time.monotonic() - start
    assert reply["choices"] and len(server.posts()) == 2
    assert waited >= 0.6  # the server's 0.6 s, not the 1 ms backoff


def test_too_few_choices_for_n_is_a_clear_error(fake):
    def behave(path, body, number):
        status, reply = server.default(path, body, number)
        if body.get("n", 1) > 2 and isinstance(reply, dict):
            reply = {**reply, "choices": reply["choices"][:2]}  # honours n, but not fully
        return status, reply

    server = fake(behave=behave)
    backend = _backend(server.url, n_mode="n")
    config = SamplingConfig(n_samples=5, greedy=False).resolved("concise", chat=True)
    with pytest.raises(HTTPBackendError, match="returned 2 choices for n=5.*--n-mode single"):
        list(backend.generate(["a"], _prompts(), config))
