"""A counter-based random stream: the uniform for (seed, question, sample, step) is a pure function
of those four values, so a sample never depends on batch size, batch order or on a resume."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = ["row_keys", "uniforms"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mixer."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def row_keys(seed: int, question_ids: Sequence[str], sample_indices: Sequence[int]) -> np.ndarray:
    """One 64-bit key per (question, sample) row."""
    keys = np.empty(len(question_ids), dtype=np.uint64)
    for i, (qid, j) in enumerate(zip(question_ids, sample_indices, strict=True)):
        digest = hashlib.blake2b(f"{seed}\x00{qid}\x00{j}".encode(), digest_size=8).digest()
        keys[i] = np.uint64(int.from_bytes(digest, "little"))
    return keys


def uniforms(keys: np.ndarray, step: int) -> np.ndarray:
    """Uniform floats in [0, 1), 53 random bits each, for every key at this decoding step."""
    with np.errstate(over="ignore"):
        mixed = _splitmix64(keys ^ _splitmix64(np.full_like(keys, step)))
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
