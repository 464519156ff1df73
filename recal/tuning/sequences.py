"""Token-level pieces the methods share: prompts and answers as ids, padded batches, and the two
readouts (log-probability of an answer; logits or hidden state after a prompt).

Answers are scored right-padded (every position's next-token distribution is needed); prompts
read at their last token are left-padded with explicit positions, as the sampler runs them, so
the readout is the final column.

When LoRA trains only the top layers, the frozen layers below give the same output for a row in
every epoch: :func:`cache_bottom` runs them once per row and keeps their output
(``hidden``); batches then carry ``inputs_embeds`` and the model runs only its top layers
(:func:`top_layers`), which is where nearly all the training time went.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch

from recal.confidence import Classified
from recal.models.hf import TransformersBackend
from recal.prompts import Prompt

__all__ = ["AnswerRow", "PromptRow", "terminator_id", "answer_ids", "collate_answers",
           "collate_prompts", "answer_logprobs", "last_logits", "last_hidden", "first_token",
           "decoder_layers", "top_layers", "cache_bottom"]

R = TypeVar("R", "AnswerRow", "PromptRow")


@dataclass(frozen=True)
class AnswerRow:
    """A prompt and one answer to it, with a weight (a target mass, or 1)."""

    prompt: tuple[int, ...]
    answer: tuple[int, ...]
    weight: float = 1.0
    hidden: torch.Tensor | None = None
    """Output of the frozen bottom layers for prompt + answer (see :func:`cache_bottom`)."""

    def ids(self, max_length: int) -> tuple[tuple[int, ...], int]:
        """(prompt + answer cut to ``max_length`` from the left of the prompt, answer start)."""
        keep = max(max_length - len(self.answer), 1)
        prompt = self.prompt[-keep:]
        return (*prompt, *self.answer), len(prompt)


@dataclass(frozen=True)
class PromptRow:
    """A prompt read at its last token, with a target in [0, 1]."""

    prompt: tuple[int, ...]
    target: float = 0.0
    hidden: torch.Tensor | None = None
    """Output of the frozen bottom layers for the prompt (see :func:`cache_bottom`)."""


def terminator_id(items: Sequence[Classified], backend: TransformersBackend) -> int:
    """The token that ends the model's answers: the commonest last token of its stored answers
    that stopped (the newline or end-of-turn token), else the tokenizer's EOS."""
    counts: Counter[int] = Counter()
    for item in items:
        for s in item.record.samples:
            if s.finish_reason == "stop" and s.token_ids:
                counts[s.token_ids[-1]] += 1
    if counts:
        return counts.most_common(1)[0][0]
    eos = backend.tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"model {backend.identity.name!r} has no EOS token to end answers with")
    return int(eos)


def answer_ids(backend: TransformersBackend, text: str, terminator: int) -> tuple[int, ...]:
    """An answer text as the model would write it after the prompt: its tokens, then the end."""
    ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    return (*ids, terminator)


def first_token(backend: TransformersBackend, text: str) -> int:
    """The first token of a reply (yes/no); refused when the tokenizer does not know it."""
    ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    unk = backend.tokenizer.unk_token_id
    if not ids or (unk is not None and ids[0] == unk):
        raise ValueError(f"the reply {text!r} is not in model {backend.identity.name!r}'s "
                         "vocabulary (it encodes to the unknown token)")
    return int(ids[0])


def encode_prompt(backend: TransformersBackend, prompt: Prompt, max_length: int) -> tuple[int, ...]:
    ids = backend.encode(prompt)
    return tuple(ids[-max_length:])


def collate_answers(rows: Sequence[AnswerRow], pad: int, max_length: int,
                    top: int | None = None) -> dict[str, Any]:
    """Right-padded prompt+answer ids, attention mask, and the mask of answer-token targets."""
    seqs, starts = zip(*(r.ids(max_length) for r in rows), strict=True)
    width = max(len(s) for s in seqs)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.zeros((len(rows), width), dtype=torch.bool)  # position t predicts token t
    for i, (s, start) in enumerate(zip(seqs, starts, strict=True)):
        ids[i, :len(s)] = torch.tensor(s)
        attention[i, :len(s)] = 1
        target[i, start:len(s)] = True
    batch = {"input_ids": ids, "attention_mask": attention, "answer_mask": target,
             "weight": torch.tensor([r.weight for r in rows], dtype=torch.float32)}
    if top is not None and all(r.hidden is not None for r in rows):
        embeds = torch.zeros((len(rows), width, rows[0].hidden.shape[-1]))
        for i, r in enumerate(rows):
            embeds[i, :len(r.hidden)] = r.hidden
        batch["inputs_embeds"], batch["top"] = embeds, top
    return batch


