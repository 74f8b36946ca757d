"""Checking a function call's arguments while compiling, with messages that name the function."""

from __future__ import annotations

import re
from dataclasses import dataclass

from relay.ottl.parse import Call, Const, EnumRef, ListOf, MapOf, Path, StatementError, Value, quote


def describe(node: Value) -> str:
    if isinstance(node, Const):
        return "nil" if node.value is None else quote(node.value)
    if isinstance(node, ListOf):
        return "a list"
    if isinstance(node, MapOf):
        return "a map"
    if isinstance(node, Call):
        return f"{node.name}(...)"
    return str(node) if isinstance(node, Path) else node.name


@dataclass(frozen=True)
class Skipped:
    """An optional argument left out before a named one: ``flatten(body, depth=2)`` skips the prefix."""


SKIPPED = Skipped()


def snake(name: str) -> str:
    """A parameter's name as a named argument spells it (``replacementFormat`` is ``replacement_format``)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def arity(call: Call, *names: str, optional: tuple[str, ...] = ()) -> Call:
    """The call with its named arguments put in their places, once the arguments are checked against the
    parameters ``names`` (required) and ``optional``; builders read arguments from what it returns."""
    params = names + optional
    positional = list(call.args)
    for name, node in call.named:
        index = next((i for i, param in enumerate(params) if snake(param) == name), None)
        if index is None:
            raise StatementError(f'{call.name} has no argument named "{name}" '
                                 f'(arguments: {", ".join(snake(p) for p in params) or "none"})')
        if index < len(positional) and positional[index] is not SKIPPED:
            raise StatementError(f'the argument "{name}" of {call.name} is given both by position and by name')
        positional += [SKIPPED] * (index + 1 - len(positional))
        positional[index] = node
    given, least, most = len(positional), len(names), len(params)
    if call.named and given <= most:
        missing = [snake(p) for i, p in enumerate(names) if i >= given or positional[i] is SKIPPED]
        if missing:
            raise StatementError(f'{call.name} needs its argument "{missing[0]}"')
    elif not least <= given <= most:
        every = ", ".join(params)
        if not params:
            raise StatementError(f"{call.name} takes no arguments, got {given}")
        if not optional:
            raise StatementError(f"{call.name} takes {least} argument{'' if least == 1 else 's'} ({every}), "
                                 f"got {given}")
        raise StatementError(f"{call.name} takes {least} to {most} arguments ({every}), got {given}")
    return Call(call.name, tuple(positional)) if call.named else call


def given(call: Call, index: int) -> bool:
    """Whether the (bound) call has its argument at ``index``."""
    return index < len(call.args) and call.args[index] is not SKIPPED


def string_literal(call: Call, index: int, what: str) -> str:
    node = call.args[index]
    if not (isinstance(node, Const) and isinstance(node.value, str)):
        raise StatementError(f"{what} of {call.name} must be a string literal, got {describe(node)}")
    return node.value


def int_literal(call: Call, index: int, what: str) -> int:
    node = call.args[index]
    if not (isinstance(node, Const) and isinstance(node.value, int) and not isinstance(node.value, bool)):
        raise StatementError(f"{what} of {call.name} must be an integer literal, got {describe(node)}")
    if node.value < 0:
        raise StatementError(f"{what} of {call.name} cannot be negative, got {node.value}")
    return node.value


def string_list(call: Call, index: int, what: str) -> list[str]:
    node = call.args[index]
    if not isinstance(node, ListOf) or not all(isinstance(i, Const) and isinstance(i.value, str) for i in node.items):
        raise StatementError(f'{what} of {call.name} must be a list of strings like ["a", "b"], '
                             f"got {describe(node)}")
    return [i.value for i in node.items]


def not_a_list(call: Call, index: int, what: str) -> Value:
    node = call.args[index]
    if isinstance(node, ListOf):
        raise StatementError(f"{what} of {call.name} must be a single value, got a list")
    return node


def function_name(call: Call, index: int) -> str:
    node = call.args[index]
    # SHA256 reads as an enum name, IsMap as a path: either way a bare name.
    if isinstance(node, EnumRef):
        return node.name
    if isinstance(node, Path) and len(node.names) == 1 and not node.keys:
        return node.names[0]
    raise StatementError(f"the function of {call.name} must be a converter name such as SHA256, "
                         f"got {describe(node)}")


def optional_string(call: Call, index: int, what: str, default: str) -> str:
    """A string literal argument that may be left out."""
    return string_literal(call, index, what) if given(call, index) else default


def literal_of(call: Call, index: int, what: str, types: tuple[type, ...], expected: str) -> Value:
    """The argument, which may be any value; a literal of the wrong type is refused while compiling."""
    node = call.args[index]
    if isinstance(node, ListOf):
        raise StatementError(f"{what} of {call.name} must be {expected}, got a list")
    if isinstance(node, MapOf):
        raise StatementError(f"{what} of {call.name} must be {expected}, got a map")
    if isinstance(node, Const) and (not isinstance(node.value, types) or
                                    (isinstance(node.value, bool) and bool not in types)):
        raise StatementError(f"{what} of {call.name} must be {expected}, got {describe(node)}")
    return node


def bool_literal(call: Call, index: int, what: str) -> bool:
    node = call.args[index]
    if not (isinstance(node, Const) and isinstance(node.value, bool)):
        raise StatementError(f"{what} of {call.name} must be true or false, got {describe(node)}")
    return node.value
