"""The vLLM backend: sampling in process on a GPU with vLLM's batched engine.

vLLM is an optional extra (``pip install 'recal[vllm]'``, CUDA machines); it is imported only
when this backend is loaded, and its absence is reported as a ``BackendUnavailableError`` that
says how to install it. Prompts are rendered with the model's own chat template (chat models)
or passed as text (base models); all questions go to ``LLM.generate`` together, which schedules
them with continuous batching, and each question's M samples come from one ``n=M`` request.

Sampling follows the reference protocol exactly: temperature T, ``top_p=1``, ``top_k=-1``,
``min_p=0``, no repetition penalty; each question's request carries a seed derived from (seed,
question id), so a resumed run draws the same answers. ``logprobs=0`` returns the log-probability
of each sampled token (under the model's temperature-1 distribution, vLLM's default).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from recal.lines import first_line
from recal.models.base import Backend, ModelIdentity, ModelKind, first_token_ids
from recal.models.rng import row_keys
from recal.prompts import Prompt
from recal.samples import QuestionSamples, Sample, SamplingConfig

__all__ = ["BackendUnavailableError", "VLLMBackend", "load_vllm", "sampling_kwargs"]

_SEED_MOD = 2**31 - 1


class BackendUnavailableError(ImportError):
    """An optional backend's library is not installed; the message says how to install it."""


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailableError(
            "the vllm backend needs the vllm package, which is not installed here "
            f"({exc.msg}): on a machine with a CUDA GPU run `pip install 'recal[vllm]'`; on a "
            "CPU use the transformers backend (the default) or serve the model and use "
            "--model http://HOST:PORT/v1") from None
    return vllm


def sampling_kwargs(config: SamplingConfig, *, greedy: bool, seed: int) -> dict[str, Any]:
    """The ``vllm.SamplingParams`` arguments for one question's samples (or its greedy answer)."""
    kwargs: dict[str, Any] = {
        "n": 1 if greedy else config.n_samples,
        "temperature": 0.0 if greedy else config.temperature,
        "top_p": 1.0,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "max_tokens": config.max_new_tokens,
        "logprobs": 0,
        "seed": None if greedy else seed,
    }
    if config.stop_at_newline:
        kwargs["stop"] = ["\n"]
    return kwargs


class VLLMBackend(Backend):
    """Samples with an in-process ``vllm.LLM``."""

    def __init__(self, llm: Any, identity: ModelIdentity) -> None:
        self.llm = llm
        self.identity = identity
        self.tokenizer = llm.get_tokenizer()

    def _render(self, prompt: Prompt) -> str:
        if prompt.messages is None:
            return prompt.text or ""
        messages = [{"role": r, "content": c} for r, c in prompt.messages]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

    def generate(self, question_ids: Sequence[str], prompts: Sequence[Prompt],
                 config: SamplingConfig) -> Iterator[QuestionSamples]:
        vllm = _import_vllm()
        self.check_generate_args(question_ids, prompts, config)
        texts = [self._render(p) for p in prompts]
        # Chunks bound the memory held by finished outputs and let the run store save progress.
        chunk = max(1, config.batch_rows // (config.n_samples + 1))
        for start in range(0, len(texts), chunk):
            ids = list(question_ids[start:start + chunk])
            part = texts[start:start + chunk]
            seeds = [int(k) % _SEED_MOD for k in row_keys(config.seed, ids, [0] * len(ids))]
            params = [vllm.SamplingParams(**sampling_kwargs(config, greedy=False, seed=s))
                      for s in seeds]
            outputs = self.llm.generate(part, params, use_tqdm=False)
            greedy_outputs = [None] * len(part)
            if config.greedy:
                g = vllm.SamplingParams(**sampling_kwargs(config, greedy=True, seed=0))
                greedy_outputs = self.llm.generate(part, [g] * len(part), use_tqdm=False)
            for qid, out, g_out in zip(ids, outputs, greedy_outputs, strict=True):
                samples = tuple(self._to_sample(c, config) for c in out.outputs)
                greedy = self._to_sample(g_out.outputs[0], config) if g_out is not None else None
                yield QuestionSamples(question_id=qid, samples=samples, greedy=greedy)

    def _to_sample(self, completion: Any, config: SamplingConfig) -> Sample:
        token_ids = tuple(int(t) for t in completion.token_ids)
        logprobs: list[float] = []
        for tok, entry in zip(token_ids, completion.logprobs or [], strict=False):
            logprobs.append(float(entry[tok].logprob))
        text = completion.text
        text = first_line(text.strip()).strip() if config.stop_at_newline else text.strip()
        finish = "length" if completion.finish_reason == "length" else "stop"
        return Sample(text=text, token_ids=token_ids, logprobs=tuple(logprobs),
                      finish_reason=finish)

    def next_token_logprobs(self, prompts: Sequence[Prompt],
                            candidates: Sequence[str]) -> list[list[float]]:
        """Exact: each candidate's first token is appended to the prompt and its log-prob read
        from ``prompt_logprobs``."""
        vllm = _import_vllm()
        firsts = first_token_ids(self.tokenizer, candidates)
        params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        out: list[list[float]] = []
        for prompt in prompts:
            base = self.tokenizer(self._render(prompt), add_special_tokens=False)["input_ids"]
            inputs = [{"prompt_token_ids": [*base, tok]} for tok in firsts]
            results = self.llm.generate(inputs, [params] * len(inputs), use_tqdm=False)
            out.append([float(r.prompt_logprobs[-1][tok].logprob)
                        for r, tok in zip(results, firsts, strict=True)])
        return out


def load_vllm(model: str, *, kind: ModelKind | None = None, cache: Path | None = None,
              **llm_options: Any) -> VLLMBackend:
    """Load ``model`` (a hub id, a folder, or a packaged name) into ``vllm.LLM``.

    Packaged names load the safetensors folder recal converts from the GGUF file, so run the
    transformers backend once first (``recal models`` shows which are converted)."""
    vllm = _import_vllm()
    from recal.models.packaged import PACKAGED_MODELS, cache_dir

    path, known_kind = model, None
    if model in PACKAGED_MODELS:
        spec = PACKAGED_MODELS.get(model)
        folder = (cache or cache_dir()) / spec.name / "hf"
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"{folder} does not exist: convert the packaged model once "
                                    f"with `recal sample --model {model} --limit 1 --samples 1`")
        path, known_kind = str(folder), spec.kind
    llm = vllm.LLM(model=path, **llm_options)
    tokenizer = llm.get_tokenizer()
    resolved: ModelKind = kind or known_kind or (
        "chat" if getattr(tokenizer, "chat_template", None) else "base")
    hf_config = llm.llm_engine.model_config.hf_config.to_dict()
    blob = json.dumps({k: v for k, v in hf_config.items()
                       if not k.startswith("_") and k not in ("transformers_version", "dtype",
                                                              "torch_dtype")},
                      sort_keys=True, default=str)
    identity = ModelIdentity(name=model, kind=resolved, backend="vllm", source=path,
                             config_hash=hashlib.sha256(blob.encode()).hexdigest()[:16])
    return VLLMBackend(llm, identity)
