"""`recal serve` against small local upstreams (stdlib HTTP servers in threads): the request's
deadline reaches the upstream request and the sampling (a stalled upstream), and the scorer's
abstention threshold flags or withholds answers; non-modal answers get a null confidence with
the reason. The same proxy against the real llama.cpp server: tests/test_serve.py."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="recal serve needs fastapi and uvicorn")
httpx = pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from recal.abstention import AbstentionRule  # noqa: E402
from recal.calibrators import get_recalibrator  # noqa: E402
from recal.data.records import Question  # noqa: E402
from recal.models.http import HTTPBackend, HTTPConfig  # noqa: E402
from recal.models.stop import SamplingStopped, sampling_deadline  # noqa: E402
from recal.prompts import build_prompt  # noqa: E402
from recal.samples import SamplingConfig  # noqa: E402
from recal.scorer import CalibratedScorer  # noqa: E402
from recal.serve import ConfidenceService, ServeConfig, create_app  # noqa: E402
from recal.serve.app import REFUSAL_TEXT  # noqa: E402
from recal.serve.scoring import NON_MODAL_NOTE  # noqa: E402

MODELS = {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "test"}]}


class Upstream:
    """An OpenAI-compatible stand-in: GET /v1/models answers; POSTs go to ``answer(body)``,
    which returns choice texts, or None to stall: hold the connection, answer nothing, and
    record when the client closes it (``closed``: seconds since the server started)."""

    def __init__(self, answer: Callable[[dict[str, Any]], list[str] | None]) -> None:
        self.answer = answer
        self.started = time.monotonic()
        self.stalled = 0
        self.closed: list[float] = []
        self.stop = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(MODELS)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                texts = upstream.answer(body)
                if texts is None:
                    upstream.stalled += 1
                    while not upstream.stop.is_set():  # until the client hangs up
                        ready, _, _ = select.select([self.connection], [], [], 0.02)
                        if ready and not self.connection.recv(1, socket.MSG_PEEK):
                            upstream.closed.append(time.monotonic() - upstream.started)
                            break
                    self.close_connection = True
                    return
                self._send({"object": "chat.completion", "model": "fake", "choices": [
                    {"index": i, "message": {"role": "assistant", "content": t},
                     "finish_reason": "stop"} for i, t in enumerate(texts)]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Callable[..., Upstream]]:
    made: list[Upstream] = []

    def make(answer: Callable[[dict[str, Any]], list[str] | None]) -> Upstream:
        made.append(Upstream(answer))
        return made[-1]

    yield make
    for u in made:
        u.close()


RULE = AbstentionRule(target_risk=0.1, delta=0.1, threshold=0.9, n_calibration=200,
                      calibration_answered=80, calibration_errors=2, risk_upper_bound=0.06,
                      calibrated_threshold=0.88)


RULE_DOC = RULE.to_dict()


def _service(url: str, *, abstention: dict[str, Any] | None = RULE_DOC,
             **http: Any) -> ConfidenceService:
    backend = HTTPBackend(HTTPConfig(base_url=url, **http))
    platt = get_recalibrator("platt").fit([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                                          [0, 0, 1, 0, 0, 1, 1, 1, 0, 1])
    sampling = SamplingConfig(n_samples=4, max_new_tokens=6).resolved("concise", chat=True)
    artifact = CalibratedScorer(recalibrator=platt, collapse="normalized", scorer="modal_share",
                                style="concise", sampling=sampling.identity(),
                                model=backend.identity.to_dict(), abstention=abstention)
    return ConfidenceService(artifact, backend)


def _http_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("recal-http")]


# --------------------------------------------------------------------------- deadlines


def test_sampling_over_http_stops_at_the_callers_deadline(upstream):
    """Without the deadline a stalled server holds a sampler for timeout x (retries + 1) =
    60 x 4 s; with it, generate gives up at the deadline and closes its connections."""
    stalled = upstream(lambda body: None)
    backend = HTTPBackend(HTTPConfig(base_url=stalled.url, timeout=60.0, max_retries=3,
                                     n_mode="single", concurrency=4))
    q = Question("q", "What is the capital of France?", ("Paris",))
    prompt = build_prompt(q, "concise", chat=True)
    start = time.monotonic()
    with pytest.raises(SamplingStopped, match="deadline"), sampling_deadline(0.5):
        list(backend.generate(["q"], [prompt], SamplingConfig(
            n_samples=4, max_new_tokens=4).resolved("concise", chat=True)))
    took = time.monotonic() - start
    assert 0.45 < took < 2.0, took
    time.sleep(0.3)
    assert stalled.stalled >= 1 and len(stalled.closed) == stalled.stalled
    assert not _http_threads()


def test_a_stalled_upstream_gets_504_and_nothing_keeps_waiting(upstream):
    stalled = upstream(lambda body: None)
    service = _service(stalled.url, timeout=60.0, max_retries=3, concurrency=4)
    app = create_app(service, ServeConfig(request_timeout=1.0))
    with TestClient(app) as client:
        start = time.monotonic()
        response = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        answered = time.monotonic() - start
        assert response.status_code == 504, response.text
        assert "--request-timeout" in response.json()["error"]["message"]
        assert 0.9 < answered < 2.5, answered
        # The proxy's own answer request and the scorer's sampling (its probe) both reached
        # the upstream; each was hung up by the proxy at the deadline, not 60 s later.
        deadline = time.monotonic() + 2.0
        while len(stalled.closed) < stalled.stalled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stalled.stalled >= 2 and len(stalled.closed) == stalled.stalled
        assert max(stalled.closed) - (start - stalled.started) < 2.0
        while _http_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _http_threads()


# --------------------------------------------------------------------------- abstention


def _answers(body: dict[str, Any]) -> list[str]:
    """'sure' questions: every answer Paris; others: answers 0, 1, 2, 0, ... by choice index
    (each request asks for n choices, so one request of n = 4 is the scorer's sample)."""
    text = json.dumps(body["messages"])
    n = int(body.get("n") or 1)
    if "sure" in text:
        return ["Paris"] * n
    return [f"answer {i % 3}" for i in range(n)]


def _ask(client: TestClient, question: str, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": question}], "max_tokens": 8, **extra})


def test_flag_marks_answers_below_the_threshold(upstream):
    up = upstream(_answers)
    app = create_app(_service(up.url), ServeConfig(abstain="flag"))
    with TestClient(app) as client:
        sure = _ask(client, "Are you sure of France's capital?")
        unsure = _ask(client, "What is the capital of Wakanda?")
        metrics = client.get("/metrics").text
    assert sure.status_code == 200 and unsure.status_code == 200
    s, u = sure.json(), unsure.json()
    # Unanimous samples: raw confidence 1 >= 0.9, answered.
    assert s["recal"]["raw_confidence"] == 1.0 and s["recal"]["abstention"]["decision"] == "answer"
    assert sure.headers["X-Recal-Abstention"] == "answer"
    # Two of four samples: raw 0.5 < 0.9, flagged, the answer still given.
    assert u["recal"]["raw_confidence"] == 0.5 and u["recal"]["abstention"] == {
        "decision": "flag", "threshold": 0.9, "calibrated_threshold": 0.88,
        "target_risk": 0.1, "delta": 0.1}
    assert u["choices"][0]["message"]["content"] == "answer 0"
    assert unsure.headers["X-Recal-Abstention"] == "flag"
    assert "recal_below_threshold_total 1" in metrics


def test_refuse_withholds_answers_below_the_threshold(upstream):
    up = upstream(_answers)
    app = create_app(_service(up.url), ServeConfig(abstain="refuse"))
    with TestClient(app) as client:
        sure = _ask(client, "Are you sure of France's capital?").json()
        unsure = _ask(client, "What is the capital of Wakanda?").json()
        health = client.get("/health").json()
    assert sure["choices"][0]["message"]["content"] == "Paris"
    assert unsure["choices"][0]["message"]["content"] == REFUSAL_TEXT
    assert unsure["choices"][0]["recal"]["abstention"] == "refuse"
    assert health["abstention"]["threshold"] == 0.9


def test_a_non_modal_answer_has_no_confidence_and_is_below_every_threshold(upstream):
    up = upstream(_answers)
    service = _service(up.url)
    app = create_app(service, ServeConfig(abstain="flag"))
    with TestClient(app) as client:
        doc = _ask(client, "Are you sure of France's capital?", n=2, temperature=1.0).json()
        other = _ask(client, "What is the capital of Wakanda?", n=2, temperature=1.0).json()
        metrics = client.get("/metrics").text
    assert [c["recal"]["abstention"] for c in doc["choices"]] == ["answer", "answer"]
    first, second = other["choices"]
    assert first["recal"]["agrees_with_modal"] and first["recal"]["note"] is None
    # 'answer 1' holds one sample of four: its share is given, its confidence is not.
    assert not second["recal"]["agrees_with_modal"] and second["recal"]["confidence"] is None
    assert second["recal"]["raw_confidence"] == 0.25
    assert second["recal"]["note"] == NON_MODAL_NOTE
    assert second["recal"]["abstention"] == "flag"
    # /metrics counts each choice: three confidences given (Paris twice at raw share 1, 'answer
    # 0' at 2/4), the non-modal one as a null with its reason
    given = service.scorer.recalibrator.predict_proba([1.0, 1.0, 0.5])
    assert "recal_confidence_count 3\n" in metrics
    assert f"recal_confidence_sum {sum(given):.6f}\n" in metrics
    assert 'recal_confidence_null_total{reason="non_modal"} 1\n' in metrics
    assert 'recal_confidence_null_total{reason="not_finite"} 0\n' in metrics


def test_abstain_needs_a_scorer_with_a_threshold(upstream):
    up = upstream(_answers)
    with pytest.raises(ValueError, match="needs a scorer exported with an abstention"):
        create_app(_service(up.url, abstention=None), ServeConfig(abstain="flag"))
    none = AbstentionRule(0.01, 0.1, None, 20, 0, 0, None, reason="too few questions")
    with pytest.raises(ValueError, match=r"no abstention threshold \(too few questions\)"):
        create_app(_service(up.url, abstention=none.to_dict()), ServeConfig(abstain="refuse"))
    with pytest.raises(ValueError, match="abstain must be one of off, flag, refuse"):
        ServeConfig(abstain="drop")  # type: ignore[arg-type]
    # Without --abstain the threshold is not applied and nothing is marked.
    with TestClient(create_app(_service(up.url), ServeConfig())) as client:
        doc = _ask(client, "What is the capital of Wakanda?").json()
    assert "abstention" not in doc["recal"] and "abstention" not in doc["choices"][0]["recal"]
