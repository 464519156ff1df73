"""The HTTP backend against a real OpenAI-compatible server: llama-cpp-python serving the packaged
SmolLM2 GGUF on 127.0.0.1 (started by the fixtures in conftest.py; skipped, saying why, where
llama-cpp-python's server is not installed)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from conftest import LLAMA_RUN_MAX_TOKENS, LLAMA_RUN_SAMPLES, hanging_server, refused_url
from conftest import llama_questions as _questions
from typer.testing import CliRunner

from recal.cli import app
from recal.models import load_backend
from recal.models.base import Backend
from recal.models.http import HTTPBackend, HTTPConfig, ServerUnreachableError
from recal.prompts import Prompt, build_prompt
from recal.runstore import RunStore
from recal.samples import QuestionSamples, SamplingConfig
from recal.sampling import sample_run

M = LLAMA_RUN_SAMPLES
MAX_TOKENS = LLAMA_RUN_MAX_TOKENS


@pytest.fixture(scope="module")
def local_smollm2():
    """SmolLM2 in process (transformers), on one thread while this module runs: beside a
    llama.cpp server on a small shared machine, two threads spin-wait on each other and run
    many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_backend("smollm2-135m-instruct")
    torch.set_num_threads(threads)


def _backend(url: str, **kwargs) -> HTTPBackend:
    return HTTPBackend(HTTPConfig(base_url=url, **kwargs))


def test_the_server_ignores_n_and_returns_logprobs(llama_server):
    backend = _backend(llama_server.url)
    reply = backend.request("POST", "chat/completions", {
        "model": backend.served_model, "messages": [{"role": "user", "content": "Hi"}],
        "n": 3, "max_tokens": 4, "logprobs": True})
    assert len(reply["choices"]) == 1  # what DESIGN.md says of llama-cpp-python's server
    config = SamplingConfig(n_samples=2).resolved("concise", chat=True)
    prompt = build_prompt("What is the capital of France?", chat=True)
    [record] = list(backend.generate(["q"], [prompt], config))
    assert backend.capabilities is not None
    assert not backend.capabilities.honours_n and backend.capabilities.logprobs
    assert backend.stats.sample_requests == {"q": 3}  # two single samples and the greedy one
    greedy = record.greedy
    assert greedy is not None and greedy.text and greedy.logprobs
    assert all(lp <= 0 for lp in greedy.logprobs)


def test_the_server_honours_the_seed(llama_server):
    backend = _backend(llama_server.url)
    config = SamplingConfig(n_samples=1, greedy=False, max_new_tokens=12,
                            stop_at_newline=False)
    prompt = build_prompt("Name a colour.", style="sentence", chat=True)

    def text(seed: int) -> str:
        body = backend._body(prompt, config, n=1, greedy=False, seed=seed)
        return backend.request("POST", "chat/completions", body)["choices"][0]["message"][
            "content"]

    assert text(7) == text(7) and text(11) == text(11)
    assert len({text(s) for s in range(6)}) > 1  # and the seed does change the sample


def test_p_true_reads_top_logprobs_from_the_server(llama_server):
    backend = _backend(llama_server.url)
    [row] = backend.next_token_logprobs(
        [Prompt(messages=(("user", "Is Paris the capital of France? Reply yes or no."),))],
        ["Yes", "No"])
    assert any(math.isfinite(x) and x <= 0 for x in row)


def test_first_token_probabilities_agree_with_the_in_process_model(llama_server,
                                                                   local_smollm2):
    """The sharper check that the server runs the same model: the log-probability of the
    server's likeliest first answer token, read from both, differs by little (llama.cpp
    multiplies Q4_1 weights with 8-bit activations; transformers uses the dequantised floats)."""
    backend = _backend(llama_server.url)
    prompts = [build_prompt(q, chat=True) for q in _questions(6)]
    gaps = []
    for prompt in prompts:
        body = backend._body(prompt, SamplingConfig(n_samples=1, max_new_tokens=1,
                                                    stop_at_newline=False),
                             n=1, greedy=True, seed=None, max_tokens=1)
        body.update(logprobs=True, top_logprobs=1)
        reply = backend.request("POST", "chat/completions", body)
        top = reply["choices"][0]["logprobs"]["content"][0]
        [[local]] = local_smollm2.next_token_logprobs([prompt], [top["token"]])
        gaps.append(abs(top["logprob"] - local))
    assert np.median(gaps) < 0.2 and max(gaps) < 1.0, gaps


