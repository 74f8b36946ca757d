"""Turn parsed OTTL into closures over an ``Item``, once, when the config is validated.

Everything knowable without data is checked here (the editor and its
arguments, whether a path exists in the context and may be set, enum names,
regexes), so at run time only data-dependent failures remain: ``EvalError``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import Any

from relay import attrs
from relay.processors.transform.contexts import BY_SIGNAL, CONTEXTS, ENUMS, PREFIXES, EvalError, Item, type_name
from relay.processors.transform.ottl import (
    And,
    Call,
    Compare,
    Const,
    EnumRef,
    ListOf,
    Not,
    Or,
    Path,
    Statement,
    StatementError,
    Value,
    paths_in,
    quote,
)
from relay.signals import Signal

Getter = Callable[[Item], Any]
Predicate = Callable[[Item], bool]


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


# --- contexts and paths -------------------------------------------------------------------------

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
                _put(target, key, inner, path)
        return Accessor(lambda item: {kv.key: attrs.to_python(kv.value) for kv in kvs(item)}, set_all, kvs)
    first, rest = path.keys[0], path.keys[1:]
    if not isinstance(first, str):
        raise StatementError(f'path "{path}": attribute keys are strings, got {first}')
    if rest:
        return Accessor(lambda item: _index(attrs.get(kvs(item), first), rest, path),
                        read_only_reason="setting a nested key is not supported")
    return Accessor(lambda item: attrs.get(kvs(item), first),
                    lambda item, value: _put(kvs(item), first, value, path))


def _any_accessor(path: Path, read: Callable, locate: Callable) -> Accessor:
    keys = path.keys

    def set_(item, value):
        try:
            attrs.fill(read(locate(item)), value)
        except TypeError as error:
            raise EvalError(f"{path}: {error}") from None

    return Accessor(lambda item: _index(attrs.to_python(read(locate(item))), keys, path),
                    None if keys else set_, read_only_reason="setting a nested key is not supported")


def _put(kvs, key: str, value: Any, path: Path) -> None:
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


# --- values and conditions ----------------------------------------------------------------------

def value_getter(node: Value, scope: Scope) -> Getter:
    if isinstance(node, Const):
        constant = node.value
        return lambda item: constant
    if isinstance(node, EnumRef):
        if node.name not in ENUMS:
            raise StatementError(f'unknown enum "{node.name}"')
        number = ENUMS[node.name]
        return lambda item: number
    if isinstance(node, Path):
        return resolve(node, scope).get
    getters = [value_getter(inner, scope) for inner in node.items]
    return lambda item: [get(item) for get in getters]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    # OTTL compares ints with floats by value, but never a bool with a number, nor nil with anything else.
    if _number(a) and _number(b):
        return a == b
    return type(a) is type(b) and a == b


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def ordered(a, b):
        if _number(a) and _number(b):
            return compare(a, b)
        # Mixed or unordered types (nil, maps, lists) are simply not ordered: false, not an error.
        return type(a) is type(b) and isinstance(a, (str, bool, bytes)) and compare(a, b)
    return ordered


_COMPARISONS = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _ordering(operator.lt), "<=": _ordering(operator.le),
    ">": _ordering(operator.gt), ">=": _ordering(operator.ge),
}


def predicate(node, scope: Scope) -> Predicate:
    if isinstance(node, Const):
        constant = bool(node.value)
        return lambda item: constant
    if isinstance(node, Compare):
        left, right = value_getter(node.left, scope), value_getter(node.right, scope)
        compare = _COMPARISONS[node.op]
        return lambda item: compare(left(item), right(item))
    if isinstance(node, Not):
        inner = predicate(node.operand, scope)
        return lambda item: not inner(item)
    parts = [predicate(operand, scope) for operand in node.operands]
    if isinstance(node, And):
        return reduce(lambda a, b: lambda item: a(item) and b(item), parts)
    assert isinstance(node, Or)
    return reduce(lambda a, b: lambda item: a(item) or b(item), parts)


# --- editors ------------------------------------------------------------------------------------

def _describe(node: Value) -> str:
    if isinstance(node, Const):
        return "nil" if node.value is None else quote(node.value)
    if isinstance(node, ListOf):
        return "a list"
    return str(node) if isinstance(node, Path) else node.name


def _arguments(call: Call, *names: str) -> None:
    if len(call.args) != len(names):
        raise StatementError(f"{call.name} takes {len(names)} arguments ({', '.join(names)}), "
                             f"got {len(call.args)}")


def _target(call: Call, scope: Scope) -> Accessor:
    node = call.args[0]
    if not isinstance(node, Path):
        raise StatementError(f"the first argument of {call.name} must be a path, got {_describe(node)}")
    accessor = resolve(node, scope)
    if accessor.set is None:
        raise StatementError(f'path "{node}" cannot be set: {accessor.read_only_reason}')
    return accessor


def _map_target(call: Call, scope: Scope) -> Callable[[Item], Any]:
    accessor = _target(call, scope)
    if accessor.kvs is None:
        raise StatementError(f'the first argument of {call.name} must be a map such as attributes, '
                             f'got "{call.args[0]}"')
    return accessor.kvs


def _string_argument(call: Call, index: int, what: str) -> str:
    node = call.args[index]
    if not (isinstance(node, Const) and isinstance(node.value, str)):
        raise StatementError(f"{what} of {call.name} must be a string literal, got {_describe(node)}")
    return node.value


def _set(call: Call, scope: Scope) -> Callable[[Item], None]:
    _arguments(call, "target", "value")
    write = _target(call, scope).set
    read = value_getter(call.args[1], scope)

    def run(item):
        value = read(item)
        if value is not None:  # OTTL: setting nil, e.g. a missing attribute, does nothing
            write(item, value)
    return run


def _deleting(kvs: Callable[[Item], Any], doomed: Callable[[str], bool]) -> Callable[[Item], None]:
    return lambda item: attrs.delete(kvs(item), doomed)


def _delete_key(call: Call, scope: Scope) -> Callable[[Item], None]:
    _arguments(call, "target", "key")
    kvs = _map_target(call, scope)
    key = _string_argument(call, 1, "the key")
    return _deleting(kvs, lambda name: name == key)


def _keep_keys(call: Call, scope: Scope) -> Callable[[Item], None]:
    _arguments(call, "target", "keys")
    kvs = _map_target(call, scope)
    node = call.args[1]
    if not isinstance(node, ListOf) or not all(isinstance(i, Const) and isinstance(i.value, str) for i in node.items):
        raise StatementError(f'the keys of keep_keys must be a list of strings like ["a", "b"], '
                             f"got {_describe(node)}")
    keep = frozenset(i.value for i in node.items)
    return _deleting(kvs, lambda name: name not in keep)


def _pattern(call: Call) -> re.Pattern:
    text = _string_argument(call, 1, "the pattern")
    try:
        return re.compile(text)
    except re.error as error:
        raise StatementError(f"invalid regular expression {quote(text)}: {error}") from None


def _delete_matching_keys(call: Call, scope: Scope) -> Callable[[Item], None]:
    _arguments(call, "target", "pattern")
    kvs = _map_target(call, scope)
    pattern = _pattern(call)
    return _deleting(kvs, lambda name: pattern.search(name) is not None)


def _keep_matching_keys(call: Call, scope: Scope) -> Callable[[Item], None]:
    _arguments(call, "target", "pattern")
    kvs = _map_target(call, scope)
    pattern = _pattern(call)
    return _deleting(kvs, lambda name: pattern.search(name) is None)


EDITORS = {
    "set": _set,
    "delete_key": _delete_key,
    "keep_keys": _keep_keys,
    "delete_matching_keys": _delete_matching_keys,
    "keep_matching_keys": _keep_matching_keys,
}


def compile_statement(statement: Statement, scope: Scope) -> Callable[[Item], None]:
    editor = EDITORS.get(statement.call.name)
    if editor is None:
        raise StatementError(f'unknown editor "{statement.call.name}" (supported: {", ".join(sorted(EDITORS))})')
    run = editor(statement.call, scope)
    if statement.where is None:
        return run
    where = predicate(statement.where, scope)

    def guarded(item):
        if where(item):
            run(item)
    return guarded
