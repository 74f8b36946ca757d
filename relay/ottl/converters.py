"""The OTTL converters: pure functions from values to a value, usable wherever a value is.

Those returning a bool (``IsMatch``, ``IsMap``, ``IsString``) may also stand
alone as a condition. Semantics follow the collector's ``ottlfuncs``; text
conversions follow Go's, so that a converter's result (a hash of a
concatenation, say) is the same string the collector would produce.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from relay.ottl import args
from relay.ottl.contexts import EvalError, Item, type_name
from relay.ottl.parse import Call, ListOf, StatementError
from relay.ottl.regex import compile_re2

Getter = Callable[[Item], Any]


@dataclass(frozen=True)
class Converter:
    build: Callable[[Call, Any], Getter]
    returns: str  # "bool", "string", "map or list": for messages, and to allow it as a condition
    # The str -> str function, for converters usable as the ``function`` argument of an editor.
    on_string: Callable[[str], str] | None = None


# --- Go's text forms ----------------------------------------------------------------------------

def go_float(value: float) -> str:
    """A float as Go's encoding/json writes it: shortest digits, exponent only outside [1e-6, 1e21)."""
    if math.isnan(value) or math.isinf(value):
        raise EvalError(f"{value} has no JSON form")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
        # Go keeps at least two exponent digits only for positive exponents ("1e+21", but "1e-7").
        return f"{mantissa}e{sign}{digits.zfill(2) if sign == '+' else digits}"
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _json_string(text: str) -> str:
    # Go's json.Marshal escapes HTML-significant characters and the JavaScript line separators.
    encoded = json.dumps(text, ensure_ascii=False)
    return (encoded.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def go_json(value: Any) -> str:
    """A value as Go's json.Marshal writes it: compact, map keys sorted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, bytes):
        # Go encodes a []byte inside JSON as base64.
        return _json_string(base64.b64encode(value).decode("ascii"))
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_string(k)}:{go_json(value[k])}" for k in sorted(value)) + "}"
    raise EvalError(f"a {type_name(value)} has no JSON form")


def string_like(value: Any) -> str | None:
    """A value as text, the way the collector's converters read a "string-like" argument; None stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return go_json(value)  # numbers and bools as strconv writes them, maps and lists as JSON


# --- the converters -----------------------------------------------------------------------------

def _one_value(call: Call, compiler, what: str = "the value") -> Getter:
    args.arity(call, "value")
    return compiler.value(args.not_a_list(call, 0, what))


def _is_match(call: Call, compiler) -> Getter:
    args.arity(call, "target", "pattern")
    read = compiler.value(args.not_a_list(call, 0, "the target"))
    search = compile_re2(args.string_literal(call, 1, "the pattern")).search

    def get(item):
        text = string_like(read(item))
        return text is not None and search(text) is not None
    return get


def _is_map(call: Call, compiler) -> Getter:
    read = _one_value(call, compiler)
    return lambda item: isinstance(read(item), dict)


def _is_string(call: Call, compiler) -> Getter:
    read = _one_value(call, compiler)
    return lambda item: isinstance(read(item), str)


def _string_argument(name: str, read: Getter) -> Getter:
    def get(item):
        value = read(item)
        if not isinstance(value, str):
            raise EvalError(f"{name}: expected string but got {type_name(value)}")
        return value
    return get


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sha256(call: Call, compiler) -> Getter:
    read = _string_argument("SHA256", _one_value(call, compiler))
    return lambda item: _sha256_text(read(item))


def _concat(call: Call, compiler) -> Getter:
    args.arity(call, "values", "delimiter")
    node = call.args[0]
    if not isinstance(node, ListOf):
        raise StatementError(f'the values of Concat must be a list such as [name, "x"], got {args.describe(node)}')
    parts = [compiler.value(inner) for inner in node.items]
    delimiter = _string_argument("Concat", compiler.value(args.not_a_list(call, 1, "the delimiter")))

    def get(item):
        texts = [string_like(part(item)) for part in parts]
        return delimiter(item).join("<nil>" if text is None else text for text in texts)
    return get


_GO_TYPES = {float: "float64", bool: "bool", str: "string", type(None): "<nil>"}


def _floats(value: Any) -> Any:
    # JSON numbers become float64 in the collector, integral or not.
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    return value


def _parse_json(call: Call, compiler) -> Getter:
    args.arity(call, "target")
    read = _string_argument("ParseJSON", compiler.value(args.not_a_list(call, 0, "the target")))

    def get(item):
        try:
            parsed = _floats(json.loads(read(item)))
        except ValueError as error:
            raise EvalError(f"ParseJSON: {error}") from None
        if not isinstance(parsed, (dict, list)):
            raise EvalError(f"ParseJSON: could not convert parsed value of type {_GO_TYPES[type(parsed)]} "
                            "to JSON object")
        return parsed
    return get




CONVERTERS: dict[str, Converter] = {
    "Concat": Converter(_concat, "string"),
    "IsMap": Converter(_is_map, "bool"),
    "IsMatch": Converter(_is_match, "bool"),
    "IsString": Converter(_is_string, "bool"),
    "ParseJSON": Converter(_parse_json, "map or list"),
    "SHA256": Converter(_sha256, "string", _sha256_text),
}
