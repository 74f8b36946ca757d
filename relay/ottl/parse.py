"""OTTL statements and conditions: a hand-written lexer and recursive-descent parser.

Only syntax is decided here. Which editors, paths and enums exist depends on
the context a statement runs in, so that is checked when compiling
(``compile.py``); one tree shape serves every context.

Grammar (precedence: ``not`` binds tighter than ``and``, which binds tighter
than ``or``)::

    statement  = editor [ "where" condition ] END
    editor     = LOWER_IDENT "(" [ args ] ")"
    converter  = UPPER_IDENT "(" [ args ] ")"
    args       = arg { "," arg } { "," named } | named { "," named }
    arg        = value
    named      = IDENT "=" value
    condition  = and_expr { "or" and_expr }
    and_expr   = not_expr { "and" not_expr }
    not_expr   = "not" not_expr | "(" condition ")" | comparison | converter | "true" | "false"
    comparison = value ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) value
    value      = STRING | INT | FLOAT | "true" | "false" | "nil" | ENUM | converter | path | list | map
    list       = "[" [ value { "," value } ] "]"
    map        = "{" [ STRING ":" value { "," STRING ":" value } ] "}"
    path       = IDENT { "." IDENT } { "[" ( STRING | INT ) "]" }

Named arguments come after the positional ones; the function's parameter
names, snake-cased, name them (``compile`` binds them, ``args.arity``).
As in the collector, editors (which change data) are lower case and
converters (pure functions returning a value) start with an upper-case
letter; a converter stands alone as a condition when it returns a bool.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any


class StatementError(ValueError):
    """Why a statement or condition cannot be used; the message is shown to the user as is."""


def quote(value: Any) -> str:
    """A string or number as OTTL would write it, for messages (non-ASCII kept readable)."""
    return json.dumps(value, ensure_ascii=False)


# --- syntax tree ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Const:
    value: Any  # str, int, float, bool or None (nil)


@dataclass(frozen=True)
class EnumRef:
    name: str


@dataclass(frozen=True)
class Path:
    names: tuple[str, ...]
    keys: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        return ".".join(self.names) + "".join(f"[{quote(k)}]" for k in self.keys)


@dataclass(frozen=True)
class ListOf:
    items: tuple[Value, ...]


@dataclass(frozen=True)
class Call:
    """An editor call (a statement's head) or a converter call (a value)."""

    name: str
    args: tuple[Value, ...]
    named: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True)
class MapOf:
    """A map literal: its keys are strings, its values any value (nested maps and lists too)."""

    items: tuple[tuple[str, Value], ...]


Value = Const | EnumRef | Path | ListOf | MapOf | Call


@dataclass(frozen=True)
class Compare:
    op: str
    left: Value
    right: Value


@dataclass(frozen=True)
class Not:
    operand: Condition


@dataclass(frozen=True)
class And:
    operands: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Condition, ...]


# A Call here is a converter returning a bool, e.g. IsMatch(name, "^a").
Condition = Compare | Not | And | Or | Const | Call


@dataclass(frozen=True)
class Statement:
    call: Call
    where: Condition | None


def paths_in(node) -> list[Path]:
    """Every path a tree mentions, in order; context inference looks at their first names."""
    if isinstance(node, Path):
        return [node]
    if isinstance(node, Statement):
        return paths_in(node.call) + (paths_in(node.where) if node.where else [])
    if isinstance(node, Call):
        return [p for arg in node.args + tuple(v for _, v in node.named) for p in paths_in(arg)]
    if isinstance(node, ListOf):
        return [p for item in node.items for p in paths_in(item)]
    if isinstance(node, MapOf):
        return [p for _, item in node.items for p in paths_in(item)]
    if isinstance(node, Compare):
        return paths_in(node.left) + paths_in(node.right)
    if isinstance(node, Not):
        return paths_in(node.operand)
    if isinstance(node, (And, Or)):
        return [p for operand in node.operands for p in paths_in(operand)]
    return []


# --- lexer -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str  # "string", "int", "float", "ident", "op", "punct" or "end"
    value: Any
    column: int  # 1-based, so messages match what an editor shows
    raw: str

    def show(self) -> str:
        return "the end of the text" if self.kind == "end" else quote(self.raw)


_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
_PUNCTUATION = "()[],.{}:"
_NUMBER = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f",
            "v": "\v", "a": "\a"}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
            continue
        start = pos
        if char == '"':
            value, pos = _string(text, pos)
            tokens.append(Token("string", value, start + 1, text[start:pos]))
        elif char.isdigit() or (char in "+-." and _NUMBER.match(text, pos)):
            pos = _number(text, pos, tokens)
        elif match := _IDENT.match(text, pos):
            pos = match.end()
            tokens.append(Token("ident", match.group(), start + 1, match.group()))
        elif op := next((op for op in _OPERATORS if text.startswith(op, pos)), None):
            pos += len(op)
            tokens.append(Token("op", op, start + 1, op))
        elif char == "=" and _names_an_argument(tokens):
            pos += 1
            tokens.append(Token("op", "=", start + 1, "="))
        elif char in _PUNCTUATION:
            pos += 1
            tokens.append(Token("punct", char, start + 1, char))
        elif char == "=":
            raise StatementError(f'unexpected "=" at column {start + 1} (comparisons are ==, !=, <, <=, >, >=; '
                                 "a named argument is name = value inside a call)")
        elif char in "+-*/":
            raise StatementError(f'unexpected "{char}" at column {start + 1} (arithmetic is not supported)')
        else:
            raise StatementError(f"unexpected character {quote(char)} at column {start + 1}")
    tokens.append(Token("end", None, len(text) + 1, ""))
    return tokens


