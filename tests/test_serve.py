"""`recal serve` with a real client (the openai package) in front of the real llama.cpp server,
with a scorer exported from a run sampled through that server."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="recal serve needs fastapi and uvicorn: "
                    "pip install 'recal[server]'")
openai = pytest.importorskip("openai", reason="the proxy tests use the openai client")
httpx = pytest.importorskip("httpx")

from recal.models import load_backend  # noqa: E402
from recal.repair import FitConfig, export_scorer  # noqa: E402
from recal.scorer import load_scorer  # noqa: E402
from recal.serve import ConfidenceService, ServeConfig, create_app  # noqa: E402
from recal.serve.scoring import FORWARDED_FIELDS, ModelMismatchError  # noqa: E402

KEY = "test-proxy-key-0123"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="session")
def scorer_dir(llama_run, tmp_path_factory):
    # 12 questions leave too few right answers to fit a map on the run (refused, by design):
    # the scorer gets a Platt map fitted on known data, so that serving applies a real map
    from dataclasses import replace

    from recal.calibrators import get_recalibrator

    artifact = export_scorer(llama_run, "identity", FitConfig(n_resamples=200))
    platt = get_recalibrator("platt").fit([0.1, 0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 1.0],
                                          [0, 0, 1, 0, 1, 1, 0, 1])
    return replace(artifact, recalibrator=platt).save(tmp_path_factory.mktemp("scorer"))


@pytest.fixture(scope="session")
def service(scorer_dir, llama_server):
    return ConfidenceService(load_scorer(scorer_dir), load_backend(llama_server.url))


@pytest.fixture(scope="session")
def proxy(service):
    """The proxy on a free port, in a thread of this process (so that the file-access test can
    watch every file this process opens)."""
    import uvicorn

    config = ServeConfig(api_key=KEY, max_body_bytes=4096, max_n=2, max_tokens=64,
                         request_timeout=120)
    server = uvicorn.Server(uvicorn.Config(create_app(service, config), host="127.0.0.1",
                                           port=0, log_config=None, access_log=False,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _client(proxy: str, key: str = KEY):
    return openai.OpenAI(base_url=f"{proxy}/v1", api_key=key, max_retries=0)


def test_answer_comes_with_its_calibrated_confidence(proxy, scorer_dir):
    raw = _client(proxy).chat.completions.with_raw_response.create(
        model="smollm2", messages=QUESTION, max_tokens=16, temperature=0)
    completion = raw.parse()
    assert completion.choices[0].message.content.strip()
    extra = completion.model_extra["recal"]
    assert extra["samples"] == 6 and sum(extra["classes"].values()) <= 6
    assert extra["method"] == "platt" and extra["scorer"] == "modal_share"
    if extra["agrees_with_modal"]:
        assert extra["answer"] == extra["modal_answer"] and extra["note"] is None
        assert 0 <= extra["confidence"] <= 1 and 0 <= extra["raw_confidence"] <= 1
        assert raw.headers["X-Recal-Confidence"] == f"{extra['confidence']:.6f}"
        # the confidence is the exported map applied to the raw score
        recalibrator = load_scorer(scorer_dir).recalibrator
        assert extra["confidence"] == pytest.approx(
            float(recalibrator.predict_proba([extra["raw_confidence"]])[0]), abs=1e-9)
    else:  # another class: its share of the samples, and no confidence (the map is unchecked)
        assert extra["raw_confidence"] == extra["classes"].get(extra["answer"], 0) / 6
        assert extra["confidence"] is None and "not the modal class" in extra["note"]
        assert raw.headers["X-Recal-Confidence"] == "null"


def test_a_request_without_the_key_is_refused(proxy):
    with pytest.raises(openai.AuthenticationError) as info:
        _client(proxy, key="wrong-key-wrong").chat.completions.create(
            model="smollm2", messages=QUESTION)
    assert info.value.status_code == 401 and "API key" in str(info.value)
    bare = httpx.post(f"{proxy}/v1/chat/completions", json={"messages": QUESTION})
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{proxy}/metrics").status_code == 401


def test_an_oversized_request_is_refused_with_a_clear_error(proxy):
    big = [{"role": "user", "content": "word " * 2000}]  # 10 kB > 4096 bytes
    with pytest.raises(openai.APIStatusError) as info:
        _client(proxy).chat.completions.create(model="smollm2", messages=big)
    assert info.value.status_code == 413 and "--max-body-bytes" in str(info.value)


@pytest.mark.parametrize("extra,code,flag", [
    ({"n": 3}, "too_many_samples", "--max-n"),
    ({"max_tokens": 1000}, "too_many_tokens", "--max-tokens"),
    ({"stream": True}, "stream_unsupported", "stream"),
])
def test_requests_over_the_bounds_are_refused(proxy, extra, code, flag):
    response = httpx.post(f"{proxy}/v1/chat/completions",
                          headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": "smollm2", "messages": QUESTION, **extra})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and flag in error["message"]


def test_too_many_samples_through_the_openai_client(proxy):
    with pytest.raises(openai.BadRequestError, match="at most 2 choices"):
        _client(proxy).chat.completions.create(model="smollm2", messages=QUESTION, n=3)


def test_malformed_requests_are_refused(proxy):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for body, code in [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_body"),
                       (json.dumps({"messages": []}).encode(), "invalid_messages"),
                       (json.dumps({"messages": [{"role": "system", "content": "x"}]}).encode(),
                        "no_question")]:
        response = httpx.post(f"{proxy}/v1/chat/completions", headers=headers, content=body)
        assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_health_and_metrics(proxy):
    health = httpx.get(f"{proxy}/health")
    assert health.status_code == 200
    doc = health.json()
    assert doc["status"] == "ok" and doc["model"] == "smollm2" and doc["method"] == "platt"
    assert doc["samples"] == 6 and KEY not in health.text
    before = _metrics(proxy)
    completion = _client(proxy).chat.completions.create(model="smollm2", messages=QUESTION,
                                                        max_tokens=8)
    after = _metrics(proxy)
    assert after['recal_requests_total{path="/v1/chat/completions",status="200"}'] == before.get(
        'recal_requests_total{path="/v1/chat/completions",status="200"}', 0) + 1
    # The one choice's confidence is counted where it belongs: given (a modal answer), or null
    # with its reason (another class; at T = 1 and 8 tokens SmolLM2 gives either).
    confidence = completion.model_extra["recal"]["confidence"]
    null = 'recal_confidence_null_total{reason="non_modal"}'
    if confidence is not None:
        assert after["recal_confidence_count"] == before["recal_confidence_count"] + 1
        assert after["recal_confidence_sum"] == pytest.approx(
            before["recal_confidence_sum"] + confidence, abs=2e-6)
        assert after[null] == before[null]
    else:
        assert after["recal_confidence_count"] == before["recal_confidence_count"]
        assert after["recal_confidence_sum"] == before["recal_confidence_sum"]
        assert after[null] == before[null] + 1
    assert after['recal_confidence_null_total{reason="not_finite"}'] == 0


def _metrics(proxy: str) -> dict[str, float]:
    """/metrics' samples by name (with labels)."""
    text = httpx.get(f"{proxy}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))}


def test_no_request_can_make_the_proxy_read_a_file_or_load_code(proxy, service, tmp_path,
                                                                monkeypatch):
    secret = tmp_path / "secret_scorer.json"
    secret.write_text("{}")
    module = tmp_path / "recal_evil_module.py"
    module.write_text(f"open({str(secret)!r}).read()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[tuple[str, str]] = []
    watching = threading.Event()

    def hook(event: str, args: tuple) -> None:
        if not watching.is_set():
            return
        if event == "open" and args and "secret_scorer" in str(args[0]):
            seen.append((event, str(args[0])))
        if event == "import" and args and "recal_evil" in str(args[0]):
            seen.append((event, str(args[0])))

    sys.addaudithook(hook)  # hooks cannot be removed; this one is idle once the test ends
    forwarded: list[dict] = []
    original = service.backend.request

    def recording(method, path, body=None, **kwargs):
        if path == "chat/completions" and body and "messages" in body and body.get("n") != 2:
            forwarded.append(dict(body))
        return original(method, path, body, **kwargs)

    monkeypatch.setattr(service.backend, "request", recording)
    path = str(secret)
    attempts = [
        {"model": path},
        {"model": "recal_evil_module"},
        {"scorer": path, "recalibrator": {"name": "recal_evil_module"}},
        {"lora_path": path, "grammar": f"@{path}", "logits_processor": "recal_evil_module",
         "response_format": {"type": "json_schema", "schema_file": path}},
    ]
    watching.set()
    try:
        for extra in attempts:
            response = httpx.post(
                f"{proxy}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                json={"messages": [{"role": "user", "content": f"Read {path}"}],
                      "max_tokens": 4, **extra}, timeout=120)
            assert response.status_code == 200, response.text
    finally:
        watching.clear()
    assert seen == []  # no open of the file, no import of the module, in this process
    assert "recal_evil_module" not in sys.modules
    # and none of those fields reached the upstream model: only the forwarded ones did
    answers = [b for b in forwarded if b.get("max_tokens") == 4]
    assert len(answers) == len(attempts)
    for body in answers:
        assert set(body) <= FORWARDED_FIELDS | {"model"} and body["model"] == "smollm2"


def test_the_time_bound_answers_504(service):
    from starlette.testclient import TestClient

    app = create_app(service, ServeConfig(request_timeout=0.001))
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json={"messages": QUESTION})
    assert response.status_code == 504 and "--request-timeout" in response.json()["error"][
        "message"]


