"""The transformers backend and its batched sampler (the hot path of recal).

How the sampler spends its time well, compared with ``model.generate(num_return_sequences=M)``
called one question at a time:

- questions are decoded together, ``batch_rows`` sequences at a time, so that each forward pass
  multiplies a large batch through the weights;
- each prompt is run through the model once; its key/value cache is then repeated for its M
  samples (``generate`` runs the prompt M times);
- a sequence leaves the batch once it has stopped (EOS, or the end of its line), so short answers
  do not pay for long ones;
- sampling is exact inverse-CDF sampling on the full softmax (no top-k/top-p) driven by a
  counter-based random stream, so samples do not depend on batching and a resumed run draws the
  same answers it would have drawn.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recal.lines import NEWLINE, first_line
from recal.models.base import Backend, ModelIdentity, ModelKind, first_token_ids
from recal.models.packaged import DEFAULT_MODEL, PACKAGED_MODELS, cache_dir, fetch_gguf
from recal.models.rng import row_keys, uniforms
from recal.models.stop import check_stop
from recal.prompts import Prompt, PromptTooLongError
from recal.samples import QuestionSamples, Sample, SamplingConfig

__all__ = ["TransformersBackend", "load_transformers", "DTYPES", "resolve_dtype",
           "choose_threads", "DEFAULT_MAX_MEMORY"]

DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16")
"""Precisions the weights can run in; 'auto' is bfloat16 on a CPU with native bfloat16 matrix
instructions (AVX512-BF16 or AMX), else float32."""

DEFAULT_MAX_MEMORY = 1 << 30
"""Bytes the sampler may use for key/value caches and logits at once (1 GiB): the batch shrinks
to fit, whatever ``batch_rows`` allows."""

_END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>", "<|end|>")
_BLOCK = 256  # vocabulary block for two-level inverse-CDF sampling
_COMPACT_FRACTION = 0.25  # drop finished rows once they are this share of the batch


def model_config_hash(model: Any) -> str:
    skip = ("transformers_version", "dtype", "torch_dtype")
    config = {k: v for k, v in model.config.to_dict().items()
              if not k.startswith("_") and k not in skip}
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantise a GGUF file once into a safetensors folder (later loads take under a second)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a model that still carries the GGUF quantizer marker; its weights
    # are plain float tensors by now, so the marker is clearly stale.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(out_dir)


def _resolve(name_or_path: str, cache: Path) -> tuple[str, str, ModelKind | None]:
    """(folder or hub id to load, description of the source, kind if known)."""
    if name_or_path in PACKAGED_MODELS:
        spec = PACKAGED_MODELS.get(name_or_path)
        out_dir = cache / spec.name / "hf"
        if not (out_dir / "config.json").exists():
            _convert_gguf(fetch_gguf(spec.name, root=cache), out_dir)
        return str(out_dir), f"{spec.requirements[0]}:{spec.gguf_name}", spec.kind
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist")
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        out_dir = cache / "gguf" / f"{path.stem}-{key.hexdigest()[:12]}"
        if not (out_dir / "config.json").exists():
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            _convert_gguf(path, out_dir)
        return str(out_dir), f"gguf:{path.resolve()}", None
    if path.exists() and not path.is_dir():
        raise ValueError(f"model path {path} is neither a folder nor a .gguf file")
    return name_or_path, str(path.resolve()) if path.exists() else f"hub:{name_or_path}", None


def _cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (else bfloat16 is emulated and
    slower than float32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def _busy_cores(seconds: float = 0.2) -> float:
    """Cores busy with other work right now: the machine's non-idle share over ``seconds``
    (from /proc/stat), else the 1-minute load average (which lags by a minute)."""
    import os
    import time

    def reading() -> tuple[int, int] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        ticks = [int(x) for x in fields]
        return sum(ticks), ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # total, idle+iowait

    first = reading()
    if first is None:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    time.sleep(seconds)
    second = reading()
    total, idle = second[0] - first[0], second[1] - first[1]  # type: ignore[index]
    return (os.cpu_count() or 1) * (total - idle) / total if total > 0 else 0.0


def choose_threads() -> int:
    """Torch threads for sampling: the cores this process may use that are not busy with other
    work right now, at least one; ``OMP_NUM_THREADS`` overrides it.

    On a small machine this matters more than anything else: with every core given to torch
    while another process holds one of them, each parallel operation waits for a descheduled
    thread, and decoding ran 15-20x slower here (2 threads against 1 on a 2-core machine with
    one other busy process).
    """
    import os

    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - round(_busy_cores()))


def resolve_dtype(dtype: str) -> str:
    """'float32' or 'bfloat16' for a requested precision ('auto': see :data:`DTYPES`)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        return "bfloat16" if _cpu_has_bf16() else "float32"
    return dtype


