"""Named registries with one registration style (the lm-evaluation-harness and peft shape).

Every extension point of recal (backends, datasets, collapsing functions, confidence scorers,
recalibrators, and the registries other packages build on this class) registers the same way::

    COLLAPSERS = Registry("collapsing function")

    @COLLAPSERS.register("normalized", help="normalised answer span")
    class NormalizedCollapser(Collapser): ...

    DATASETS.register("builtin", spec)                        # an object, registered as is
    BACKENDS.register_lazy("vllm", "recal.models.vllm_backend:load_vllm",
                           help="in-process GPU sampling", install="recal[vllm]")

A lazy entry is a ``"module:object"`` string imported on the first :meth:`Registry.get`, so heavy
optional parts (torch, vLLM) cost nothing until they are used; when its import fails, ``get``
raises :class:`MissingDependencyError` saying what to install. Names are lower case (letters,
digits and ``_ - . : +``), a name is registered once, and an unknown name raises
:class:`UnknownNameError` (a ``KeyError`` and a ``ValueError``) whose message suggests the
closest known names. Each entry carries a one-line help text, so CLI help and error messages
list entries from the registry itself.

:data:`REGISTRIES` lists the registries of recal's own kinds (imported lazily: asking for it
imports the modules that fill them, none of which imports torch).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

__all__ = [
    "LazyEntry",
    "MissingDependencyError",
    "NAME_PATTERN",
    "Registry",
    "UnknownNameError",
    "all_registries",
]

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.:+-]*")
"""What a registered name looks like: lower case, starting with a letter or digit."""

_NO_ENTRY: Any = object()


class UnknownNameError(KeyError, ValueError):
    """A name no entry is registered under. A ``KeyError`` (a failed lookup) and a ``ValueError``
    (a bad argument value), so callers catching either keep working; the message suggests the
    closest known names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(ImportError):
    """A lazy registry entry could not be imported; the message says what to install."""


@dataclass(frozen=True)
class LazyEntry:
    """An entry named by ``"module:object"`` (dots after the colon reach attributes), imported
    on first use. ``install`` is the pip requirement that provides it (e.g. ``recal[vllm]``)."""

    target: str
    install: str | None = None

    def __post_init__(self) -> None:
        module, sep, attr = self.target.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"a lazy entry is 'module:object', got {self.target!r}")

    def resolve(self, kind: str, name: str) -> Any:
        """Import the module and return the object; a failed import becomes
        :class:`MissingDependencyError` naming ``install``."""
        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            hint = (f"install it with `pip install '{self.install}'`" if self.install
                    else "is recal installed completely?")
            raise MissingDependencyError(
                f"{kind} {name!r} needs {exc.name or module_name!r}, which could not be imported "
                f"({exc}): {hint}") from exc
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ImportError(f"{kind} {name!r}: {module_name} has no {attr!r} "
                                  f"(registered as {self.target!r})") from None
        return obj


def _first_line(text: str | None) -> str:
    """The first paragraph of ``text`` on one line (a help line)."""
    if not text or not text.strip():
        return ""
    paragraph = inspect.cleandoc(text).split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def _default_help(entry: object) -> str:
    """A one-line help for an entry given none: its ``description``, or the first paragraph of
    its own docstring (classes and functions only: not one inherited or an instance's class's)."""
    description = getattr(entry, "description", None)
    if isinstance(description, str) and description.strip():
        return _first_line(description)
    if inspect.isclass(entry):
        return _first_line(entry.__dict__.get("__doc__"))
    if inspect.isroutine(entry):
        return _first_line(entry.__doc__)
    return ""


def _same_definition(old: object, new: object) -> bool:
    """Whether ``new`` is ``old`` defined again (a reloaded module), not a different object."""
    if old is new:
        return True
    named = (inspect.isclass(old) or inspect.isroutine(old)) and type(old) is type(new)
    return named and all(getattr(old, a, None) == getattr(new, a, None)
                         for a in ("__module__", "__qualname__"))


