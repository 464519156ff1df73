"""The synthetic world's base model: a tiny Llama and a word-level tokenizer, trained from scratch.

The tokenizer splits text into words with their leading space (" blue", " Blue"), single digits,
punctuation runs and line breaks, and decodes by concatenation, so that a decoded answer is the
exact text trained on. The model is a transformers ``LlamaForCausalLM`` trained with plain
next-token loss on the corpus ``Q: <question>\\nA: <answer>\\n``; wrapped as a recal
``TransformersBackend`` it is a *base* model, prompted with ``build_prompt(q, chat=False,
shots=0)``, which is exactly the trained prefix ``Q: <question>\\nA:``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from recal.models.base import ModelIdentity
from recal.models.hf import TransformersBackend, _config_hash

__all__ = ["ModelConfig", "TrainConfig", "TrainResult", "PRETOKEN_PATTERN", "build_tokenizer",
           "make_model", "encode_texts", "train_lm", "as_backend", "count_parameters"]

PRETOKEN_PATTERN = r"\n| ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+"
"""One token each: a line break, a word with its leading space, a digit, a punctuation run."""
_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the tiny Llama."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    max_position_embeddings: int = 64
    initializer_range: float = 0.1
    """Init std; transformers' 0.02 leaves a tiny model on a long plateau of uniform attention
    before it finds the entity's name (0.1 learns the facts in about 150 steps)."""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.initializer_range > 0:
            raise ValueError(f"initializer_range must be > 0, got {self.initializer_range!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of "
                             f"num_attention_heads ({self.num_attention_heads})")


@dataclass(frozen=True)
class TrainConfig:
    """Next-token training of the base model (AdamW, cosine decay after a short warm-up)."""

    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 20
    seed: int = 0
    answer_only: bool = True
    """Score only the answer tokens (after the last ``A:``): the questions' own words are the
    world's sampling of questions, not knowledge, and learning them only slows training."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and "
                             f"{self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")


@dataclass(frozen=True)
class TrainResult:
    """What training reports: the loss at the start and end, and the time taken."""

    first_loss: float
    final_loss: float
    seconds: float
    steps: int


def build_tokenizer(texts: Sequence[str]) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` whose vocabulary is every pre-token in ``texts``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pattern = re.compile(PRETOKEN_PATTERN)
    words = sorted({w for t in texts for w in pattern.findall(t)})
    vocab = {tok: i for i, tok in enumerate([*_SPECIALS, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(PRETOKEN_PATTERN), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)


def make_model(vocab_size: int, config: ModelConfig | None = None, seed: int = 0) -> Any:
    """A freshly initialised ``LlamaForCausalLM`` of the given shape."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = config or ModelConfig()
    torch.manual_seed(seed)
    llama = LlamaConfig(vocab_size=vocab_size, hidden_size=config.hidden_size,
                        intermediate_size=config.intermediate_size,
                        num_hidden_layers=config.num_hidden_layers,
                        num_attention_heads=config.num_attention_heads,
                        num_key_value_heads=config.num_attention_heads,
                        max_position_embeddings=config.max_position_embeddings,
                        bos_token_id=1, eos_token_id=2, pad_token_id=0,
                        tie_word_embeddings=True, initializer_range=config.initializer_range)
    return LlamaForCausalLM(llama)


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text (no special tokens); unknown words are refused."""
    out = [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    unk = tokenizer.unk_token_id
    for text, ids in zip(texts, out, strict=True):
        if unk in ids:
            raise ValueError(f"text {text!r} has words outside the synthetic vocabulary")
    return out


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor,
                                                                      torch.Tensor]:
    """Right-padded ids and their attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def train_lm(model: Any, tokenizer: Any, texts: Sequence[str],
             config: TrainConfig | None = None) -> TrainResult:
    """Next-token cross-entropy on ``texts`` (the answer tokens, or every token after the first
    with ``answer_only=False``), AdamW."""
    config = config or TrainConfig()
    encoded = encode_texts(tokenizer, texts)
    starts = [0] * len(texts)
    if config.answer_only:
        prompts = [t[:t.rindex("\nA:") + 3] if "\nA:" in t else "" for t in texts]
        starts = [len(e) for e in encode_texts(tokenizer, prompts)]
    limit = model.config.max_position_embeddings
    if max(len(e) for e in encoded) > limit:
        raise ValueError(f"a training text has more than max_position_embeddings={limit} tokens")
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                            betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        frac = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    start, first, loss_value = time.perf_counter(), math.nan, math.nan
    order = torch.randperm(len(encoded), generator=gen)
    cursor = 0
    for step in range(config.steps):
        if cursor + config.batch_size > len(order):
            order, cursor = torch.randperm(len(encoded), generator=gen), 0
        idx = order[cursor:cursor + config.batch_size].tolist()
        cursor += config.batch_size
        ids, mask = pad_batch([encoded[i] for i in idx])
        labels = ids.masked_fill(mask == 0, -100)
        for row, i in enumerate(idx):
            labels[row, :starts[i]] = -100
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        if step == 0:
            first = loss_value
    model.eval()
    return TrainResult(first, loss_value, time.perf_counter() - start, config.steps)


def as_backend(model: Any, tokenizer: Any, name: str) -> TransformersBackend:
    """The model as a recal base-model backend (``Prompt(text=...)`` / ``build_prompt`` text)."""
    model.eval()
    identity = ModelIdentity(name=name, kind="base", backend="transformers",
                             source="recal.synthetic", config_hash=_config_hash(model))
    return TransformersBackend(model, tokenizer, identity)