def load_transformers(name_or_path: str = DEFAULT_MODEL, *, kind: ModelKind | None = None,
                      cache: Path | None = None, max_prompt_tokens: int | None = None,
                      dtype: str = "float32", max_memory: int | None = None,
                      **unknown: Any) -> TransformersBackend:
    """Load a packaged model name, a GGUF file, a local folder or a hub id with transformers.

    ``kind`` ('chat' or 'base') overrides what recal infers: packaged models know theirs; other
    models count as chat models when their tokenizer has a chat template. A prompt longer than
    ``max_prompt_tokens`` (default: the model's context less the answer's room) is refused
    before any forward pass. ``dtype`` is the precision the weights run in ('float32', the
    exact model; 'bfloat16', about 2.5x faster on CPUs with native bfloat16 and a mean token
    log-probability error of about 0.04 nats, see benchmarks/sampling_throughput.py; 'auto').
    ``max_memory`` bounds the sampler's caches and logits in bytes
    (default :data:`DEFAULT_MAX_MEMORY`). Neither changes which answers a seed draws from the
    model in the precision it runs in; the precision is part of the model's identity.
    Loading sets torch's thread count for the process to :func:`choose_threads`.
    """
    if unknown:
        raise ValueError("the transformers backend takes no options but max_prompt_tokens, "
                         f"dtype and max_memory, got {sorted(unknown)}")
    precision = resolve_dtype(dtype)
    torch.set_num_threads(choose_threads())
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # recal shows its own progress; loading takes < 1 s
    folder, source, known_kind = _resolve(name_or_path, cache or cache_dir())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, precision))
    model.eval()
    resolved_kind: ModelKind = kind or known_kind or (
        "chat" if getattr(tokenizer, "chat_template", None) else "base")
    identity = ModelIdentity(name=name_or_path, kind=resolved_kind, backend="transformers",
                             source=source, config_hash=model_config_hash(model),
                             dtype=precision)
    return TransformersBackend(model, tokenizer, identity, max_prompt_tokens=max_prompt_tokens,
                               max_memory=max_memory)


@dataclass
class _Row:
    """One sequence being decoded: sample j of question q (j == M is the greedy answer)."""

    question: int
    index: int
    greedy: bool
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    logits: list[float] = field(default_factory=list)
    lse: list[list[float]] = field(default_factory=list)
    has_text: bool = False
    finish: str | None = None


