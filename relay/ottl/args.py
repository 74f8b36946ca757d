"""Checking a function call's arguments while compiling, with messages that name the function."""

from __future__ import annotations

from relay.ottl.parse import Call, Const, EnumRef, ListOf, Path, StatementError, Value, quote


def describe(node: Value) -> str:
    if isinstance(node, Const):
        return "nil" if node.value is None else quote(node.value)
    if isinstance(node, ListOf):
        return "a list"
    if isinstance(node, Call):
        return f"{node.name}(...)"
    return str(node) if isinstance(node, Path) else node.name


def arity(call: Call, *names: str, optional: tuple[str, ...] = ()) -> None:
    given, least, most = len(call.args), len(names), len(names) + len(optional)
    if least <= given <= most:
        return
    every = ", ".join(names + optional)
    if not optional:
        raise StatementError(f"{call.name} takes {least} argument{'' if least == 1 else 's'} ({every}), got {given}")
    raise StatementError(f"{call.name} takes {least} to {most} arguments ({every}), got {given}")


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
