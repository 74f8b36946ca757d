"""The OTTL editors: functions that change the item a statement runs on.

Each builder takes the call and the ``Compiler`` (its scope, and how to
compile the values and converters among its arguments) and returns the
closure run per item. Semantics follow the collector's ``ottlfuncs``; where
its documentation leaves a choice open, the comment says which one is made.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from relay import attrs
from relay.ottl import args
from relay.ottl.contexts import EvalError, Item, type_name
from relay.ottl.parse import Call, Path, StatementError
from relay.ottl.paths import Accessor, resolve
from relay.ottl.regex import compile_glob, compile_re2, expander

Run = Callable[[Item], None]


def _target(call: Call, compiler) -> Accessor:
    node = call.args[0]
    if not isinstance(node, Path):
        raise StatementError(f"the first argument of {call.name} must be a path, got {args.describe(node)}")
    accessor = resolve(node, compiler.scope)
    if accessor.set is None:
        raise StatementError(f'path "{node}" cannot be set: {accessor.read_only_reason}')
    return accessor


def _map_target(call: Call, compiler) -> Callable[[Item], Any]:
    accessor = _target(call, compiler)
    if accessor.kvs is None:
        raise StatementError(f'the first argument of {call.name} must be a map such as attributes, '
                             f'got "{call.args[0]}"')
    return accessor.kvs


def _set(call: Call, compiler) -> Run:
    args.arity(call, "target", "value")
    write = _target(call, compiler).set
    read = compiler.value(call.args[1])

    def run(item):
        value = read(item)
        if value is not None:  # OTTL: setting nil, e.g. a missing attribute, does nothing
            write(item, value)
    return run


def _deleting(kvs: Callable[[Item], Any], doomed: Callable[[str], bool]) -> Run:
    return lambda item: attrs.delete(kvs(item), doomed)


def _delete_key(call: Call, compiler) -> Run:
    args.arity(call, "target", "key")
    kvs = _map_target(call, compiler)
    key = args.string_literal(call, 1, "the key")
    return _deleting(kvs, lambda name: name == key)


def _keep_keys(call: Call, compiler) -> Run:
    args.arity(call, "target", "keys")
    kvs = _map_target(call, compiler)
    keep = frozenset(args.string_list(call, 1, "the keys"))
    return _deleting(kvs, lambda name: name not in keep)


def _pattern(call: Call, index: int = 1) -> re.Pattern:
    return compile_re2(args.string_literal(call, index, "the pattern"))


def _delete_matching_keys(call: Call, compiler) -> Run:
    args.arity(call, "target", "pattern")
    kvs = _map_target(call, compiler)
    pattern = _pattern(call)
    return _deleting(kvs, lambda name: pattern.search(name) is not None)


def _keep_matching_keys(call: Call, compiler) -> Run:
    args.arity(call, "target", "pattern")
    kvs = _map_target(call, compiler)
    pattern = _pattern(call)
    return _deleting(kvs, lambda name: pattern.search(name) is None)


# --- replacing ----------------------------------------------------------------------------------

_OPTIONAL = ("function", "replacementFormat")


def _hashing(call: Call, compiler, first_optional: int) -> Callable[[str], str] | None:
    """The optional ``function`` and ``replacementFormat`` arguments as one str -> str step."""
    if len(call.args) <= first_optional:
        return None
    function = compiler.string_function(args.function_name(call, first_optional), call.name)
    if len(call.args) == first_optional + 1:
        return function
    template = args.string_literal(call, first_optional + 1, "the replacementFormat")
    if template.count("%s") != 1 or template.count("%") != 1:
        raise StatementError(f"the replacementFormat of {call.name} must contain a single %s and no other "
                             f"format specifiers, got {args.describe(call.args[first_optional + 1])}")
    return lambda text: template.replace("%s", function(text))


def _replacement(call: Call, compiler, index: int) -> Callable[[Item], str]:
    read = compiler.value(args.not_a_list(call, index, "the replacement"))
    name = call.name

    def get(item):
        value = read(item)
        if not isinstance(value, str):
            raise EvalError(f"{name}: the replacement must be a string, got {type_name(value)}")
        return value
    return get


def _substitute(pattern: re.Pattern, text: str, template: str, hashing: Callable[[str], str] | None) -> str:
    expand = expander(template)
    if hashing is None:
        return pattern.sub(expand, text)
    # As the collector does: each match's expansion is hashed, then every occurrence of the
    # matched text is replaced by it, match after match.
    out = text
    for found in pattern.finditer(text):
        out = out.replace(found.group(0), hashing(expand(found)))
    return out


def _replace_pattern(call: Call, compiler) -> Run:
    args.arity(call, "target", "regex", "replacement", optional=_OPTIONAL)
    accessor = _target(call, compiler)
    pattern = _pattern(call)
    replacement = _replacement(call, compiler, 2)
    hashing = _hashing(call, compiler, 3)
    read, write = accessor.get, accessor.set

    def run(item):
        value = read(item)
        if not isinstance(value, str):  # nil and other types are left as they are
            return
        template = replacement(item)
        if pattern.search(value) is not None:
            write(item, _substitute(pattern, value, template, hashing))
    return run


def _replace_match(call: Call, compiler) -> Run:
    args.arity(call, "target", "pattern", "replacement", optional=_OPTIONAL)
    accessor = _target(call, compiler)
    glob = compile_glob(args.string_literal(call, 1, "the pattern"))
    replacement = _replacement(call, compiler, 2)
    hashing = _hashing(call, compiler, 3) or (lambda text: text)
    read, write = accessor.get, accessor.set

    def run(item):
        value = read(item)
        if isinstance(value, str) and glob.fullmatch(value):
            write(item, hashing(replacement(item)))
    return run


def _replace_all_patterns(call: Call, compiler) -> Run:
    args.arity(call, "target", "mode", "regex", "replacement", optional=_OPTIONAL)
    kvs = _map_target(call, compiler)
    mode = args.string_literal(call, 1, "the mode")
    if mode not in ("key", "value"):
        raise StatementError(f"the mode of replace_all_patterns must be \"key\" or \"value\", got "
                             f"{args.describe(call.args[1])}")
    pattern = _pattern(call, 2)
    replacement = _replacement(call, compiler, 3)
    hashing = _hashing(call, compiler, 4)

    def values(item):
        template = replacement(item)
        for kv in kvs(item):
            if kv.value.WhichOneof("value") == "string_value" and pattern.search(kv.value.string_value):
                kv.value.string_value = _substitute(pattern, kv.value.string_value, template, hashing)

    def keys(item):
        target = kvs(item)
        template = replacement(item)
        if not any(pattern.search(kv.key) is not None for kv in target):
            return
        renamed: dict[str, AnyValue] = {}  # a key renamed onto an existing one replaces it
        for kv in target:
            key = kv.key
            if pattern.search(key) is not None:
                key = _substitute(pattern, key, template, hashing)
            value = AnyValue()
            value.CopyFrom(kv.value)
            renamed.pop(key, None)
            renamed[key] = value
        del target[:]
        for key, value in renamed.items():
            target.add(key=key).value.CopyFrom(value)
    return values if mode == "value" else keys


# --- limiting -----------------------------------------------------------------------------------

def _limit(call: Call, compiler) -> Run:
    args.arity(call, "target", "limit", "priority_keys")
    kvs = _map_target(call, compiler)
    limit = args.int_literal(call, 1, "the limit")
    priority = args.string_list(call, 2, "the priority_keys")
    if limit < len(priority):
        raise StatementError(f"the limit of limit ({limit}) cannot be less than the number of priority_keys "
                             f"({len(priority)})")
    keep = frozenset(priority)

    def run(item):
        target = kvs(item)
        if len(target) <= limit:
            return
        # Priority keys first, then the others in map order until the limit is reached.
        count = sum(1 for kv in target if kv.key in keep)
        doomed = []
        for index, kv in enumerate(target):
            if kv.key in keep:
                continue
            if count < limit:
                count += 1
            else:
                doomed.append(index)
        for index in reversed(doomed):
            del target[index]
    return run


def _truncate_all(call: Call, compiler) -> Run:
    args.arity(call, "target", "limit")
    kvs = _map_target(call, compiler)
    limit = args.int_literal(call, 1, "the limit")

    def run(item):
        for kv in kvs(item):
            if kv.value.WhichOneof("value") != "string_value":
                continue  # non-string values are left as they are
            data = kv.value.string_value.encode("utf-8")
            if len(data) > limit:
                # The limit counts bytes, as in the collector, and a cut never splits a character.
                kv.value.string_value = data[:limit].decode("utf-8", "ignore")
    return run


EDITORS = {
    "set": _set,
    "delete_key": _delete_key,
    "keep_keys": _keep_keys,
    "delete_matching_keys": _delete_matching_keys,
    "keep_matching_keys": _keep_matching_keys,
    "replace_pattern": _replace_pattern,
    "replace_match": _replace_match,
    "replace_all_patterns": _replace_all_patterns,
    "limit": _limit,
    "truncate_all": _truncate_all,
}
