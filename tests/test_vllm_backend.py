"""The vLLM backend: a clean import guard where vllm is missing (these CPU machines), and the
sampling settings it would send. Sampling itself needs a CUDA GPU and is not run here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from recal.models import load_backend
from recal.models.vllm_backend import BackendUnavailableError, sampling_kwargs
from recal.samples import SamplingConfig

has_vllm = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(has_vllm, reason="vllm is installed here: the guard is not exercised")
def test_missing_vllm_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match=r"pip install 'recal\[vllm\]'") as info:
        load_backend("smollm2-135m-instruct", backend="vllm")
    assert "transformers backend" in str(info.value) and "vllm" in str(info.value)
    assert isinstance(info.value, ImportError)  # callers catching ImportError still do


def test_importing_recal_and_the_backend_module_does_not_import_vllm():
    code = ("import sys, recal, recal.models, recal.models.vllm_backend, recal.cli; "
            "print('vllm' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "False"


def test_sampling_settings_follow_the_reference_protocol():
    config = SamplingConfig(n_samples=50, temperature=1.0).resolved("concise", chat=True)
    sampled = sampling_kwargs(config, greedy=False, seed=123)
    assert sampled["n"] == 50 and sampled["temperature"] == 1.0 and sampled["seed"] == 123
    # no truncation, no penalty: the model's own distribution at temperature T
    assert (sampled["top_p"], sampled["top_k"], sampled["min_p"],
            sampled["repetition_penalty"]) == (1.0, -1, 0.0, 1.0)
    assert sampled["stop"] == ["\n"] and sampled["max_tokens"] == config.max_new_tokens
    greedy = sampling_kwargs(config, greedy=True, seed=123)
    assert greedy["n"] == 1 and greedy["temperature"] == 0.0
    cot = SamplingConfig().resolved("cot", chat=True)
    assert "stop" not in sampling_kwargs(cot, greedy=False, seed=0)


def test_unknown_backend_names_are_refused():
    with pytest.raises(ValueError, match="unknown backend 'onnx'.*known: http, transformers, vllm"):
        load_backend("x", backend="onnx")  # type: ignore[arg-type]
