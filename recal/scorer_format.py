"""A scorer file read as untrusted data: strict JSON, each field's type and range, and the
optional HMAC signature that says who exported it.

What the checks guarantee. ``content_sha256`` (checked by :func:`recal.scorer.load_scorer`)
catches a file damaged in transit or edited by someone who did not recompute it: anyone can
recompute it, so it proves nothing about who wrote the file. The field checks here make sure
that whatever the file holds, loading it either gives a scorer whose every number is in range or
fails with one line naming the file and the key. Only a signature proves origin: with a key
(:func:`signing_key`, by default from ``$RECAL_SIGNING_KEY``), ``recal export`` writes
``signature.json``, an HMAC-SHA256 over the canonical JSON of ``scorer.json``
(:func:`recal.strict_json.canonical_json`); that JSON holds the adapter's ``sha256`` (every
safetensors and config byte of a tuned scorer's adapter, recomputed at load), so the signature
covers the adapter too. Loading with the key refuses a scorer that is unsigned or whose
signature does not match. Anyone holding the key can sign: share it as you would a password.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from recal.strict_json import StrictJSONError, canonical_json, loads_strict

__all__ = ["ADAPTER_METHODS", "KEY_ENV", "MAX_SCORER_BYTES", "MIN_KEY_LENGTH", "SIGNATURE_FILE",
           "ScorerFormatError", "ScorerSignatureError", "check_document", "read_document",
           "signing_key", "verify_signature", "write_signature"]

MAX_SCORER_BYTES = 256 * 1024**2
"""A scorer file larger than this is refused before it is read (an isotonic map of a million
calibration questions is about 40 MB)."""

SIGNATURE_FILE = "signature.json"
KEY_ENV = "RECAL_SIGNING_KEY"
"""The environment variable that holds the signing key unless another is named."""
MIN_KEY_LENGTH = 16
_ALGORITHM = "hmac-sha256"
_CONTEXT = b"recal scorer signature 1\n"  # a key used elsewhere too cannot sign a scorer by chance

ADAPTER_METHODS = ("amortised", "confidence_head", "distribution")
"""The LoRA methods of :mod:`recal.tuning` (checked against its registry by the tests)."""
_MODEL_KINDS = ("chat", "base")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ScorerFormatError(ValueError):
    """A scorer file is damaged, changed by hand, or from a newer recal."""


class ScorerSignatureError(ScorerFormatError):
    """A scorer loaded with a signing key is unsigned, or its signature does not match."""


# --------------------------------------------------------------------------- reading


def read_document(file: Path, *, limit: int = MAX_SCORER_BYTES) -> dict[str, Any]:
    """The JSON object in ``file``, read as strict JSON (no NaN or Infinity, no key twice, not
    too deep) after checking its size."""
    size = file.stat().st_size
    if size > limit:
        raise ScorerFormatError(f"{file} holds {size} bytes, more than the {limit} a recal file "
                                "of this kind can need: not a recal file")
    try:
        doc = loads_strict(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ScorerFormatError(f"{file} is not UTF-8 text (bad byte at offset {exc.start}): "
                                "the file is damaged") from None
    except StrictJSONError as exc:
        raise ScorerFormatError(f"{file}: {exc}; export it again") from None
    if not isinstance(doc, dict):
        raise ScorerFormatError(f"{file} does not hold a scorer (a JSON object), it holds a "
                                f"{type(doc).__name__}")
    return doc


# --------------------------------------------------------------------------- field checks


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(name: object, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"


class _Checker:
    """Field checks of one document; each failure is one line naming the file and the key."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, key: str, expected: str, value: object) -> ScorerFormatError:
        return ScorerFormatError(f"{self.file}: key {key!r} must be {expected}, got "
                                 f"{_show(value)}")

    def obj(self, doc: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = doc.get(key)
        if not isinstance(value, dict):
            raise self.fail(path, "an object", value) if key in doc else self.missing(path)
        return value

    def optional_obj(self, doc: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
        return None if doc.get(key) is None else self.obj(doc, key, path)

    def missing(self, path: str) -> ScorerFormatError:
        return ScorerFormatError(f"{self.file}: key {path!r} is missing: not a complete scorer "
                                 "file; export it again")

    def string(self, doc: Mapping[str, Any], key: str, path: str) -> str:
        value = doc.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(path, "a non-empty string", value) if key in doc else \
                self.missing(path)
        return value

    def name(self, doc: Mapping[str, Any], key: str, path: str, known: Iterable[str],
             what: str) -> str:
        value = self.string(doc, key, path)
        known = tuple(known)
        if value not in known:
            raise ScorerFormatError(f"{self.file}: key {path!r}: unknown {what} {value!r}"
                                    f"{_did_you_mean(value, known)}")
        return value

    def integer(self, doc: Mapping[str, Any], key: str, path: str, *, minimum: int) -> int:
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(path, f"an integer >= {minimum}", value) if key in doc else \
                self.missing(path)
        return value

    def number(self, doc: Mapping[str, Any], key: str, path: str, *, low: float, high: float,
               open_low: bool = False, open_high: bool = False, optional: bool = False
               ) -> float | None:
        value = doc.get(key)
        if value is None and optional:
            return None
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value)
              and (value > low if open_low else value >= low)
              and (value < high if open_high else value <= high))
        if not ok:
            lo, hi = "(" if open_low else "[", ")" if open_high else "]"
            span = f"> {low:g}" if high == math.inf else f"in {lo}{low:g}, {high:g}{hi}"
            raise self.fail(path, f"a number {span}", value) if key in doc else \
                self.missing(path)
        return float(value)  # type: ignore[arg-type]


