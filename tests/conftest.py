"""Shared fixtures: a tiny random Llama with a character-level tokenizer, built in the test."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


def make_tokenizer(chat: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # A small vocabulary keeps EOS and the newline likely, so both finish reasons occur.
    chars = list(string.ascii_lowercase[:12]) + list(" ?:.\n") + list("0123")
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<s>", "</s>", "<unk>", *chars])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", unk_token="<unk>")
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def make_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a peakier next-token distribution than init's near-uniform one
        model.lm_head.weight.mul_(40.0)
    return model.eval()


def make_backend(chat: bool = False, seed: int = 0):
    from recal.models.base import ModelIdentity
    from recal.models.hf import TransformersBackend, _config_hash

    tok = make_tokenizer(chat=chat)
    model = make_model(len(tok), seed=seed)
    identity = ModelIdentity(name="tiny", kind="chat" if chat else "base",
                             backend="transformers", source="test", config_hash=_config_hash(model))
    return TransformersBackend(model, tok, identity)


@pytest.fixture(scope="session")
def tiny_backend():
    return make_backend(chat=False)


@pytest.fixture(scope="session")
def tiny_chat_backend():
    return make_backend(chat=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model saved as a transformers folder, loadable with ``--model DIR``."""
    backend = make_backend(chat=False)
    path = tmp_path_factory.mktemp("tiny-model")
    backend.model.save_pretrained(path)
    backend.tokenizer.save_pretrained(path)
    return path
