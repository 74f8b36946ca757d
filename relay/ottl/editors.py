"""The OTTL editors: functions that change the item a statement runs on.

Each builder takes the call and the ``Compiler`` (its scope, and how to
compile the values and converters among its arguments) and returns the
closure run per item. Semantics follow the collector's ``ottlfuncs``; where
its documentation leaves a choice open, the comment says which one is made.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from relay import attrs
from relay.ottl import args, semconv
from relay.ottl.contexts import EvalError, Item, type_name
from relay.ottl.converters import string_like
from relay.ottl.parse import Call, ListOf, Path, StatementError, quote
from relay.ottl.paths import Accessor, put, resolve
from relay.ottl.regex import Pattern, compile_glob, compile_re2, expander

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
    call = args.arity(call, "target", "value")
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
    call = args.arity(call, "target", "key")
    kvs = _map_target(call, compiler)
    key = args.string_literal(call, 1, "the key")
    return _deleting(kvs, lambda name: name == key)


def _keep_keys(call: Call, compiler) -> Run:
    call = args.arity(call, "target", "keys")
    kvs = _map_target(call, compiler)
    keep = frozenset(args.string_list(call, 1, "the keys"))
    return _deleting(kvs, lambda name: name not in keep)


def _pattern(call: Call, index: int = 1) -> Pattern:
    return compile_re2(args.string_literal(call, index, "the pattern"))


def _delete_matching_keys(call: Call, compiler) -> Run:
    call = args.arity(call, "target", "pattern")
    kvs = _map_target(call, compiler)
    pattern = _pattern(call)
    return _deleting(kvs, lambda name: pattern.search(name) is not None)


def _keep_matching_keys(call: Call, compiler) -> Run:
    call = args.arity(call, "target", "pattern")
    kvs = _map_target(call, compiler)
    pattern = _pattern(call)
    return _deleting(kvs, lambda name: pattern.search(name) is None)


# --- replacing ----------------------------------------------------------------------------------

_OPTIONAL = ("function", "replacementFormat")


def _hashing(call: Call, compiler, first_optional: int) -> Callable[[str], str] | None:
    """The optional ``function`` and ``replacementFormat`` arguments as one str -> str step."""
    if not args.given(call, first_optional):
        return None
    function = compiler.string_function(args.function_name(call, first_optional), call.name)
    if not args.given(call, first_optional + 1):
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


def _substitute(pattern: Pattern, text: str, template: str, hashing: Callable[[str], str] | None) -> str:
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
    call = args.arity(call, "target", "regex", "replacement", optional=_OPTIONAL)
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
    call = args.arity(call, "target", "pattern", "replacement", optional=_OPTIONAL)
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
    call = args.arity(call, "target", "mode", "regex", "replacement", optional=_OPTIONAL)
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
    call = args.arity(call, "target", "limit", "priority_keys")
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
    call = args.arity(call, "target", "limit", optional=("utf8_safe", "truncation_marker"))
    kvs = _map_target(call, compiler)
    limit = args.int_literal(call, 1, "the limit")
    # utf8_safe=false lets the collector split a character; an OTLP string must be valid UTF-8,
    # so here a cut never splits one either way (the flag is checked, and has no other effect).
    if args.given(call, 2):
        args.bool_literal(call, 2, "the utf8_safe")
    marker = args.optional_string(call, 3, "the truncation_marker", "").encode("utf-8")
    if len(marker) > limit:
        raise StatementError(f"the truncation_marker of truncate_all ({len(marker)} bytes) cannot be longer than "
                             f"the limit ({limit})")

    def run(item):
        for kv in kvs(item):
            if kv.value.WhichOneof("value") != "string_value":
                continue  # non-string values are left as they are
            data = kv.value.string_value.encode("utf-8")
            if len(data) > limit:
                # The limit counts bytes, as in the collector, the marker included.
                kept = data[:limit - len(marker)].decode("utf-8", "ignore")
                kv.value.string_value = kept + marker.decode("utf-8")
    return run


# --- maps and lists ------------------------------------------------------------------------------

_STRATEGIES = ("insert", "update", "upsert")


def _merge_maps(call: Call, compiler) -> Run:
    call = args.arity(call, "target", "source", "strategy")
    accessor = _target(call, compiler)
    source = compiler.value(args.not_a_list(call, 1, "the source"))
    strategy = args.string_literal(call, 2, "the strategy")
    if strategy not in _STRATEGIES:
        raise StatementError(f"the strategy of merge_maps must be \"insert\", \"update\" or \"upsert\", "
                             f"got {args.describe(call.args[2])}")
    insert, update = strategy in ("insert", "upsert"), strategy in ("update", "upsert")

    def merge(item, present: Callable[[str], bool], write: Callable[[str, Any], None]) -> None:
        incoming = source(item)
        if not isinstance(incoming, dict):
            raise EvalError(f"merge_maps: the source must be a map, got {type_name(incoming)}")
        for key, value in incoming.items():
            # An empty value (nil here) has nothing to write; an OTLP attribute cannot hold nil.
            if (update if present(key) else insert) and value is not None:
                write(key, value)

    if accessor.kvs is not None:  # an attribute map: merged in place, keeping each value's exact type
        kvs = accessor.kvs

        def in_place(item):
            target = kvs(item)
            merge(item, lambda key: attrs.find(target, key) is not None,
                  lambda key, value: put(target, key, value, call.args[0]))
        return in_place
    read, write = accessor.get, accessor.set

    def rewritten(item):
        target = read(item)
        if not isinstance(target, dict):
            raise EvalError(f"merge_maps: the target must be a map, got {type_name(target)}")
        merge(item, target.__contains__, target.__setitem__)
        write(item, target)
    return rewritten


def _flatten_into(out: dict, prefix: str, value: Any, depth: int, level: int) -> None:
    children = (value.items() if isinstance(value, dict) else
                ((str(index), inner) for index, inner in enumerate(value)))
    for key, inner in children:
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(inner, (dict, list)) and level < depth:
            _flatten_into(out, name, inner, depth, level + 1)
        else:
            out[name] = inner


def _flatten(call: Call, compiler) -> Run:
    call = args.arity(call, "target", optional=("prefix", "depth"))
    accessor = _target(call, compiler)
    prefix = args.optional_string(call, 1, "the prefix", "")
    # Without a depth every level is flattened.
    depth = args.int_literal(call, 2, "the depth") if args.given(call, 2) else 1 << 62
    read, write = accessor.get, accessor.set

    def run(item):
        target = read(item)
        if not isinstance(target, dict):
            raise EvalError(f"flatten: the target must be a map, got {type_name(target)}")
        flat: dict[str, Any] = {}
        # The top level is level 0, so a depth of 0 only adds the prefix.
        _flatten_into(flat, prefix, target, depth, 0)
        write(item, flat)
    return run


def _append(call: Call, compiler) -> Run:
    call = args.arity(call, "target", optional=("value", "values"))
    if not (args.given(call, 1) or args.given(call, 2)):
        raise StatementError("append needs a value or values to append")
    accessor = _target(call, compiler)
    additions = [compiler.value(call.args[1])] if args.given(call, 1) else []
    if args.given(call, 2):
        node = call.args[2]
        if not isinstance(node, ListOf):
            raise StatementError(f"the values of append must be a list such as [\"a\", \"b\"], "
                                 f"got {args.describe(node)}")
        additions += [compiler.value(inner) for inner in node.items]
    read, write = accessor.get, accessor.set

    def run(item):
        current = read(item)
        if current is None:
            result = []
        elif isinstance(current, list):
            result = list(current)
        elif isinstance(current, (str, int, float)):  # a single value becomes the list's first item
            result = [current]
        else:
            raise EvalError(f"append: unsupported type of target field: {type_name(current)}")
        # A list value is appended as one item, as in the collector; the values argument adds several.
        result += [get(item) for get in additions]
        write(item, result)
    return run


# --- span names ---------------------------------------------------------------------------------

def _attribute_text(value: Any) -> str:
    """An attribute value as the collector's AsString writes it."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return string_like(value)


