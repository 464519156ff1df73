"""YAML recipes: a whole flow (measure, recalibrate, synth, bench) in one file.

    # recipes/measure.yaml
    flow: measure
    include: [common.yaml]        # read first; this file wins over it
    model: smollm2-135m-instruct
    dataset: builtin
    sampling:
      samples: 20

    recipe = load_recipe("recipes/measure.yaml", overrides=["sampling.samples=50"])
    recipe.config          # a MeasureFlow dataclass, checked field by field

Every command that reads a recipe reads it here: ``recal run FILE`` (any flow) and
``recal synth --recipe FILE`` (``load_recipe(FILE, flow="synth", overrides=[("seed", 3)])``:
the command's options are overrides, and a file without ``flow:`` is taken as the synth flow).

Files are read with ``yaml.safe_load`` (no tags, no code). Precedence, highest first: the
command line (``--set key.sub=value``, the value read as YAML), the recipe, its ``include:`` files
in the order listed (each may include others; paths are relative to the including file), the
flow's defaults. Mappings merge key by key; lists and scalars are replaced whole. Every error names
the file (or the command line) that set the offending key, and the key's dotted path.

The flows, their config dataclasses and what they run live in :mod:`recal.flows`; this module
only reads, merges and checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["Recipe", "RecipeError", "load_recipe", "build_config", "parse_override"]

COMMAND_LINE = "the command line"


class RecipeError(ValueError):
    """A recipe is malformed: the message names the file and the key."""


@dataclass(frozen=True)
class Recipe:
    flow: str
    """The flow's name (see :data:`recal.flows.FLOWS`)."""
    config: Any
    """The flow's config dataclass, every field checked."""
    source: Path | None
    """The recipe file (None for a recipe built from a mapping)."""
    raw: dict[str, Any]
    """The merged mapping the config was built from (for records and reports)."""

    def resolved(self) -> dict[str, Any]:
        """Every field, defaults included, as the flow will see it: plain YAML-able values
        (``recal run --show`` prints this)."""
        def plain(value: object) -> object:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return [plain(v) for v in value] if isinstance(value, list | tuple) else value

        return {"flow": self.flow, **plain(dataclasses.asdict(self.config))}  # type: ignore[dict-item]


# --------------------------------------------------------------------------- reading and merging


