"""Sampling speed settings that must not change what is sampled: the memory budget, the thread
count; and the one that does, the precision, recorded in the run and checked on resume."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from recal.cli import app
from recal.data.records import Question
from recal.models import hf
from recal.models.hf import TransformersBackend, choose_threads, load_transformers, resolve_dtype
from recal.prompts import build_prompt
from recal.runstore import RunMismatchError
from recal.samples import SamplingConfig
from recal.sampling import sample_run

QUESTIONS = ["abc?", "a", "dead beef cafe?", "bad", "face ace?", "c"]
runner = CliRunner()


def _sample(backend, config: SamplingConfig):
    resolved = config.resolved("concise", chat=backend.is_chat)
    prompts = [build_prompt(q, "concise", chat=backend.is_chat) for q in QUESTIONS]
    ids = [f"q{i}" for i in range(len(QUESTIONS))]
    return {r.question_id: r for r in backend.generate(ids, prompts, resolved)}


def test_bytes_per_row_follows_the_cache_arithmetic(tiny_backend):
    # tiny model: 2 layers, 2 key/value heads of 64 / 4 = 16 dims, float32, its vocabulary
    config = tiny_backend.model.config
    vocab = tiny_backend.model.get_output_embeddings().weight.shape[0]
    head_dim = config.hidden_size // config.num_attention_heads
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 4  # keys+values
    assert tiny_backend.bytes_per_row(50) == 2 * kv * 50 + 24 * vocab
    assert tiny_backend.bytes_per_row(100) - tiny_backend.bytes_per_row(50) == 2 * kv * 50


def test_a_small_memory_budget_shrinks_the_batch_but_not_the_samples(tiny_backend, monkeypatch):
    config = SamplingConfig(n_samples=8, max_new_tokens=10, batch_rows=500)
    roomy = _sample(tiny_backend, config)
    chunks: list[int] = []
    original = TransformersBackend._sample_chunk

    def spy(self, qids, prompts, cfg):
        chunks.append(len(qids))
        return original(self, qids, prompts, cfg)

    monkeypatch.setattr(TransformersBackend, "_sample_chunk", spy)
    longest = max(len(tiny_backend.encode(build_prompt(q, "concise", chat=False)))
                  for q in QUESTIONS) + 10  # the longest prompt and its answer's room
    monkeypatch.setattr(tiny_backend, "max_memory", tiny_backend.bytes_per_row(longest) * 20)
    tight = _sample(tiny_backend, config)
    # 20 rows fit, 9 rows per question (8 samples and the greedy answer): 2 questions a chunk
    assert chunks and max(chunks) == 2 and sum(chunks) == len(QUESTIONS)
    for qid, record in roomy.items():
        assert [s.token_ids for s in record.samples] == [
            s.token_ids for s in tight[qid].samples]
        assert record.greedy.token_ids == tight[qid].greedy.token_ids


def test_threads_follow_the_idle_cores_unless_given(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(hf, "_busy_cores", lambda: 0.2)
    assert choose_threads() == cores
    monkeypatch.setattr(hf, "_busy_cores", lambda: cores + 5.0)
    assert choose_threads() == 1


def test_busy_cores_reads_the_machine_now():
    idle_reading = hf._busy_cores(0.2)
    assert 0 <= idle_reading <= os.cpu_count() + 1e-9
    stop = time.perf_counter() + 1.0
    spinning = []

    def spin() -> None:  # keep this process busy while another thread reads
        while time.perf_counter() < stop:
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    spinning.append(hf._busy_cores(0.5))
    worker.join()
    assert spinning[0] >= 0.5  # at least half a core busy: the spinning thread


def test_dtype_names_are_checked_and_auto_follows_the_cpu():
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert resolve_dtype("auto") == ("bfloat16" if native else "float32")
    assert resolve_dtype("float32") == "float32"
    with pytest.raises(ValueError, match="dtype must be one of auto, float32, bfloat16"):
        resolve_dtype("fp16")


def test_precision_is_recorded_and_a_resume_in_another_is_refused(tiny_model_dir, tmp_path):
    questions = [Question(f"q{i}", q, ("a",)) for i, q in enumerate(QUESTIONS[:3])]
    config = SamplingConfig(n_samples=3, max_new_tokens=6)
    exact = load_transformers(str(tiny_model_dir), dtype="float32")
    store = sample_run(exact, questions, out=tmp_path / "run", config=config, progress=False)
    assert store.manifest["model"]["dtype"] == "float32"
    fast = load_transformers(str(tiny_model_dir), dtype="bfloat16")
    assert fast.identity.dtype == "bfloat16" and fast.model.dtype == torch.bfloat16
    with pytest.raises(RunMismatchError, match="dtype"):
        sample_run(fast, questions, out=tmp_path / "run", config=config, progress=False)


def test_sampling_ends_with_its_rate(tiny_backend, tmp_path, capsys):
    questions = [Question(f"q{i}", q, ("a",)) for i, q in enumerate(QUESTIONS)]
    sample_run(tiny_backend, questions, out=tmp_path / "run",
               config=SamplingConfig(n_samples=4, max_new_tokens=5))
    err = capsys.readouterr().err
    # 6 questions x (4 samples + the greedy answer)
    assert "sampled 30 answers (6 questions) in" in err and "answers/s" in err


@pytest.mark.parametrize("args, message", [
    (["--max-memory", "12Q"], "--max-memory must be a positive size"),
    (["--max-memory", "-1G"], "--max-memory must be a positive size"),
    (["--dtype", "fp8"], "--dtype must be one of auto, float32, bfloat16"),
    (["--model", "http://127.0.0.1:9/v1", "--dtype", "float32"], "--dtype applies to a model"),
    (["--model", "http://127.0.0.1:9/v1", "--max-memory", "1G"], "--max-memory applies to a"),
])
def test_bad_speed_options_are_refused_before_any_work(args, message, tmp_path):
    result = runner.invoke(app, ["sample", "--out", str(tmp_path / "run"), *args])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "run").exists()


def test_memory_sizes_read_as_powers_of_1024():
    from recal.cli.common import byte_size

    assert byte_size("512M", "--max-memory") == 512 << 20
    assert byte_size("2g", "--max-memory") == 2 << 30
    assert byte_size("1.5GiB", "--max-memory") == 3 << 29
    assert byte_size("4096", "--max-memory") == 4096
    assert byte_size(None, "--max-memory") is None


def test_bfloat16_log_probabilities_stay_close_to_float32_on_the_real_model():
    """SmolLM2-135M-Instruct: the log-probability of each token of a float32 answer, scored by
    the bfloat16 weights, is within 0.1 nats on average (measured: about 0.04; the benchmark
    benchmarks/sampling_throughput.py reports it) and the greedy answers mostly agree."""
    exact = load_transformers("smollm2-135m-instruct", dtype="float32")
    fast = load_transformers("smollm2-135m-instruct", dtype="bfloat16")
    questions = ["What is the capital of France?", "Who wrote Hamlet?",
                 "What is the largest planet in the solar system?"]
    config = SamplingConfig(n_samples=3, max_new_tokens=12, seed=1).resolved("concise",
                                                                               chat=True)
    prompts = [build_prompt(q, "concise", chat=True) for q in questions]
    ids = [f"q{i}" for i in range(len(questions))]
    diffs, same_greedy = [], 0
    fast_runs = {r.question_id: r for r in fast.generate(ids, prompts, config)}
    prompt_of = dict(zip(ids, prompts, strict=True))
    for record in exact.generate(ids, prompts, config):  # yielded in any order
        p = exact.encode(prompt_of[record.question_id])
        for sample in record.samples:
            tokens = torch.tensor([p + list(sample.token_ids)])
            with torch.inference_mode():
                low = torch.log_softmax(fast.model(tokens).logits[0].float(), -1)
            rows = low[len(p) - 1:tokens.shape[1] - 1]
            scored = rows.gather(1, torch.tensor(sample.token_ids)[:, None])[:, 0].numpy()
            diffs += list(np.abs(scored - np.array(sample.logprobs)))
        same_greedy += record.greedy.text == fast_runs[record.question_id].greedy.text
    assert fast.identity.dtype == "bfloat16" and exact.identity.dtype == "float32"
    assert 0 < np.mean(diffs) < 0.1  # different weights: not identical, but close
    assert same_greedy >= 2