class TransformersBackend(Backend):
    """Samples from a ``transformers`` causal LM in process, with the batched sampler above."""

    def __init__(self, model: Any, tokenizer: Any, identity: ModelIdentity, *,
                 max_prompt_tokens: int | None = None, max_memory: int | None = None) -> None:
        if max_prompt_tokens is not None and (not isinstance(max_prompt_tokens, int)
                                              or max_prompt_tokens < 1):
            raise ValueError(f"max_prompt_tokens must be a positive integer or None, got "
                             f"{max_prompt_tokens!r}")
        if max_memory is not None and (not isinstance(max_memory, int) or max_memory < 1):
            raise ValueError(f"max_memory must be a positive number of bytes or None, got "
                             f"{max_memory!r}")
        self.max_prompt_tokens = max_prompt_tokens
        """Longest prompt in tokens (None: the model's context less the answer's room)."""
        self.max_memory = max_memory or DEFAULT_MAX_MEMORY
        """Bytes the sampler may hold in caches and logits at once (see :meth:`rows_that_fit`)."""
        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self._cache_kwarg = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )
        vocab = model.get_output_embeddings().weight.shape[0]
        texts = tokenizer.batch_decode([[i] for i in range(vocab)])
        self._has_newline = torch.tensor([NEWLINE in t for t in texts])
        self._text_before_newline = torch.tensor([first_line(t).strip() != "" for t in texts])
        self._blank = torch.tensor([t.strip() == "" for t in texts])
        self._stop_ids = self._find_stop_ids(vocab)
        self._is_stop = torch.zeros(vocab, dtype=torch.bool)
        self._is_stop[list(self._stop_ids)] = True
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(
            self._stop_ids)

    def _find_stop_ids(self, vocab: int) -> set[int]:
        ids: set[int] = set()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else (eos or []))
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        if self.is_chat:
            for token in _END_OF_TURN_TOKENS:
                tid = self.tokenizer.convert_tokens_to_ids(token)
                if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                    ids.add(tid)
        ids = {i for i in ids if 0 <= i < vocab}
        if not ids:
            raise ValueError(f"model {self.identity.name!r} declares no end-of-sequence token")
        return ids

    # -- prompts ---------------------------------------------------------------------------------

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt: chat turns through the model's template, text as it is."""
        if prompt.messages is not None:
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError(f"model {self.identity.name!r} has no chat template; "
                                 "use it as a base model (k-shot text prompts)")
            messages = [{"role": r, "content": c} for r, c in prompt.messages]
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(prompt.text)["input_ids"])

    @property
    def context_length(self) -> int | None:
        """Positions the model can attend to (its config's ``max_position_embeddings``)."""
        config = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def prompt_limit(self, max_new_tokens: int) -> tuple[int | None, str]:
        """The most prompt tokens allowed when answers may take ``max_new_tokens``, and why:
        the context less the answer's room, or :attr:`max_prompt_tokens` when smaller."""
        limit, why = None, ""
        if self.context_length is not None:
            limit = max(self.context_length - max_new_tokens, 0)
            why = (f"the model's context of {self.context_length} tokens less "
                   f"{max_new_tokens} for the answer")
        if self.max_prompt_tokens is not None and (limit is None or self.max_prompt_tokens < limit):
            limit, why = self.max_prompt_tokens, "max_prompt_tokens"
        return limit, why

    def check_prompt(self, question_id: str, prompt: Prompt | list[int],
                     max_new_tokens: int) -> list[int]:
        """The prompt's token ids, or :class:`recal.prompts.PromptTooLongError` naming
        ``question_id`` when it exceeds :meth:`prompt_limit` (checked before any forward pass)."""
        ids = prompt if isinstance(prompt, list) else self.encode(prompt)
        limit, why = self.prompt_limit(max_new_tokens)
        if limit is not None and len(ids) > limit:
            raise PromptTooLongError(question_id, len(ids), limit, why)
        return ids

    @torch.inference_mode()
    def next_token_logprobs(self, prompts: Sequence[Prompt],
                            candidates: Sequence[str]) -> list[list[float]]:
        firsts = first_token_ids(self.tokenizer, candidates)
        out: list[list[float]] = []
        for i, prompt in enumerate(prompts):  # one at a time: they differ in length, are few
            ids = torch.tensor([self.check_prompt(f"prompt {i}", prompt, 1)])
            logits = self.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
            out.append(torch.log_softmax(logits, -1)[firsts].tolist())
        return out

    # -- sampling --------------------------------------------------------------------------------

    def generate(self, question_ids: Sequence[str], prompts: Sequence[Prompt],
                 config: SamplingConfig) -> Iterator[QuestionSamples]:
        self.check_generate_args(question_ids, prompts, config)
        max_new = config.max_new_tokens or 0  # resolved: set (checked above)
        encoded = [self.check_prompt(q, p, max_new)
                   for q, p in zip(question_ids, prompts, strict=True)]
        rows_per_question = config.n_samples + int(config.greedy)
        longest = max(len(p) for p in encoded) + max_new
        rows = min(config.batch_rows, self.rows_that_fit(longest))
        per_chunk = max(1, rows // rows_per_question)
        # Similar lengths share a chunk (less padding); the order does not change any sample.
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), per_chunk):
            chunk = order[start:start + per_chunk]
            yield from self._sample_chunk([question_ids[i] for i in chunk],
                                          [encoded[i] for i in chunk], config)

    def bytes_per_row(self, tokens: int) -> int:
        """Bytes one decoded sequence of ``tokens`` positions holds at its peak: its key/value
        cache in every layer, twice (a growing cache is copied when a step appends to it or rows
        leave the batch), and its rows of logits and of the sampling step's work arrays."""
        config = self.model.config
        text = getattr(config, "text_config", config)
        layers = int(text.num_hidden_layers)
        heads = int(getattr(text, "num_key_value_heads", None) or text.num_attention_heads)
        head_dim = int(getattr(text, "head_dim", None)
                       or text.hidden_size // text.num_attention_heads)
        element = torch.finfo(self.model.dtype).bits // 8
        vocab = self.model.get_output_embeddings().weight.shape[0]
        kv = 2 * layers * heads * head_dim * element * tokens
        return 2 * kv + 6 * 4 * vocab

    def rows_that_fit(self, tokens: int) -> int:
        """The most sequences of ``tokens`` positions decoded together within
        :attr:`max_memory` (at least one)."""
        return max(1, self.max_memory // self.bytes_per_row(tokens))

    def _forward(self, **kwargs: Any) -> torch.Tensor:
        cache = kwargs.pop("cache")
        out = self.model(**kwargs, **{self._cache_kwarg: cache}, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float()

    @torch.inference_mode()
    def _sample_chunk(self, qids: list[str], prompts: list[list[int]],
                      config: SamplingConfig) -> Iterator[QuestionSamples]:
        from transformers import DynamicCache

        n_q, m = len(prompts), config.n_samples
        per_q = m + int(config.greedy)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((n_q, width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((n_q, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p):] = torch.tensor(p)
            attention[i, width - len(p):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        check_stop()
        logits = self._forward(input_ids=input_ids, attention_mask=attention,
                               position_ids=positions, cache=cache)

        # The prompt ran once per question; its cache now serves all its rows.
        cache.batch_repeat_interleave(per_q)
        logits = logits.repeat_interleave(per_q, 0)
        attention = attention.repeat_interleave(per_q, 0)
        next_pos = positions[:, -1:].repeat_interleave(per_q, 0) + 1
        rows = [_Row(q, j, greedy=j == m) for q in range(n_q) for j in range(per_q)]
        keys = row_keys(config.seed, [qids[r.question] for r in rows], [r.index for r in rows])
        alive = torch.arange(len(rows))  # batch position -> row number
        pending = [per_q] * n_q  # unfinished rows per question
        taus = torch.tensor(config.tau_grid, dtype=torch.float32) if config.tau_grid else None

        for step in range(config.max_new_tokens):
            batch_rows = [rows[i] for i in alive.tolist()]
            running = torch.tensor([r.finish is None for r in batch_rows])
            tokens, logprobs = self._draw(logits, batch_rows, keys[alive.numpy()], step, config)
            if taus is not None:
                chosen = logits.gather(1, tokens[:, None])[:, 0]
                lse = torch.logsumexp(logits[:, None, :] / taus[None, :, None], dim=-1)
            stop = self._is_stop[tokens]
            if config.stop_at_newline:
                had_text = torch.tensor([r.has_text for r in batch_rows])
                stop |= self._has_newline[tokens] & (had_text | self._text_before_newline[tokens])
            last = step == config.max_new_tokens - 1
            tok_list, lp_list, stop_list = tokens.tolist(), logprobs.tolist(), stop.tolist()
            blank_list = self._blank[tokens].tolist()
            for b, row in enumerate(batch_rows):
                if row.finish is not None:
                    continue
                row.tokens.append(tok_list[b])
                row.logprobs.append(lp_list[b])
                if taus is not None:
                    row.logits.append(float(chosen[b]))
                    row.lse.append(lse[b].tolist())
                row.has_text = row.has_text or not blank_list[b]
                if stop_list[b] or last:
                    row.finish = "stop" if stop_list[b] else "length"
                    pending[row.question] -= 1
                    if pending[row.question] == 0:
                        yield self._collect(qids[row.question], rows, row.question, per_q, config)
            if last or not any(pending):
                break
            still = running & ~stop
            if (~still).sum().item() > _COMPACT_FRACTION * len(batch_rows):
                keep = still.nonzero()[:, 0]
                cache.batch_select_indices(keep)
                alive, attention, next_pos = alive[keep], attention[keep], next_pos[keep]
                tokens = tokens[keep]
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            check_stop()
            logits = self._forward(input_ids=tokens[:, None], attention_mask=attention,
                                   position_ids=next_pos, cache=cache)
            next_pos = next_pos + 1

    def _draw(self, logits: torch.Tensor, batch_rows: list[_Row], keys: np.ndarray, step: int,
              config: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token of every row and its log-probability under the distribution it came from.

        Sampled rows use exact two-level inverse-CDF sampling from softmax(logits / T): a block of
        the vocabulary by the cumulative block masses, then a token inside it, both cumulated in
        float64 so no tail token is lost to rounding. Greedy rows take the argmax (at T = 1).
        """
        probs = torch.softmax(logits / config.temperature, dim=-1)
        n, vocab = probs.shape
        padded = -vocab % _BLOCK
        if padded:
            probs = torch.nn.functional.pad(probs, (0, padded))
        blocks = probs.view(n, -1, _BLOCK)
        block_cdf = blocks.sum(-1).to(torch.float64).cumsum(-1)
        u = torch.from_numpy(uniforms(keys, step))
        target = u * block_cdf[:, -1]
        b = torch.searchsorted(block_cdf, target[:, None], right=True)[:, 0].clamp(
            max=block_cdf.shape[1] - 1)
        below = torch.where(b > 0, block_cdf.gather(1, (b - 1).clamp(min=0)[:, None])[:, 0], 0.0)
        within = blocks[torch.arange(n), b].to(torch.float64).cumsum(-1)
        residual = torch.minimum(target - below, within[:, -1] * (1 - 1e-12))
        j = torch.searchsorted(within, residual[:, None], right=True)[:, 0].clamp(max=_BLOCK - 1)
        tokens = b * _BLOCK + j
        # A drawn token has probability far above float32's smallest normal, so its log is exact
        # to float32 precision: no second pass over the vocabulary for log-softmax.
        logprobs = torch.log(probs.gather(1, tokens[:, None])[:, 0])
        greedy = torch.tensor([r.greedy for r in batch_rows])
        if greedy.any():
            g_tokens = logits[greedy].argmax(-1)
            tokens[greedy] = g_tokens
            g_logits = logits[greedy]
            logprobs[greedy] = (g_logits.gather(1, g_tokens[:, None])[:, 0]
                                - torch.logsumexp(g_logits, dim=-1))
        return tokens, logprobs

    def _collect(self, qid: str, rows: list[_Row], question: int, per_q: int,
                 config: SamplingConfig) -> QuestionSamples:
        mine = rows[question * per_q:(question + 1) * per_q]
        samples = [self._to_sample(r, config) for r in mine]
        for r in mine:  # free the per-token lists of a finished question
            r.tokens, r.logprobs, r.logits, r.lse = [], [], [], []
        greedy = samples.pop() if config.greedy else None
        return QuestionSamples(question_id=qid, samples=tuple(samples), greedy=greedy)

    def _to_sample(self, row: _Row, config: SamplingConfig) -> Sample:
        body = row.tokens[:-1] if row.tokens and row.tokens[-1] in self._stop_ids else row.tokens
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        text = first_line(text.strip()).strip() if config.stop_at_newline else text.strip()
        return Sample(
            text=text,
            token_ids=tuple(row.tokens),
            logprobs=tuple(row.logprobs),
            finish_reason="stop" if row.finish == "stop" else "length",
            logits=tuple(row.logits) if config.tau_grid else None,
            lse=tuple(tuple(x) for x in row.lse) if config.tau_grid else None,
        )