class _KillAfter(Backend):
    """Passes the inner backend's questions through and kills the server after ``k``."""

    def __init__(self, inner: HTTPBackend, server, k: int) -> None:
        self.inner, self.server, self.k = inner, server, k
        self.identity = inner.identity

    def generate(self, question_ids: Sequence[str], prompts: Sequence[Prompt],
                 config: SamplingConfig) -> Iterator[QuestionSamples]:
        for i, record in enumerate(self.inner.generate(question_ids, prompts, config), 1):
            yield record
            if i == self.k:
                self.server.kill()


def test_a_killed_server_fails_clearly_and_the_run_resumes_without_resending(
        llama_server_factory, tmp_path):
    questions = _questions(6)
    config = SamplingConfig(n_samples=2, max_new_tokens=8, greedy=False)
    server = llama_server_factory()
    first = _backend(server.url, concurrency=2, max_retries=2, backoff_base=0.05)
    with pytest.raises(ServerUnreachableError, match="resumes the run"):
        sample_run(_KillAfter(first, server, k=2), questions, out=tmp_path / "run",
                   config=config, progress=False)
    done = RunStore.open(tmp_path / "run").done_ids()
    assert 2 <= len(done) < len(questions)  # finished questions are on disk, the rest are not

    restarted = llama_server_factory()  # on another port: the same model, so the run resumes
    second = _backend(restarted.url, concurrency=2)
    store = sample_run(second, questions, out=tmp_path / "run", config=config, progress=False)
    sent = set(second.stats.sample_requests)
    assert sent == {q.id for q in questions} - done  # nothing finished was sent again
    assert all(n == config.n_samples for n in second.stats.sample_requests.values())
    records = store.samples_by_id()  # raises if a question were stored twice
    assert set(records) == {q.id for q in questions}
    assert all(len(r.samples) == 2 for r in records.values())


def test_a_request_slower_than_the_timeout_fails_clearly():
    # A server that accepts and never answers: the timeout is certain, and no real server is
    # left generating for a request nobody waits for.
    config = SamplingConfig(n_samples=1, greedy=False, max_new_tokens=64).resolved(
        "sentence", chat=True)
    prompt = build_prompt("Describe the sea.", style="sentence", chat=True)
    with hanging_server() as url:
        backend = _backend(url, timeout=0.3, max_retries=1, backoff_base=0.01)
        with pytest.raises(ServerUnreachableError, match="timeout"):
            list(backend.generate(["q"], [prompt], config))


def test_cli_samples_through_the_server_and_reports_an_unreachable_one(llama_server, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["sample", "--model", llama_server.url, "--served-model",
                                 "smollm2", "--limit", "2", "--samples", "2", "--out", str(out),
                                 "--max-new-tokens", "8", "--no-greedy", "--no-progress"])
    assert result.exit_code == 0, result.output
    manifest = RunStore.open(out).manifest
    assert manifest["model"]["backend"] == "http" and manifest["model"]["name"] == "smollm2"
    assert "api_key" not in str(manifest)
    with refused_url() as dead:  # nothing listens: connection refused
        result = runner.invoke(app, ["sample", "--model", dead, "--limit", "3", "--samples", "2",
                                     "--out", str(tmp_path / "dead"), "--no-progress"])
    assert result.exit_code == 2
    assert "error:" in result.output and "server is running" in result.output


def test_a_scorer_fitted_through_the_server_scores_through_it_again(llama_run, llama_server,
                                                                    tmp_path):
    """The exported scorer remembers the server: loaded with no backend, it samples there."""
    from recal.repair import FitConfig, export_scorer
    from recal.scorer import load_scorer

    folder = export_scorer(llama_run, "identity", FitConfig(n_resamples=20)).save(
        tmp_path / "scorer")
    scorer = load_scorer(folder)
    assert scorer.backend is None
    answer = scorer.score(_questions()[0])
    assert scorer.backend.identity.backend == "http"
    assert scorer.backend.identity.config_hash == llama_run.manifest["model"]["config_hash"]
    assert sum(answer.classes.values()) == LLAMA_RUN_SAMPLES and 0 <= answer.confidence <= 1
