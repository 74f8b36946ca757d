"""Paths: which context a statement runs in, and reading and writing what its paths name.

Everything knowable without data is checked here (whether a path exists in
the context, may be set, may be indexed), so at run time only data-dependent
failures remain: ``EvalError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay import attrs
from relay.ottl.contexts import BY_SIGNAL, CONTEXTS, PREFIXES, EvalError, Item, type_name
from relay.ottl.parse import Path, StatementError, paths_in, quote
from relay.signals import Signal

Getter = Callable[[Item], Any]


@dataclass(frozen=True)
class Scope:
    """Where a statement is compiled: its context, and whether that context was inferred.

    An inferred context came from path prefixes, so (as in the collector) every
    path must then carry one; an unprefixed path would be ambiguous.
    """

    context: str
    inferred: bool = False


@dataclass(frozen=True)
class Accessor:
    get: Getter
    set: Callable[[Item, Any], None] | None = None
    # The attribute list itself, for the map editors; only for an unindexed map path.
    kvs: Callable[[Item], Any] | None = None
    read_only_reason: str = "it is read-only"


def infer_context(trees: list, signal: Signal) -> str:
    available = BY_SIGNAL[signal]
    named = {PREFIXES[p.names[0]] for tree in trees for p in paths_in(tree)
             if len(p.names) > 1 and p.names[0] in PREFIXES}
    foreign = sorted(named - set(available))
    if foreign:
        raise StatementError(f"{foreign[0]} paths cannot be used with {signal.value} "
                             f"(contexts: {', '.join(available)})")
    if not named:
        raise StatementError("cannot infer the context: no path starts with one of "
                             f"{', '.join(available)} (write e.g. {available[-1]}.attributes, or give a context)")
    return max(named, key=available.index)


def resolve(path: Path, scope: Scope) -> Accessor:
    own = CONTEXTS[scope.context]
    prefix = PREFIXES.get(path.names[0]) if len(path.names) > 1 else None
    if prefix is not None:
        if prefix != own.name and prefix not in own.parents:
            raise StatementError(f'path "{path}" belongs to the {prefix} context, which {own.name} statements '
                                 "cannot reach")
        target, names = CONTEXTS[prefix], path.names[1:]
    elif scope.inferred:
        raise StatementError(f'path "{path}" needs a context prefix (e.g. {own.name}.{path}) when the context '
                             "is inferred")
    else:
        target, names = own, path.names
    field = target.fields.get(".".join(names))
    if field is None:
        hint = ""
        if names[0] in target.fields and target.fields[names[0]].kind == "map" and len(names) == 2:
            hint = f'; to read a key write {names[0]}["{names[1]}"]'
        raise StatementError(f'unknown path "{path}" ({target.name} paths: {", ".join(sorted(target.fields))}){hint}')
    locate = target.locate
    if field.kind == "map":
        return _map_accessor(path, field.get, locate)
    if field.kind == "any":
        return _any_accessor(path, field.get, locate)
    if path.keys:
        raise StatementError(f'path "{path}" cannot be indexed')
    read, write = field.get, field.set
    return Accessor(lambda item: read(locate(item)),
                    None if write is None else (lambda item, value: write(locate(item), value)))


def _map_accessor(path: Path, read: Callable, locate: Callable) -> Accessor:
    def kvs(item):
        return read(locate(item))

    if not path.keys:
        def set_all(item, value):
            if not isinstance(value, dict):
                raise EvalError(f"{path} takes a map, got {type_name(value)}")
            target = kvs(item)
            del target[:]
            for key, inner in value.items():
                put(target, key, inner, path)
        return Accessor(lambda item: {kv.key: attrs.to_python(kv.value) for kv in kvs(item)}, set_all, kvs)
    first, rest = path.keys[0], path.keys[1:]
    if not isinstance(first, str):
        raise StatementError(f'path "{path}": attribute keys are strings, got {first}')
    if rest:
        return Accessor(lambda item: _index(attrs.get(kvs(item), first), rest, path),
                        read_only_reason="setting a nested key is not supported")
    return Accessor(lambda item: attrs.get(kvs(item), first),
                    lambda item, value: put(kvs(item), first, value, path))


def _any_accessor(path: Path, read: Callable, locate: Callable) -> Accessor:
    keys = path.keys

    def set_(item, value):
        try:
            attrs.fill(read(locate(item)), value)
        except TypeError as error:
            raise EvalError(f"{path}: {error}") from None

    return Accessor(lambda item: _index(attrs.to_python(read(locate(item))), keys, path),
                    None if keys else set_, read_only_reason="setting a nested key is not supported")


def put(kvs, key: str, value: Any, path) -> None:
    try:
        attrs.put(kvs, key, value)
    except TypeError as error:  # a nil inside a list or map read from elsewhere
        raise EvalError(f"{path}: {error}") from None


def _index(value: Any, keys: tuple, path: Path) -> Any:
    for key in keys:
        if value is None:
            return None
        if isinstance(key, str) and isinstance(value, dict):
            value = value.get(key)
        elif isinstance(key, int) and isinstance(value, list):
            if not -len(value) <= key < len(value):
                raise EvalError(f"{path}: index {key} is out of range for a list of {len(value)}")
            value = value[key]
        else:
            raise EvalError(f"{path}: cannot index a {type_name(value)} with {quote(key)}")
    return value