def collate_prompts(rows: Sequence[PromptRow], pad: int, top: int | None = None
                    ) -> dict[str, Any]:
    """Left-padded prompts with explicit positions (the last column is every prompt's end)."""
    width = max(len(r.prompt) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r.prompt):] = torch.tensor(r.prompt)
        attention[i, width - len(r.prompt):] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": ids, "attention_mask": attention, "position_ids": positions,
             "target": torch.tensor([r.target for r in rows], dtype=torch.float32)}
    if top is not None and all(r.hidden is not None for r in rows):
        embeds = torch.zeros((len(rows), width, rows[0].hidden.shape[-1]))
        for i, r in enumerate(rows):
            embeds[i, width - len(r.hidden):] = r.hidden
        batch["inputs_embeds"], batch["top"] = embeds, top
    return batch


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The decoder layers of a causal LM (or of the peft / DDP wrappers around it)."""
    model = getattr(model, "module", model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, getattr(base, "base_model_prefix", "model"), None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"cannot find the decoder layers of {type(base).__name__} (expected "
                         "model.<prefix>.layers); use train_layers=None")
    return layers


@contextmanager
def top_layers(model: Any, n: int) -> Iterator[None]:
    """Within the block, the model runs only its last ``n`` decoder layers (it is then fed the
    cached output of the others as ``inputs_embeds``)."""
    model = getattr(model, "module", model)  # under accelerate's DDP wrapper
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, getattr(base, "base_model_prefix", "model"))
    full = inner.layers
    inner.layers = torch.nn.ModuleList(list(full)[len(full) - n:])
    try:
        yield
    finally:
        inner.layers = full


def run(model: Any, batch: dict[str, torch.Tensor], **kwargs: Any) -> Any:
    """The model on a batch: the top layers on cached hidden states when the batch has them."""
    common: dict[str, Any] = {"attention_mask": batch["attention_mask"], **kwargs}
    if "position_ids" in batch:
        common["position_ids"] = batch["position_ids"]
    if "inputs_embeds" in batch:
        with top_layers(model, int(batch["top"])):
            return model(inputs_embeds=batch["inputs_embeds"], **common)
    return model(input_ids=batch["input_ids"], **common)


@torch.no_grad()
def cache_bottom(model: Any, rows: Sequence[R], n_top: int, pad: int, max_length: int,
                 batch_size: int = 8, progress: bool = False) -> list[R]:
    """Rows with ``hidden`` set: the input of the last ``n_top`` layers of the frozen ``model``
    (no adapter) for each row's tokens, computed once."""
    from tqdm import tqdm

    depth = len(decoder_layers(model))
    split = depth - n_top
    out: list[R] = []
    bar = tqdm(total=len(rows), unit="row", desc="caching frozen layers", disable=not progress,
               dynamic_ncols=True)
    for i in range(0, len(rows), batch_size):
        chunk = list(rows[i:i + batch_size])
        answers = isinstance(chunk[0], AnswerRow)
        batch = (collate_answers(chunk, pad, max_length) if answers
                 else collate_prompts(chunk, pad))
        hs = run(model, batch, output_hidden_states=True, logits_to_keep=1).hidden_states[split]
        mask = batch["attention_mask"].bool()
        for j, row in enumerate(chunk):
            out.append(replace(row, hidden=hs[j][mask[j]].detach().clone()))
        bar.update(len(chunk))
    bar.close()
    return out


def token_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-softmax of the next-token logits at each position predicting an answer token, and
    the log-probability of that token); both only over answer positions, flattened."""
    logits = run(model, batch).logits
    # Position t-1 predicts token t.
    mask = batch["answer_mask"][:, 1:]
    logp = torch.log_softmax(logits[:, :-1].float()[mask], dim=-1)
    chosen = logp.gather(1, batch["input_ids"][:, 1:][mask][:, None])[:, 0]
    return logp, chosen


def answer_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(answer | prompt) of every row: the sum over its answer tokens."""
    _, chosen = token_logprobs(model, batch)
    mask = batch["answer_mask"][:, 1:]
    row_of = torch.arange(mask.shape[0])[:, None].expand_as(mask)[mask]
    return torch.zeros(mask.shape[0], dtype=chosen.dtype).index_add(0, row_of, chosen)


def last_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token logits after every (left-padded) prompt."""
    return run(model, batch, logits_to_keep=1).logits[:, -1].float()


def last_hidden(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The last layer's hidden state at every (left-padded) prompt's last token."""
    return run(model, batch, output_hidden_states=True,
               logits_to_keep=1).hidden_states[-1][:, -1].float()
