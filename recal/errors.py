"""The exceptions that are a user's mistake (a bad option, file, dataset or server), and the
one line that tells the user what went wrong.

The command line turns these into ``error: <message>`` and exit code 2; any other exception is a
bug in recal and keeps its traceback. Python callers can catch the same tuple.
"""

from __future__ import annotations

__all__ = ["user_errors", "user_message"]


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message is meant for the user (imported lazily: the backends
    behind some of them are heavy)."""
    from recal.data.loaders import DataFormatError
    from recal.models.http import HTTPBackendError
    from recal.models.packaged import ModelFetchError
    from recal.runstore import RunFormatError, RunMismatchError

    return (ValueError, KeyError, FileNotFoundError, DataFormatError, ModelFetchError,
            RunMismatchError, RunFormatError, RuntimeError, NotImplementedError,
            HTTPBackendError, ImportError)


def user_message(exc: BaseException) -> str:
    """``exc``'s message as one line of text (a ``KeyError``'s argument without its quotes)."""
    return exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