class Registry(Generic[T]):
    """Named entries of one kind (backends, datasets, collapsing functions, ...).

    ``register(name, entry)`` registers an object; ``register(name)`` returns a decorator that
    registers what it decorates; ``register_lazy(name, "module:object")`` registers an entry
    imported on first :meth:`get`. Iterating yields the names, sorted.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        """What an entry is, in words ("collapsing function"); errors and listings use it."""
        self._entries: dict[str, T | LazyEntry] = {}
        self._help: dict[str, str] = {}
        self._lazy: dict[str, LazyEntry] = {}  # kept after import: what the entry came from

    # ------------------------------------------------------------------ registering

    def _check_name(self, name: str) -> str:
        """``name`` when it matches :data:`NAME_PATTERN`; ``ValueError`` otherwise."""
        if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
            raise ValueError(f"{self.kind} name must be lower case letters, digits and "
                             f"'_-.:+' (starting with a letter or digit), got {name!r}")
        return name

    def _check_new(self, name: str, entry: object = _NO_ENTRY) -> str:
        """``name`` when it is well formed and free (or taken by this very ``entry`` defined
        again, as a module reload does); ``ValueError`` otherwise."""
        self._check_name(name)
        if name in self._entries and not _same_definition(self._entries[name], entry):
            raise ValueError(f"{self.kind} {name!r} is already registered")
        return name

    @overload
    def register(self, name: str, *, help: str | None = None) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T, *, help: str | None = None) -> T: ...

    def register(self, name: str, entry: Any = _NO_ENTRY, *,
                 help: str | None = None) -> Any:
        """Register ``entry`` as ``name`` and return it; without ``entry``, a decorator that
        registers the decorated object. ``help`` defaults to the entry's ``description`` or the
        first line of its docstring. Bad names and names already taken raise ``ValueError``."""
        if entry is _NO_ENTRY:
            self._check_name(name)  # a bad name fails where it is written, not at the class

            def wrap(obj: T) -> T:
                return self.register(name, obj, help=help)

            return wrap
        key = self._check_new(name, entry)
        if isinstance(entry, LazyEntry):
            raise TypeError("register a lazy entry with register_lazy(name, 'module:object')")
        self._entries[key] = entry
        self._help[key] = _first_line(help) if help is not None else _default_help(entry)
        return entry

    def decorator(self, name: str, *, help: str | None = None) -> Callable[[T], T]:
        """``@registry.decorator("name")``: the same as ``@registry.register("name")``."""
        return self.register(name, help=help)

    def register_lazy(self, name: str, target: str, *, help: str,
                      install: str | None = None) -> None:
        """Register ``"module:object"`` as ``name``, imported on the first :meth:`get`.
        ``install`` is what to ``pip install`` when the import fails (e.g. ``recal[vllm]``)."""
        key = self._check_new(name)
        self._entries[key] = self._lazy[key] = LazyEntry(target, install)
        self._help[key] = _first_line(help)

    # ------------------------------------------------------------------ looking up

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (any case), importing a lazy entry the first time.

        Unknown names raise :class:`UnknownNameError` (a ``KeyError`` and a ``ValueError``)
        naming the closest known names ("did you mean") and listing all; a lazy entry whose
        import fails raises :class:`MissingDependencyError`.
        """
        key = name.lower() if isinstance(name, str) else name
        if key not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        entry = self._entries[key]
        if isinstance(entry, LazyEntry):
            resolved: T = entry.resolve(self.kind, key)
            self._entries[key] = resolved
            if not self._help[key]:
                self._help[key] = _default_help(resolved)
            return resolved
        return entry

    def unknown_message(self, name: object) -> str:
        """``unknown <kind> 'nam'; did you mean 'name'? (known: ...)``: the text of the
        :class:`UnknownNameError` that :meth:`get` raises."""
        key = name.lower() if isinstance(name, str) else str(name)
        close = difflib.get_close_matches(key, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(self._entries)) or "none"
        return f"unknown {self.kind} {name!r}{hint} (known: {known})"

    def help(self, name: str) -> str:
        """The one-line help of ``name`` (no import: a lazy entry shows its registered help)."""
        key = name.lower()
        if key not in self._help:
            raise UnknownNameError(self.unknown_message(name))
        return self._help[key]

    def is_lazy(self, name: str) -> bool:
        """Whether ``name`` is a lazy entry that no :meth:`get` has imported yet."""
        return isinstance(self._entries.get(name.lower()), LazyEntry)

    def lazy_target(self, name: str) -> LazyEntry | None:
        """The ``"module:object"`` entry ``name`` was registered as (imported or not), else None."""
        return self._lazy.get(name.lower())

    def describe(self) -> list[tuple[str, str]]:
        """(name, help) for every entry, sorted by name, importing nothing: for CLI listings."""
        return sorted(self._help.items())

    def format_help(self, indent: str = "  ") -> str:
        """One line per entry, ``name  help`` in aligned columns, for CLI help and errors."""
        rows = self.describe()
        width = max((len(name) for name, _ in rows), default=0)
        return "\n".join(f"{indent}{name:<{width}}  {text}".rstrip() for name, text in rows)

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs sorted by name; lazy entries are imported (see :meth:`get`)."""
        return [(name, self.get(name)) for name in sorted(self._entries)]

    def __repr__(self) -> str:
        return f"<Registry of {len(self)} {self.kind} entries: {', '.join(self)}>"


def all_registries() -> dict[str, Registry[Any]]:
    """recal's registries by kind, for listings and contract tests: ``backend``, ``packaged
    model``, ``dataset``, ``collapser``, ``scorer``, ``recalibrator``, ``repair method``,
    ``metric``.

    Imports the light modules that fill them (no torch); lazy entries stay unimported.
    """
    from recal.calibrators import RECALIBRATORS
    from recal.confidence import SCORERS
    from recal.data import DATASETS
    from recal.metrics import METRIC_SPECS
    from recal.models import BACKENDS, PACKAGED_MODELS
    from recal.repairs import REPAIR_METHODS
    from recal.semantic import COLLAPSERS

    return {
        "backend": BACKENDS,
        "packaged model": PACKAGED_MODELS,
        "dataset": DATASETS,
        "collapser": COLLAPSERS,
        "scorer": SCORERS,
        "recalibrator": RECALIBRATORS,
        "repair method": REPAIR_METHODS,
        "metric": METRIC_SPECS,
    }


def __getattr__(name: str) -> Any:
    if name == "REGISTRIES":  # computed on first use: filling the registries imports their kinds
        return all_registries()
    raise AttributeError(f"module 'recal.registry' has no attribute {name!r}")