def _read(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged mapping of ``path`` and its includes, and which file set each dotted key."""
    import yaml

    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise RecipeError(f"{chain[-1]}: include: the recipes include each other ({cycle})")
    if not path.is_file():
        where = f"{chain[-1]}: include: " if chain else ""
        raise RecipeError(f"{where}recipe file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise RecipeError(f"{path}: not valid YAML{at}: {problem}") from None
    except UnicodeDecodeError as err:
        raise RecipeError(f"{path}: not a UTF-8 text file ({err.reason})") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of keys to values, "
                          f"got {type(doc).__name__}")
    bad = [k for k in doc if not isinstance(k, str)]
    if bad:
        raise RecipeError(f"{path}: keys must be strings, got {bad[0]!r}")

    includes = doc.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise RecipeError(f"{path}: include: expected a file name or a list of file names, "
                          f"got {includes!r}")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in includes:
        sub, sub_origin = _read((path.parent / name).resolve(), (*chain, path))
        _merge(merged, origin, sub, sub_origin)
    _merge(merged, origin, doc, _origins(doc, str(path)))
    return merged, origin


def _origins(doc: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in doc.items():
        dotted = prefix + str(key)
        out[dotted] = source
        if isinstance(value, Mapping):
            out.update(_origins(value, source, dotted + "."))
    return out


def _merge(into: dict[str, Any], origin: dict[str, str], doc: Mapping[str, Any],
           doc_origin: Mapping[str, str], prefix: str = "") -> None:
    for key, value in doc.items():
        dotted = prefix + key
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], origin, value, doc_origin, dotted + ".")
            origin[dotted] = doc_origin.get(dotted, origin.get(dotted, ""))
        else:
            for stale in [k for k in origin if k.startswith(dotted + ".")]:
                del origin[stale]
            into[key] = _copy(value)
            origin.update({k: v for k, v in doc_origin.items()
                           if k == dotted or k.startswith(dotted + ".")})


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """``"sampling.samples=50"`` -> ``("sampling.samples", 50)``; the value is read as YAML."""
    import yaml

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"{COMMAND_LINE}: override {text!r} must look like key=value or "
                          "section.key=value")
    try:
        return key, yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise RecipeError(f"{COMMAND_LINE}: {key}: the value {value!r} is not valid "
                          "YAML") from None


def _apply_override(merged: dict[str, Any], origin: dict[str, str], key: str,
                    value: Any) -> None:
    parts = key.split(".")
    node = merged
    for i, part in enumerate(parts[:-1]):
        if part not in node:
            origin[".".join(parts[:i + 1])] = COMMAND_LINE
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"{COMMAND_LINE}: {key}: {'.'.join(parts[:i + 1])} is not a "
                              "section, so it has no keys")
        node = child
    node[parts[-1]] = value
    for stale in [k for k in origin if k.startswith(key + ".")]:
        del origin[stale]
    origin[key] = COMMAND_LINE
    origin.update(_origins(value, COMMAND_LINE, key + ".") if isinstance(value, Mapping) else {})


# --------------------------------------------------------------------------- checking


def _where(origin: Mapping[str, str], dotted: str) -> str:
    """The file that set ``dotted`` (or its closest set parent)."""
    key = dotted
    while key:
        if key in origin:
            return origin[key]
        key = key.rpartition(".")[0]
    return next(iter(origin.values()), "the recipe")


def _fail(origin: Mapping[str, str], dotted: str, message: str) -> RecipeError:
    return RecipeError(f"{_where(origin, dotted)}: {dotted}: {message}")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _coerce(tp: Any, value: Any, dotted: str, origin: Mapping[str, str]) -> Any:
    """Check ``value`` against the annotation ``tp``; lists become tuples, ints may be floats."""
    o = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if o in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, dotted, origin)
            except RecipeError as err:
                errors.append(err)
        raise errors[0] if len(errors) == 1 else _fail(
            origin, dotted, f"expected one of {_type_name(tp)}, got {_describe(value)}")
    if o is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _fail(origin, dotted, f"expected one of {', '.join(map(repr, args))}, got "
                                    f"{value!r}{hint}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _fail(origin, dotted, f"expected a section (a mapping of keys), got "
                                        f"{_describe(value)}")
        return build_config(tp, value, origin=origin, prefix=dotted + ".")
    if o is tuple or o is list:
        if not isinstance(value, list | tuple):
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                value = [value]  # a single value where a list is expected: a list of one
            else:
                raise _fail(origin, dotted, f"expected a list, got {_describe(value)}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{dotted}[{i}]", origin) for i, v in enumerate(value)]
        return tuple(items) if o is tuple else items
    if o is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(origin, dotted, f"expected a mapping, got {_describe(value)}")
        return dict(value)
    return _coerce_scalar(tp, value, dotted, origin)


_SCALARS: dict[type, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}
"""What a recipe value of each scalar type must be, and how an error names it."""


def _coerce_scalar(tp: Any, value: Any, dotted: str, origin: Mapping[str, str]) -> Any:
    """Check a scalar ``value`` against ``tp`` (an int is a float where a float is expected)."""
    if tp not in _SCALARS:
        raise TypeError(f"recipes cannot fill a field of type {tp!r} ({dotted})")  # a recal bug
    accepts, expected = _SCALARS[tp]
    if not accepts(value):
        raise _fail(origin, dotted, f"expected {expected}, got {_describe(value)}")
    return float(value) if tp is float else value


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return " or ".join(getattr(a, "__name__", str(a)) for a in args)


def build_config(cls: type, mapping: Mapping[str, Any], *,
                 origin: Mapping[str, str] | None = None, prefix: str = "") -> Any:
    """``cls(**mapping)``, with every key and value checked against ``cls``'s type hints.

    Unknown keys are refused with the closest known names; values of the wrong type are refused
    by their dotted key; a ``ValueError`` raised by the dataclass's own checks (its
    ``__post_init__``) is reported against the file that set the section.
    """
    origin = origin if origin is not None else {}
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in mapping.items():
        dotted = prefix + str(key)
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise _fail(origin, dotted, f"unknown key; {hint}(known here: "
                                        f"{', '.join(sorted(known))})")
        kwargs[key] = _coerce(hints[key], value, dotted, origin)
    missing = [name for name, f in known.items()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and name not in kwargs]
    if missing:
        raise _fail(origin, prefix.rstrip(".") or missing[0],
                    f"missing required key(s) {', '.join(prefix + m for m in missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        section = prefix.rstrip(".")
        # Blame whoever set the key the message starts with ("seed must be ..."), else the
        # section (or, at the top level, the first key).
        first = re.match(r"\w+", message)
        named = first.group() if first and first.group() in kwargs else None
        key = prefix + named if named else section or next(iter(kwargs), "")
        where = _where(origin, key)
        raise RecipeError(f"{where}: {section + ': ' if section else ''}{message}") from None


# --------------------------------------------------------------------------- the entry point


def load_recipe(path: str | Path | None = None, *,
                overrides: Sequence[str | tuple[str, Any]] = (),
                mapping: Mapping[str, Any] | None = None, flow: str | None = None) -> Recipe:
    """Read, merge and check a recipe file (or a ``mapping``), then apply ``overrides``.

    ``overrides`` are ``key=value`` strings (``sampling.samples=50``, the value read as YAML) or
    ``(key, value)`` pairs (a command's typed options), highest precedence; either kind is named
    "the command line" in errors. ``flow``: the flow the caller runs; a recipe without a
    ``flow:`` key is taken as that flow, and one naming another flow is refused.
    """
    if (path is None) == (mapping is None):
        raise ValueError("give a recipe path or a mapping, not both or neither")
    if path is not None:
        source: Path | None = Path(path)
        merged, origin = _read(Path(path).resolve(), ())
        # Name files as the user gave them where possible (relative paths read better).
        origin = {k: (str(source) if v == str(Path(path).resolve()) else v)
                  for k, v in origin.items()}
    else:
        source = None
        merged = _copy(dict(mapping or {}))
        origin = _origins(merged, "the recipe")
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _apply_override(merged, origin, key, value)
    name = _flow_name(merged, origin, source, flow)
    from recal.flows import FLOWS

    config = build_config(FLOWS.get(name).config, merged, origin=origin)
    return Recipe(name.lower(), config, source, {"flow": name, **merged})


def _flow_name(merged: dict[str, Any], origin: Mapping[str, str], source: Path | None,
               expected: str | None) -> str:
    """Pop the ``flow:`` key of ``merged`` and check it names a flow (``expected``, if given)."""
    from recal.flows import FLOWS

    name = merged.pop("flow", None)
    where = origin.get("flow", str(source) if source else "the recipe")
    if name is None and expected is not None:
        return expected
    if name is None:
        raise RecipeError(f"{where}: flow: missing; name the flow to run (one of "
                          f"{', '.join(FLOWS)})")
    if not isinstance(name, str):
        raise RecipeError(f"{where}: flow: expected a flow name, got {_describe(name)}")
    try:
        FLOWS.get(name)
    except KeyError as err:
        raise RecipeError(f"{where}: flow: {err.args[0]}") from None
    if expected is not None and name.lower() != expected:
        raise RecipeError(f"{where}: flow: this command runs the {expected} flow, got {name!r} "
                          f"(run it with `recal run {source or 'RECIPE'}`)")
    return name
