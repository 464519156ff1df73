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
from recal.models.hf import TransformersBackend, model_config_hash

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
    group_by_prompt: bool = False
    """Batch every answer of one prompt together and run the shared prompt once, its key/value
    cache serving all of them: the same answer-only loss and gradient as the flat batch of those
    texts (to float rounding), at about a third of the compute, since prompts are most of each
    text's tokens. A step then takes whole prompt groups until it holds ``batch_size`` texts, so
    it sees fewer distinct prompts: the synthetic world then needs many more steps, which is why
    it is off by default. Needs ``answer_only``."""

    def __post_init__(self) -> None:
        if self.group_by_prompt and not self.answer_only:
            raise ValueError("group_by_prompt needs answer_only=True (a shared prompt is run "
                             "once, so its own tokens cannot be scored per text)")
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


def _prompt_end(text: str) -> int:
    """Characters of ``text`` up to and including its last ``\nA:`` (0 when it has none)."""
    return text.rindex("\nA:") + 3 if "\nA:" in text else 0


class _FlatBatches:
    """Every text padded on its own; the loss skips prompt tokens when ``answer_only``."""

    def __init__(self, tokenizer: Any, texts: Sequence[str], answer_only: bool) -> None:
        self.encoded = encode_texts(tokenizer, texts)
        self.starts = ([len(e) for e in encode_texts(tokenizer, [t[:_prompt_end(t)]
                                                                 for t in texts])]
                       if answer_only else [0] * len(texts))
        self.units = len(self.encoded)
        self.longest = max(len(e) for e in self.encoded)

    def per_step(self, batch_size: int) -> int:
        return min(batch_size, self.units)

    def loss(self, model: Any, idx: Sequence[int]) -> torch.Tensor:
        ids, mask = pad_batch([self.encoded[i] for i in idx])
        labels = ids.masked_fill(mask == 0, -100)
        for row, i in enumerate(idx):
            labels[row, :self.starts[i]] = -100
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss


class _PromptGroups:
    """Texts grouped by their prompt: each prompt runs once (left-padded), its cache is
    repeated for its answers, and the answers run on top of it (right-padded)."""

    def __init__(self, tokenizer: Any, texts: Sequence[str]) -> None:
        groups: dict[str, list[str]] = {}
        for t in texts:
            end = _prompt_end(t)
            groups.setdefault(t[:end], []).append(t[end:])
        prompts = list(groups)
        self.prompts = encode_texts(tokenizer, prompts)
        self.answers = [encode_texts(tokenizer, groups[p]) for p in prompts]
        if any(not a for group in self.answers for a in group):
            raise ValueError("a training text has no answer after its last 'A:'")
        self.units = len(prompts)
        self.longest = max(len(p) + max(len(a) for a in g)
                           for p, g in zip(self.prompts, self.answers, strict=True))
        self._mean_group = sum(len(g) for g in self.answers) / self.units

    def per_step(self, batch_size: int) -> int:
        return min(self.units, max(1, round(batch_size / self._mean_group)))

    def loss(self, model: Any, idx: Sequence[int]) -> torch.Tensor:
        from transformers import DynamicCache

        prompts = [self.prompts[i] for i in idx]
        width = max(len(p) for p in prompts)
        ids = torch.zeros((len(prompts), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, p in enumerate(prompts):
            ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[row, width - len(p):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        kwarg = _cache_kwarg(model)
        first = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                      use_cache=True, **{kwarg: cache}).logits[:, -1]
        owner = torch.tensor([row for row, i in enumerate(idx) for _ in self.answers[i]])
        cache.batch_select_indices(owner)
        answers, answer_mask = pad_batch([a for i in idx for a in self.answers[i]])
        rest = model(input_ids=answers, attention_mask=torch.cat([mask[owner], answer_mask], 1),
                     position_ids=positions[owner, -1:] + 1 + torch.arange(answers.shape[1]),
                     use_cache=True, **{kwarg: cache}).logits
        # The prompt's last position predicts each answer's first token; answer position j
        # predicts token j + 1.
        logits = torch.cat([first[owner][:, None], rest[:, :-1]], 1)
        labels = answers.masked_fill(answer_mask == 0, -100)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 labels.reshape(-1), ignore_index=-100)


def _cache_kwarg(model: Any) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def train_lm(model: Any, tokenizer: Any, texts: Sequence[str],
             config: TrainConfig | None = None) -> TrainResult:
    """Next-token cross-entropy on ``texts`` (the answer tokens, or every token after the first
    with ``answer_only=False``), AdamW, linear warm-up then cosine decay to 5% of ``lr``."""
    config = config or TrainConfig()
    batches: _FlatBatches | _PromptGroups = (
        _PromptGroups(tokenizer, texts) if config.group_by_prompt
        else _FlatBatches(tokenizer, texts, config.answer_only))
    limit = model.config.max_position_embeddings
    if batches.longest > limit:
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
    per_step = batches.per_step(config.batch_size)
    order = torch.randperm(batches.units, generator=gen)
    cursor = 0
    for step in range(config.steps):
        if cursor + per_step > len(order):
            order, cursor = torch.randperm(batches.units, generator=gen), 0
        idx = order[cursor:cursor + per_step].tolist()
        cursor += per_step
        loss = batches.loss(model, idx)
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
                             source="recal.synthetic", config_hash=model_config_hash(model))
    return TransformersBackend(model, tokenizer, identity)