def check_document(file: Path, doc: Mapping[str, Any]) -> None:
    """Every field a scorer reads, its type and range (the recalibrator's own state is checked
    by :func:`recal.calibrators.base.recalibrator_from_dict` when it is built)."""
    from recal.confidence import SCORERS
    from recal.prompts import STYLES
    from recal.samples import SamplingConfig
    from recal.semantic import COLLAPSERS

    c = _Checker(file)
    c.string(doc, "recal_version", "recal_version")
    c.obj(doc, "recalibrator", "recalibrator")
    collapse = c.obj(doc, "collapse", "collapse")
    c.name(collapse, "name", "collapse.name", COLLAPSERS.names(), "collapsing function")
    c.obj(collapse, "options", "collapse.options")
    c.name(doc, "scorer", "scorer", SCORERS.names(), "confidence scorer")
    prompt = c.obj(doc, "prompt", "prompt")
    c.name(prompt, "style", "prompt.style", STYLES, "prompt style")
    if prompt.get("shots") is not None:
        c.integer(prompt, "shots", "prompt.shots", minimum=0)

    sampling = c.obj(doc, "sampling", "sampling")
    c.integer(sampling, "n_samples", "sampling.n_samples", minimum=1)
    c.number(sampling, "temperature", "sampling.temperature", low=0.0, high=math.inf,
             open_low=True)
    fields = set(SamplingConfig.__dataclass_fields__) - {"batch_rows"}
    unknown = sorted(set(sampling) - fields)
    if unknown:
        raise ScorerFormatError(f"{file}: key 'sampling.{unknown[0]}' is not a sampling setting"
                                f"{_did_you_mean(unknown[0], sorted(fields))}")
    try:
        SamplingConfig(**{k: (tuple(v) if k == "tau_grid" and isinstance(v, list) else v)
                          for k, v in sampling.items()})
    except (TypeError, ValueError) as exc:
        raise ScorerFormatError(f"{file}: key 'sampling': {exc}") from None

    model = c.obj(doc, "model", "model")
    c.string(model, "name", "model.name")
    if model.get("kind") is not None:
        c.name(model, "kind", "model.kind", _MODEL_KINDS, "model kind")
    for key in ("backend", "source", "config_hash", "dtype"):
        if model.get(key) is not None:
            c.string(model, key, f"model.{key}")
    c.optional_obj(doc, "metrics", "metrics")

    adapter = c.optional_obj(doc, "adapter", "adapter")
    if adapter is not None:
        c.name(adapter, "method", "adapter.method", ADAPTER_METHODS, "tuning method")
        c.string(adapter, "path", "adapter.path")
        if not _HEX64.fullmatch(c.string(adapter, "sha256", "adapter.sha256")):
            raise c.fail("adapter.sha256", "64 lower-case hex digits", adapter["sha256"])
    rule = c.optional_obj(doc, "abstention", "abstention")
    if rule is not None:
        _check_abstention(c, rule)


