"""Settings of the calibrated proxy: its key and the bounds it puts on each request."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

AbstainMode = Literal["off", "flag", "refuse"]

__all__ = ["AbstainMode", "ServeConfig"]


@dataclass(frozen=True)
class ServeConfig:
    """What ``recal serve`` accepts. Every bound answers a request that exceeds it with a 4xx
    error naming the bound and its flag."""

    api_key: str | None = None
    """Clients must send ``Authorization: Bearer <api_key>``; None: no key asked (loopback)."""
    max_body_bytes: int = 64 * 1024
    """Largest request body (413 beyond it)."""
    max_messages: int = 64
    """Most chat messages in one request."""
    max_n: int = 4
    """Most choices (``n``) one request may ask of the upstream model."""
    max_tokens: int = 512
    """Largest ``max_tokens`` a request may ask for."""
    request_timeout: float = 120.0
    """Seconds a request may take in all (answer and confidence samples); 504 beyond it."""
    max_concurrent: int = 4
    """Requests worked on at once; later ones wait (within their time limit)."""
    abstain: AbstainMode = "off"
    """Answers below the scorer's abstention threshold: 'off' (no decision), 'flag' (marked in
    the response) or 'refuse' (the answer is withheld and replaced by a refusal)."""

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_messages", "max_n", "max_tokens", "max_concurrent"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        t = self.request_timeout
        if not (isinstance(t, int | float) and math.isfinite(t) and t > 0):
            raise ValueError(f"request_timeout must be a positive number of seconds, got {t!r}")
        if self.abstain not in get_args(AbstainMode):
            raise ValueError(f"abstain must be one of {', '.join(get_args(AbstainMode))}, got "
                             f"{self.abstain!r}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ValueError("api_key must be at least 8 characters (or None for no key)")