def _names_an_argument(tokens: list[Token]) -> bool:
    """Whether an "=" here follows an argument name: a name just after "(" or ","."""
    return (len(tokens) >= 2 and tokens[-1].kind == "ident" and tokens[-2].kind == "punct"
            and tokens[-2].value in "(,")


def _string(text: str, pos: int) -> tuple[str, int]:
    start, pos, out = pos, pos + 1, []
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char != "\\":
            out.append(char)
            pos += 1
            continue
        escape = text[pos + 1:pos + 2]
        if escape in _ESCAPES:
            out.append(_ESCAPES[escape])
            pos += 2
        elif escape in _HEX_DIGITS:
            digits = text[pos + 2:pos + 2 + _HEX_DIGITS[escape]]
            if len(digits) != _HEX_DIGITS[escape] or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise StatementError(f"invalid escape \\{escape}{digits} at column {pos + 1}")
            out.append(chr(int(digits, 16)))
            pos += 2 + len(digits)
        elif escape:
            raise StatementError(f"invalid escape \\{escape} at column {pos + 1}")
        else:
            break
    raise StatementError(f"unterminated string starting at column {start + 1}")


def _number(text: str, pos: int, tokens: list[Token]) -> int:
    if text.startswith(("0x", "0X"), pos):
        raise StatementError(f"byte literals (0x...) are not supported (column {pos + 1})")
    match = _NUMBER.match(text, pos)
    end = match.end()
    # "12abc" or "1.2.3" would otherwise split into two tokens and fail later, far less clearly.
    if end < len(text) and (text[end].isalnum() or text[end] in "_."):
        tail = re.match(r"[\w.]*", text[end:]).group()
        raise StatementError(f"invalid number {quote(text[pos:end] + tail)} at column {pos + 1}")
    raw = match.group()
    is_float = any(c in raw for c in ".eE")
    shown = quote(raw if len(raw) <= 32 else raw[:32] + "...")
    if is_float:
        value = float(raw)
        if math.isinf(value):  # Go's strconv.ParseFloat refuses what overflows a float64
            raise StatementError(f"number {shown} at column {pos + 1} is out of the float64 range")
    else:
        # OTTL ints are Go int64; Python's int() would also refuse some thousands of digits.
        sign = raw[0] if raw[0] in "+-" else ""
        digits = raw[len(sign):].lstrip("0") or "0"
        value = int(sign + digits) if len(digits) <= 19 else None
        if value is None or not -(1 << 63) <= value < 1 << 63:
            raise StatementError(f"number {shown} at column {pos + 1} is out of the int64 range")
    tokens.append(Token("float" if is_float else "int", value, pos + 1, raw))
    return end


# --- parser ------------------------------------------------------------------------------------

_KEYWORDS = {"where", "and", "or", "not", "true", "false", "nil"}
_ENUM = re.compile(r"[A-Z][A-Z0-9_]*")


def is_converter(name: str) -> bool:
    return name[:1].isupper()


def parse_statement(text: str) -> Statement:
    parser = _Parser(text)
    call = parser.editor()
    where = None
    if parser.at_keyword("where"):
        parser.advance()
        if parser.peek().kind == "end":
            raise StatementError('"where" must be followed by a condition')
        where = parser.condition()
        parser.expect_end('"and", "or"')
    else:
        parser.expect_end('"where"')
    return Statement(call, where)