def _check_abstention(c: _Checker, rule: Mapping[str, Any]) -> None:
    c.number(rule, "target_risk", "abstention.target_risk", low=0.0, high=1.0, open_low=True,
             open_high=True)
    c.number(rule, "delta", "abstention.delta", low=0.0, high=1.0, open_low=True,
             open_high=True)
    for key in ("threshold", "calibrated_threshold", "risk_upper_bound"):
        c.number(rule, key, f"abstention.{key}", low=0.0, high=1.0, optional=True)
    n = c.integer(rule, "n_calibration", "abstention.n_calibration", minimum=0)
    answered = c.integer(rule, "calibration_answered", "abstention.calibration_answered",
                         minimum=0)
    errors = c.integer(rule, "calibration_errors", "abstention.calibration_errors", minimum=0)
    if not errors <= answered <= n:
        raise c.fail("abstention.calibration_answered",
                     f"between calibration_errors ({errors}) and n_calibration ({n})", answered)


# --------------------------------------------------------------------------- signatures


def signing_key(env: str | None = None) -> bytes | None:
    """The key in the environment variable ``env`` (default :data:`KEY_ENV`, and then None when
    it is unset); a named variable that is unset, or a key shorter than
    :data:`MIN_KEY_LENGTH`, is refused."""
    name = env or KEY_ENV
    value = os.environ.get(name)
    if not value:
        if env is None:
            return None
        raise ValueError(f"--sign-key-env {env}: the environment variable {env} is not set (or "
                         "empty); set it to the team's signing key")
    if len(value) < MIN_KEY_LENGTH:
        raise ValueError(f"the signing key in ${name} has {len(value)} characters; use at least "
                         f"{MIN_KEY_LENGTH} (for example the output of `openssl rand -hex 32`)")
    return value.encode("utf-8")


def _as_key(key: bytes | str) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(raw) < MIN_KEY_LENGTH:
        raise ValueError(f"a signing key needs at least {MIN_KEY_LENGTH} bytes, got {len(raw)}")
    return raw


def _mac(key: bytes, doc: Mapping[str, Any]) -> str:
    return hmac.new(key, _CONTEXT + canonical_json(doc), hashlib.sha256).hexdigest()


def write_signature(folder: Path, doc: Mapping[str, Any], key: bytes | str) -> Path:
    """Write ``folder/signature.json``, the HMAC of ``doc`` (the scorer file's content)."""
    path = folder / SIGNATURE_FILE
    body = {"algorithm": _ALGORITHM, "signs": "scorer.json", "hmac": _mac(_as_key(key), doc)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(canonical_json(body) + b"\n")
    tmp.replace(path)
    return path


def verify_signature(file: Path, doc: Mapping[str, Any], key: bytes | str) -> None:
    """Refuse (:class:`ScorerSignatureError`) a scorer file ``file`` holding ``doc`` whose folder
    has no signature, or one that ``key`` did not make."""
    raw = _as_key(key)
    path = file.parent / SIGNATURE_FILE
    if not path.is_file():
        raise ScorerSignatureError(f"{file} is not signed (no {SIGNATURE_FILE} beside it) but a "
                                   "signing key was given: export it with --sign-key-env")
    try:
        body = read_document(path, limit=4096)
    except ScorerFormatError as exc:
        raise ScorerSignatureError(str(exc)) from None
    sent = body.get("hmac")
    if body.get("algorithm") != _ALGORITHM or not isinstance(sent, str):
        raise ScorerSignatureError(f"{path}: not a recal signature (algorithm "
                                   f"{_show(body.get('algorithm'))}, expected {_ALGORITHM!r})")
    if not hmac.compare_digest(sent.encode(), _mac(raw, doc).encode()):
        raise ScorerSignatureError(f"{file} does not match its signature: it was changed after "
                                   "export, or signed with another key; do not use it")
