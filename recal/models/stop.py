"""Stopping a sampler between decode steps: a process-wide stop signal and a per-thread deadline.

Backends call :func:`check_stop` before each forward pass, so that a shutdown (SIGTERM) or a
request that has timed out stops the work within one decode step instead of minutes later; the
HTTP backend bounds each request and each retry's wait by :func:`time_left` and hands the
deadline to its worker threads (:func:`current_deadline`, :func:`deadline_at`).
Torch-free, so that ``recal serve`` can import it in front of a server upstream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SamplingStopped", "STOP_SAMPLING", "sampling_deadline", "check_stop",
           "current_deadline", "deadline_at", "time_left"]


class SamplingStopped(RuntimeError):
    """Sampling was stopped between two decode steps: past its deadline, or the process is
    shutting down (:data:`STOP_SAMPLING`). Questions finished before it are already yielded."""


STOP_SAMPLING = threading.Event()
"""Set it to stop every sampler of this process at its next decode step (``recal serve`` sets it
when asked to shut down, so that no thread keeps a core busy after the answer is moot)."""

_local = threading.local()


@contextmanager
def sampling_deadline(seconds: float) -> Iterator[None]:
    """Within this block, in this thread, sampling raises :class:`SamplingStopped` at the first
    decode step after ``seconds`` have passed (a request that has timed out stops computing)."""
    before = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = before


def current_deadline() -> float | None:
    """This thread's deadline (a ``time.monotonic()`` instant), or None: hand it to worker
    threads with :func:`deadline_at`, since a deadline belongs to the thread that set it."""
    return getattr(_local, "deadline", None)


@contextmanager
def deadline_at(deadline: float | None) -> Iterator[None]:
    """Within this block, in this thread, the deadline is the instant ``deadline`` (None: the
    thread's own, unchanged): how a worker thread inherits its caller's deadline."""
    if deadline is None:
        yield
        return
    before = getattr(_local, "deadline", None)
    _local.deadline = deadline if before is None else min(before, deadline)
    try:
        yield
    finally:
        _local.deadline = before


def time_left() -> float | None:
    """Seconds to this thread's deadline (<= 0 once past it), or None without one. Work that
    waits (an HTTP request, a backoff sleep) waits at most this long."""
    deadline = getattr(_local, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()


def check_stop() -> None:
    """Raise :class:`SamplingStopped` when the process is stopping or this thread's deadline
    has passed (backends call it before each forward pass)."""
    if STOP_SAMPLING.is_set():
        raise SamplingStopped("sampling stopped: the process is shutting down")
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise SamplingStopped("sampling stopped: past its deadline")
