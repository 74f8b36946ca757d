"""Decode plain YAML data into Config dataclasses, collecting every problem.

Supported field types: str, int, float, bool, ``Duration`` (seconds, written
"5s", "200ms", "1m" or a number), ``Literal[...]``, ``list[T]``,
``dict[str, T]``, ``T | None`` and nested dataclasses. Unknown keys, missing
required keys and wrong types are problems carrying their key path.

A field made with ``advisory(...)`` is a collector setting the relay accepts but has no
use for (the collector itself treats it as a hint, or the relay does the job elsewhere).
Each one a config sets is noted, with its key path, in the list ``noting_advisories()``
yields, so that the service can say once at start that it has no effect here.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import re
import types
import typing
from typing import Any, Literal

from relay.config.expand import Expanded, Unresolved
from relay.errors import Problem


class Duration(float):
    """Seconds; the YAML may say "5s", "250ms", "1m30s" or give a number of seconds."""


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f'invalid duration "{text}" (use e.g. "5s", "200ms", "1m")')
    return total


@dataclasses.dataclass(frozen=True)
class Advisory:
    """A setting that was accepted and has no effect here, and why."""

    path: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return "::".join(self.path)


# The advisories of the load under way; None outside one (a bare decode notes nothing).
_ADVISORIES: contextvars.ContextVar[list[Advisory] | None] = contextvars.ContextVar("advisories", default=None)


def advisory(reason: str, default: Any = dataclasses.MISSING, default_factory: Any = dataclasses.MISSING):
    """A dataclass field that is accepted and noted as having no effect here."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"advisory": reason})


@contextlib.contextmanager
def noting_advisories():
    """Collect the advisory settings every decode inside this block meets."""
    notes: list[Advisory] = []
    token = _ADVISORIES.set(notes)
    try:
        yield notes
    finally:
        _ADVISORIES.reset(token)


def note_advisory(path: tuple[str, ...], reason: str) -> None:
    """For a setting that is not a field of its own (a key inside a free-form mapping)."""
    notes = _ADVISORIES.get()
    if notes is not None:
        notes.append(Advisory(tuple(path), reason))


# The problem of a value whose environment expansion failed: it fails the enclosing
# dataclass (so no validate() runs on a made-up value) but was already reported by
# the expansion, so decode() drops it. Compared by identity.
_ALREADY_REPORTED = "(already reported by environment expansion)"


def decode(cls: type, raw: Any, path: tuple[str, ...] = ()) -> tuple[Any, list[Problem]]:
    """(instance or None, problems) for a dataclass ``cls`` from ``raw``.

    None with no problems means an ``Unresolved`` value (from ``expand``) was met:
    its problem is the expansion's.
    """
    value, problems = _decode(cls, raw, path)
    return value, [p for p in problems if p.message is not _ALREADY_REPORTED]


_TYPE_NAMES = {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer",
               float: "number", type(None): "null"}


def _type_name(value: Any) -> str:
    # By the MRO, so that str subclasses (``Expanded``, from the environment) read "string".
    for base in type(value).__mro__:
        if base in _TYPE_NAMES:
            return _TYPE_NAMES[base]
    return type(value).__name__


def _decode(tp: Any, raw: Any, path: tuple[str, ...]) -> tuple[Any, list[Problem]]:
    if isinstance(raw, Unresolved):
        return None, [Problem(path, _ALREADY_REPORTED)]
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, raw, path)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)][0]
        # A present-but-empty section ("grpc:") means "on, with defaults", as in the collector.
        if raw is None and type(None) in args and not dataclasses.is_dataclass(inner):
            return None, []
        return _decode(inner, raw, path)
    if origin is Literal:
        if isinstance(raw, str) and raw in args:
            return str(raw), []
        choices = ", ".join(str(a) if a != "" else '""' for a in args)
        return None, [Problem(path, f'"{raw}" is not one of: {choices}')]
    if origin is list:
        if not isinstance(raw, list):
            return None, [Problem(path, f"expected a list, got {_type_name(raw)}")]
        items, problems = [], []
        for index, item in enumerate(raw):
            value, sub = _decode(args[0], item, path + (str(index),))
            items.append(value)
            problems += sub
        return items, problems
    if origin is dict:
        if raw is None:
            return {}, []
        if not isinstance(raw, dict):
            return None, [Problem(path, f"expected a mapping, got {_type_name(raw)}")]
        out, problems = {}, []
        for key, item in raw.items():
            value, sub = _decode(args[1], item, path + (str(key),))
            out[str(key)] = value
            problems += sub
        return out, problems
    return _decode_scalar(tp, raw, path)


def _decode_scalar(tp: Any, raw: Any, path: tuple[str, ...]) -> tuple[Any, list[Problem]]:
    # A free-form (Any) value keeps the environment's text as written: "0042" stays a string.
    if isinstance(raw, Expanded) and tp is not str and tp is not Any:
        raw = _from_environment(raw)
    if tp is Duration:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return Duration(raw), []
        if isinstance(raw, str):
            try:
                return Duration(parse_duration(raw)), []
            except ValueError as error:
                return None, [Problem(path, str(error))]
        return None, [Problem(path, f"expected a duration, got {_type_name(raw)}")]
    if tp is str:
        if isinstance(raw, str):
            return str(raw), []
        return None, [Problem(path, f"expected a string, got {_type_name(raw)}")]
    if tp is bool:
        if isinstance(raw, bool):
            return raw, []
        return None, [Problem(path, f"expected a boolean, got {_type_name(raw)}")]
    if tp is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw, []
        return None, [Problem(path, f"expected an integer, got {_type_name(raw)}")]
    if tp is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw), []
        return None, [Problem(path, f"expected a number, got {_type_name(raw)}")]
    if tp is Any:
        return raw, []
    raise TypeError(f"unsupported config field type {tp!r}")


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _from_environment(text: str) -> Any:
    # Plain decimal numbers only: "inf", "nan" or "1_000" from the environment stay strings.
    stripped = text.strip()
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if _NUMBER.fullmatch(stripped):
        return float(stripped) if any(c in stripped for c in ".eE") else int(stripped)
    return text


def _decode_dataclass(cls: type, raw: Any, path: tuple[str, ...]) -> tuple[Any, list[Problem]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [Problem(path, f"expected a mapping, got {_type_name(raw)}")]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    problems: list[Problem] = []
    for key in raw:
        if key not in fields:
            valid = ", ".join(sorted(fields)) or "none"
            problems.append(Problem(path + (str(key),), f"unknown key (valid keys: {valid})"))
    values = {}
    for name, field in fields.items():
        if name in raw:
            value, sub = _decode(hints[name], raw[name], path + (name,))
            problems += sub
            if not sub:
                values[name] = value
            if "advisory" in field.metadata:
                note_advisory(path + (name,), field.metadata["advisory"])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.append(Problem(path + (name,), "required key is missing"))
    if problems:
        return None, problems
    notes = _ADVISORIES.get()
    before = len(notes) if notes is not None else 0
    instance = cls(**values)
    # Every validate() of the class and its bases runs, so that settings a config inherits
    # (an exporter's queue, retry and timeout) are checked without the subclass calling them.
    for klass in reversed(cls.__mro__):
        validate = vars(klass).get("validate")
        if validate is not None:
            problems += [p.under(*path) for p in validate(instance)]
    if notes is not None:
        # A class that decodes or checks part of itself (a free-form section) notes paths
        # relative to itself, as its problems are: put them under this one.
        notes[before:] = [Advisory(path + note.path, note.reason) for note in notes[before:]]
    return instance, problems