def parse_condition(text: str) -> Condition:
    parser = _Parser(text)
    if parser.peek().kind == "end":
        raise StatementError("the condition is empty")
    condition = parser.condition()
    parser.expect_end('"and", "or"')
    return condition


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def at_keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "ident" and token.value == word

    def at_punct(self, char: str) -> bool:
        token = self.peek()
        return token.kind == "punct" and token.value == char

    def expect_punct(self, char: str, what: str) -> None:
        if not self.at_punct(char):
            token = self.peek()
            raise StatementError(f'expected "{char}" {what} at column {token.column}, got {token.show()}')
        self.advance()

    def expect_end(self, alternatives: str) -> None:
        token = self.peek()
        if token.kind != "end":
            raise StatementError(f"unexpected {token.show()} at column {token.column}; "
                                 f"expected {alternatives} or the end of the text")

    def editor(self) -> Call:
        token = self.peek()
        if token.kind != "ident" or self.peek(1).kind != "punct" or self.peek(1).value != "(":
            raise StatementError(f"a statement starts with an editor call such as set(...), "
                                 f"got {token.show()} at column {token.column}")
        if is_converter(token.value):
            raise StatementError(f'"{token.value}" is a converter, which returns a value; a statement starts '
                                 f"with an editor such as set(...) (column {token.column})")
        self.advance()
        return self.call(token)

    def call(self, token: Token) -> Call:
        self.advance()  # the "(" after the name
        args: list[Value] = []
        named: dict[str, Value] = {}
        if not self.at_punct(")"):
            self.argument(token, args, named)
            while self.at_punct(","):
                self.advance()
                self.argument(token, args, named)
        self.expect_punct(")", f"to close {token.value}(")
        return Call(token.value, tuple(args), tuple(named.items()))

    def argument(self, function: Token, args: list[Value], named: dict[str, Value]) -> None:
        name, equals = self.peek(), self.peek(1)
        if not (name.kind == "ident" and equals.kind == "op" and equals.value == "="):
            if named:
                raise StatementError(f"positional arguments of {function.value} must come before its named ones "
                                     f"(column {name.column})")
            args.append(self.value())
            return
        self.advance()
        self.advance()
        if name.value in named:
            raise StatementError(f'the argument "{name.value}" of {function.value} is named twice '
                                 f"(column {name.column})")
        named[name.value] = self.value()

    def list_literal(self) -> ListOf:
        self.advance()  # the "["
        items: list[Value] = []
        if not self.at_punct("]"):
            items.append(self.value())
            while self.at_punct(","):
                self.advance()
                items.append(self.value())
        self.expect_punct("]", "to close the list")
        return ListOf(tuple(items))

    def map_literal(self) -> MapOf:
        self.advance()  # the "{"
        items: dict[str, Value] = {}
        if not self.at_punct("}"):
            self.map_item(items)
            while self.at_punct(","):
                self.advance()
                self.map_item(items)
        self.expect_punct("}", "to close the map")
        return MapOf(tuple(items.items()))

    def map_item(self, items: dict) -> None:
        token = self.advance()
        if token.kind != "string":
            raise StatementError(f"expected a string key in the map at column {token.column}, got {token.show()}")
        self.expect_punct(":", "after the map key")
        items.pop(token.value, None)  # a repeated key: the last one wins, as when the map is built in order
        items[token.value] = self.value()

    def value(self) -> Value:
        if self.at_punct("["):
            return self.list_literal()
        if self.at_punct("{"):
            return self.map_literal()
        token = self.advance()
        if token.kind in ("string", "int", "float"):
            return Const(token.value)
        if token.kind != "ident":
            raise StatementError(f"expected a value at column {token.column}, got {token.show()}")
        if token.value in ("true", "false"):
            return Const(token.value == "true")
        if token.value == "nil":
            return Const(None)
        if token.value in _KEYWORDS:
            raise StatementError(f'expected a value at column {token.column}, got the keyword "{token.value}"')
        if self.at_punct("("):
            if not is_converter(token.value):
                raise StatementError(f'"{token.value}" is an editor, which changes data and returns nothing; '
                                     f"only converters (such as Concat or IsMatch) can be used as values "
                                     f"(column {token.column})")
            return self.call(token)
        if _ENUM.fullmatch(token.value) and not self.at_punct("."):
            return EnumRef(token.value)
        return self.path(token)

    def path(self, first: Token) -> Path:
        names = [first.value]
        while self.at_punct("."):
            self.advance()
            token = self.advance()
            if token.kind != "ident":
                raise StatementError(f"expected a name after \".\" at column {token.column}, got {token.show()}")
            names.append(token.value)
        keys: list[str | int] = []
        while self.at_punct("["):
            self.advance()
            token = self.advance()
            if token.kind not in ("string", "int"):
                raise StatementError(f"expected a string or integer key at column {token.column}, "
                                     f"got {token.show()}")
            keys.append(token.value)
            self.expect_punct("]", "to close the key")
        return Path(tuple(names), tuple(keys))

    def condition(self) -> Condition:
        operands = [self.and_expr()]
        while self.at_keyword("or"):
            self.advance()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Condition:
        operands = [self.not_expr()]
        while self.at_keyword("and"):
            self.advance()
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def not_expr(self) -> Condition:
        if self.at_keyword("not"):
            self.advance()
            return Not(self.not_expr())
        if self.at_punct("("):
            self.advance()
            inner = self.condition()
            self.expect_punct(")", "to close the parenthesis")
            return inner
        left = self.value()
        token = self.peek()
        if token.kind == "op" and token.value == "=":
            raise StatementError(f'unexpected "=" at column {token.column} (comparisons are ==, !=, <, <=, >, >=)')
        if token.kind == "op":
            self.advance()
            return Compare(token.value, left, self.value())
        if isinstance(left, Call) or (isinstance(left, Const) and isinstance(left.value, bool)):
            return left  # whether a converter returns a bool is checked when compiling
        raise StatementError(f"expected a comparison operator (==, !=, <, <=, >, >=) at column {token.column}, "
                             f"got {token.show()}")