def _set_semconv_span_name(call: Call, compiler) -> Run:
    call = args.arity(call, "semconvVersion", optional=("originalSpanNameAttribute",))
    if compiler.scope.context != "span":
        raise StatementError(f"set_semconv_span_name works in the span context only, not {compiler.scope.context}")
    text = args.string_literal(call, 0, "the semconvVersion")
    version = semconv.parse_version(text)
    oldest, newest = (".".join(map(str, v)) for v in (semconv.OLDEST, semconv.NEWEST))
    if version is None:
        raise StatementError(f"the semconvVersion of set_semconv_span_name must be a version such as "
                             f"{quote(newest)}, got {quote(text)}")
    if not semconv.OLDEST <= version <= semconv.NEWEST:
        raise StatementError(f"unsupported semconvVersion {quote(text)} for set_semconv_span_name: must be "
                             f"between {oldest} and {newest}")
    keep_as = args.optional_string(call, 1, "the originalSpanNameAttribute", "") if args.given(call, 1) else None
    if keep_as == "":
        raise StatementError("the originalSpanNameAttribute of set_semconv_span_name cannot be an empty string")

    def run(item):
        span = item.span
        attributes = {kv.key: attrs.to_python(kv.value) for kv in span.attributes}
        original = span.name
        derived = semconv.span_name(span.kind, original, attributes, _attribute_text)
        if derived == original:
            return
        span.name = derived
        if keep_as is not None:
            attrs.put(span.attributes, keep_as, original)
    return run


EDITORS = {
    "set": _set,
    "append": _append,
    "flatten": _flatten,
    "merge_maps": _merge_maps,
    "set_semconv_span_name": _set_semconv_span_name,
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