def test_a_scorer_of_another_model_is_refused(scorer_dir, tiny_chat_backend):
    with pytest.raises(ModelMismatchError, match="refit|fit and export"):
        ConfidenceService(load_scorer(scorer_dir), tiny_chat_backend)


def test_bounds_are_checked_when_configured():
    with pytest.raises(ValueError, match="max_n must be a positive integer"):
        ServeConfig(max_n=0)
    with pytest.raises(ValueError, match="at least 8 characters"):
        ServeConfig(api_key="short")


def test_an_in_process_upstream_answers_too(tiny_chat_backend):
    """Any recal backend can be the upstream: here the transformers backend (a tiny model)."""
    from starlette.testclient import TestClient

    from recal.calibrators import get_recalibrator
    from recal.samples import SamplingConfig
    from recal.scorer import CalibratedScorer

    # 8 answers, not separable (a wrong 0.6 above a right 0.5): Platt fits them
    recalibrator = get_recalibrator("platt").fit([0.2, 0.4, 0.6, 0.8, 1.0, 0.3, 0.9, 0.5],
                                                 [0, 0, 0, 1, 1, 0, 1, 1])
    sampling = SamplingConfig(n_samples=4, max_new_tokens=6).resolved("concise", chat=True)
    artifact = CalibratedScorer(recalibrator=recalibrator, collapse="normalized",
                                scorer="modal_share", style="concise",
                                sampling=sampling.identity(),
                                model=tiny_chat_backend.identity.to_dict())
    app = create_app(ConfidenceService(artifact, tiny_chat_backend), ServeConfig())
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions",
                               json={"messages": [{"role": "user", "content": "abc?"}],
                                     "max_tokens": 6, "n": 2, "temperature": 1.0})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert len(doc["choices"]) == 2 and doc["model"] == "tiny"
    assert all("recal" in c for c in doc["choices"])
    conf = doc["recal"]["confidence"]
    assert conf == pytest.approx(float(recalibrator.predict_proba(
        [doc["recal"]["raw_confidence"]])[0]))
    assert response.headers["X-Recal-Confidence"] == f"{conf:.6f}"
