"""Turn parsed OTTL into closures over an ``Item``, once, when the config is validated.

Everything knowable without data is checked here (the function and its
arguments, whether a path exists in the context and may be set, enum names,
regexes), so at run time only data-dependent failures remain: ``EvalError``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import reduce
from typing import Any

from relay.ottl import converters, editors
from relay.ottl.contexts import ENUMS, Item
from relay.ottl.parse import (
    And,
    Call,
    Compare,
    Const,
    EnumRef,
    ListOf,
    MapOf,
    Not,
    Or,
    Path,
    Statement,
    StatementError,
    Value,
)
from relay.ottl.paths import Getter, Scope, infer_context, resolve

__all__ = ["Compiler", "Scope", "compile_statement", "infer_context", "predicate", "value_getter"]

Predicate = Callable[[Item], bool]


class Compiler:
    """What a function's builder may ask of the compiler: the scope, values and converters."""

    def __init__(self, scope: Scope):
        self.scope = scope

    def value(self, node: Value) -> Getter:
        return value_getter(node, self.scope)

    def string_function(self, name: str, owner: str) -> Callable[[str], str]:
        """The converter a call names as its ``function`` argument, as str -> str."""
        converter = converters.CONVERTERS.get(name)
        if converter is None or converter.on_string is None:
            usable = sorted(n for n, c in converters.CONVERTERS.items() if c.on_string is not None)
            raise StatementError(f'the function of {owner} must be a converter from string to string '
                                 f'({", ".join(usable)}), got {name}')
        return converter.on_string


# --- values and conditions ----------------------------------------------------------------------

def value_getter(node: Value, scope: Scope) -> Getter:
    if isinstance(node, Const):
        constant = node.value
        return lambda item: constant
    if isinstance(node, EnumRef):
        if node.name not in ENUMS:
            hint = " (a converter is called with parentheses)" if node.name in converters.CONVERTERS else ""
            raise StatementError(f'unknown enum "{node.name}"{hint}')
        number = ENUMS[node.name]
        return lambda item: number
    if isinstance(node, Path):
        return resolve(node, scope).get
    if isinstance(node, Call):
        return _converter(node).build(node, Compiler(scope))
    if isinstance(node, MapOf):
        entries = [(key, value_getter(inner, scope)) for key, inner in node.items]
        # A fresh dict per call: an editor may change what it was given.
        return lambda item: {key: get(item) for key, get in entries}
    assert isinstance(node, ListOf)
    getters = [value_getter(inner, scope) for inner in node.items]
    return lambda item: [get(item) for get in getters]


def _converter(call: Call) -> converters.Converter:
    converter = converters.CONVERTERS.get(call.name)
    if converter is None:
        supported = ", ".join(sorted(converters.CONVERTERS))
        raise StatementError(f'unknown converter "{call.name}" (supported: {supported})')
    return converter


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
    if isinstance(node, Call):
        converter = _converter(node)
        if converter.returns != "bool":
            article = "an" if converter.returns[:1] in "aeiou" else "a"
            raise StatementError(f"{node.name} returns {article} {converter.returns}, not a bool, so it cannot stand "
                                 f"alone as a condition (compare it, e.g. {node.name}(...) == ...)")
        return converter.build(node, Compiler(scope))
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


# --- statements ---------------------------------------------------------------------------------

def compile_statement(statement: Statement, scope: Scope) -> Callable[[Item], None]:
    editor = editors.EDITORS.get(statement.call.name)
    if editor is None:
        supported = ", ".join(sorted(editors.EDITORS))
        raise StatementError(f'unknown editor "{statement.call.name}" (supported: {supported})')
    run = editor(statement.call, Compiler(scope))
    if statement.where is None:
        return run
    where = predicate(statement.where, scope)

    def guarded(item):
        if where(item):
            run(item)
    return guarded
