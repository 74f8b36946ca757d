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
import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from relay.ottl import args
from relay.ottl.contexts import EvalError, Item, type_name
from relay.ottl.gofmt import sprintf
from relay.ottl.parse import Call, Const, ListOf, StatementError, quote
from relay.ottl.regex import compile_re2, compile_re2_named

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
    try:
        return _go_json(value)
    except RecursionError:  # a list in a list in ..., as deep as ParseJSON could read
        raise EvalError("the value is nested too deeply to write as JSON") from None


def _go_json(value: Any) -> str:
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
        return "[" + ",".join(_go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_string(k)}:{_go_json(value[k])}" for k in sorted(value)) + "}"
    raise EvalError(f"a {type_name(value)} has no JSON form")


def string_like(value: Any) -> str | None:
    """A value as text, the way the collector's converters read a "string-like" argument; None stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return go_json(value)  # numbers and bools as strconv writes them, maps and lists as JSON


# --- the converters -----------------------------------------------------------------------------

def _one_value(call: Call, compiler, name: str = "value") -> Getter:
    call = args.arity(call, name)
    return compiler.value(call.args[0])  # a list or map literal is a value too


def _is_match(call: Call, compiler) -> Getter:
    call = args.arity(call, "target", "pattern")
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


def _concat(call: Call, compiler) -> Getter:
    call = args.arity(call, "values", "delimiter")
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


def _json_number(text: str) -> float:
    # JSON numbers become float64 in the collector, integral or not; Go's decoder refuses one that
    # overflows a float64 ("1e400", or 400 digits) where Python would give infinity or a huge int.
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"cannot unmarshal number {text[:32]}{'...' if len(text) > 32 else ''} into a float64")
    return number


def _json_constant(name: str) -> Any:
    raise ValueError(f"invalid character {quote(name[0])} looking for beginning of value")  # Go has no NaN literal


def _parse_json(call: Call, compiler) -> Getter:
    call = args.arity(call, "target")
    read = _string_argument("ParseJSON", compiler.value(args.not_a_list(call, 0, "the target")))

    def get(item):
        try:
            parsed = json.loads(read(item), parse_int=_json_number, parse_float=_json_number,
                                parse_constant=_json_constant)
        except ValueError as error:
            raise EvalError(f"ParseJSON: {error}") from None
        except RecursionError:
            raise EvalError("ParseJSON: the document is nested too deeply") from None
        if not isinstance(parsed, (dict, list)):
            raise EvalError(f"ParseJSON: could not convert parsed value of type {_GO_TYPES[type(parsed)]} "
                            "to JSON object")
        return parsed
    return get



# --- type checks --------------------------------------------------------------------------------

def _is(kind: Callable[[Any], bool]) -> Callable[[Call, Any], Getter]:
    def build(call: Call, compiler) -> Getter:
        read = _one_value(call, compiler)
        return lambda item: kind(read(item))
    return build


def _int_value(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- strings ------------------------------------------------------------------------------------

def _string_target(call: Call, compiler, index: int = 0, what: str = "the target") -> Getter:
    """A string-valued argument: a literal of another type is refused now, a value at run time."""
    node = args.literal_of(call, index, what, (str,), "a string")
    return _string_argument(call.name, compiler.value(node))


def _on_text(function: Callable[[str], Any], name: str = "target") -> Callable[[Call, Any], Getter]:
    def build(call: Call, compiler) -> Getter:
        call = args.arity(call, name)
        read = _string_target(call, compiler, 0, f"the {name}")
        return lambda item: function(read(item))
    return build


def _hash(algorithm: str) -> Callable[[str], str]:
    return lambda text: hashlib.new(algorithm, text.encode("utf-8")).hexdigest()


def _affix(combine: Callable[[str, str], Any], name: str) -> Callable[[Call, Any], Getter]:
    """A converter of a string and its ``name`` (prefix or suffix): HasPrefix, TrimSuffix, ..."""
    def build(call: Call, compiler) -> Getter:
        call = args.arity(call, "value", name)
        read = _string_target(call, compiler, 0, "the value")
        affix = _string_target(call, compiler, 1, f"the {name}")
        return lambda item: combine(read(item), affix(item))
    return build


def _trim(call: Call, compiler) -> Getter:
    call = args.arity(call, "target", optional=("replacement",))
    read = _string_target(call, compiler)
    # Go's strings.Trim: every leading and trailing character found in the set goes.
    cutset = args.optional_string(call, 1, "the replacement", " ")
    return lambda item: read(item).strip(cutset)


def _int_argument(call: Call, compiler, index: int, what: str) -> Getter:
    node = args.literal_of(call, index, what, (int,), "an integer")
    read = compiler.value(node)
    name = call.name

    def get(item):
        value = read(item)
        if not _int_value(value):
            raise EvalError(f"{name}: {what} must be an int, got {type_name(value)}")
        return value
    return get


def _substring(call: Call, compiler) -> Getter:
    call = args.arity(call, "target", "start", "length", optional=("utf8_safe",))
    read = _string_target(call, compiler)
    start_of = _int_argument(call, compiler, 1, "the start")
    length_of = _int_argument(call, compiler, 2, "the length")
    for index, what, least in ((1, "start", 0), (2, "length", 1)):
        node = call.args[index]
        if isinstance(node, Const) and node.value < least:
            rule = "cannot be negative" if least == 0 else "cannot be negative or zero"
            raise StatementError(f"invalid {what} for Substring, {node.value} {rule}")
    utf8_safe = args.given(call, 3) and args.bool_literal(call, 3, "the utf8_safe")

    def get(item):
        data = read(item).encode("utf-8")
        start, length = start_of(item), length_of(item)
        if start < 0:
            raise EvalError(f"Substring: invalid start {start}, cannot be negative")
        if length <= 0:
            raise EvalError(f"Substring: invalid length {length}, cannot be negative or zero")
        end = start + length
        if end > len(data):
            raise EvalError(f"Substring: invalid range, {end} is past the end of the string ({len(data)} bytes)")
        if utf8_safe:
            # Continuation bytes are 10xxxxxx: move the start forward and the end back to a character boundary.
            while start < len(data) and data[start] & 0xC0 == 0x80:
                start += 1
            while end > start and end < len(data) and data[end] & 0xC0 == 0x80:
                end -= 1
        # Offsets count bytes, as in the collector; a cut through a character leaves U+FFFD, since an
        # OTLP string must be valid UTF-8.
        return data[start:max(start, end)].decode("utf-8", "replace")
    return get


def _split(call: Call, compiler) -> Getter:
    call = args.arity(call, "target", "delimiter")
    read = _string_target(call, compiler)
    delimiter = args.string_literal(call, 1, "the delimiter")

    def get(item):
        text = read(item)
        if delimiter == "":
            return list(text)  # Go splits after each character
        return text.split(delimiter)
    return get


def _format(call: Call, compiler) -> Getter:
    call = args.arity(call, "formatString", "formatArguments")
    template = _string_target(call, compiler, 0, "the formatString")
    node = call.args[1]
    if not isinstance(node, ListOf):
        raise StatementError(f"the formatArguments of Format must be a list such as [name], got {args.describe(node)}")
    values = [compiler.value(inner) for inner in node.items]
    return lambda item: sprintf(template(item), [value(item) for value in values])


def _extract_patterns(call: Call, compiler) -> Getter:
    call = args.arity(call, "target", "pattern")
    read = _string_target(call, compiler)
    pattern, names = compile_re2_named(args.string_literal(call, 1, "the pattern"))
    if not names:
        raise StatementError(f"the pattern of ExtractPatterns must contain at least one named capture group "
                             f"such as (?P<name>...), got {args.describe(call.args[1])}")

    def get(item):
        found = pattern.search(read(item))
        if found is None:
            return {}
        # Every named group is in the result, one that took no part as "" (Go's submatch for it).
        return {name: found.group(group) or "" for group, name in names}
    return get


def _split_respecting_quotes(text: str, delimiter: str) -> list[str]:
    """The collector's split for key-value pairs: quotes protect delimiters and are dropped; empty parts go."""
    parts, current, quote_char, pos = [], "", "", 0
    while pos < len(text):
        if not quote_char and text.startswith(delimiter, pos):
            if current:
                parts.append(current)
                current = ""
            pos += len(delimiter)
            continue
        char = text[pos]
        pos += 1
        if not quote_char and char in "\"'":
            quote_char = char
        elif char == quote_char:
            quote_char = ""
        else:
            current += char
    if quote_char:
        raise EvalError("ParseKeyValue: never reached the end of a quoted value")
    if current:
        parts.append(current)
    return parts


def _parse_key_value(call: Call, compiler) -> Getter:
    call = args.arity(call, "target", optional=("delimiter", "pair_delimiter"))
    read = _string_target(call, compiler)
    # An empty delimiter means the default, as in the collector.
    delimiter = args.optional_string(call, 1, "the delimiter", "=") or "="
    pair_delimiter = args.optional_string(call, 2, "the pair_delimiter", " ") or " "
    if delimiter == pair_delimiter:
        raise StatementError(f"the pair_delimiter of ParseKeyValue ({quote(pair_delimiter)}) cannot be the same "
                             f"as the delimiter ({quote(delimiter)})")

    def get(item):
        text = read(item)
        if text == "":
            raise EvalError("ParseKeyValue: cannot parse from empty target")
        parsed: dict[str, str] = {}
        for pair in _split_respecting_quotes(text, pair_delimiter):
            key, found, value = pair.partition(delimiter)
            if not found:
                raise EvalError(f"ParseKeyValue: cannot split {quote(pair)} into 2 items, got 1 item(s)")
            parsed[key.strip()] = value.strip()
        return parsed
    return get


# --- conversions --------------------------------------------------------------------------------

_DECIMAL_INT = re.compile(r"([+-]?)0*([0-9]+)")
# Unambiguous, so a long run of digits that fails at its end is not retried split after split.
_DECIMAL_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?i:inf|infinity|nan)")
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        number = math.trunc(value)  # the fraction is dropped, towards zero
    elif isinstance(value, str) and (decimal := _DECIMAL_INT.fullmatch(value)):
        # Go's strconv.ParseInt: decimal digits only, so "2.0" is not an int. More than 19 significant
        # digits is past int64 (and past what Python's int() will read, at some thousands).
        sign, digits = decimal.groups()
        if len(digits) > 19:
            return None
        number = int(sign + digits)
    else:
        return None
    return number if _INT64[0] <= number <= _INT64[1] else None


def _to_double(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _DECIMAL_FLOAT.fullmatch(value):
        number = float(value)
        # Go's strconv.ParseFloat refuses what overflows a float64 rather than giving infinity.
        return None if math.isinf(number) and "n" not in value.lower() else number
    return None


def _to_string(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.hex()
    return string_like(value)


def _converting(convert: Callable[[Any], Any]) -> Callable[[Call, Any], Getter]:
    def build(call: Call, compiler) -> Getter:
        read = _one_value(call, compiler)
        return lambda item: convert(read(item))
    return build


def _len(call: Call, compiler) -> Getter:
    read = _one_value(call, compiler, "target")

    def get(item):
        value = read(item)
        if isinstance(value, str):
            return len(value.encode("utf-8"))  # Go's len counts a string's bytes
        if isinstance(value, (list, dict)):
            return len(value)
        raise EvalError(f"Len: expected a string, list or map but got {type_name(value)}")
    return get


def _hex_bytes(value: Any) -> bytes | None:
    """A value as the collector reads a "byte slice like" argument: numbers big-endian, strings as UTF-8."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return struct.pack(">q", value)
    if isinstance(value, float):
        return struct.pack(">d", value)
    return None


def _hex(call: Call, compiler) -> Getter:
    read = _one_value(call, compiler)

    def get(item):
        data = _hex_bytes(read(item))
        return None if data is None else data.hex()
    return get


def _map_argument(call: Call, compiler) -> Getter:
    read = _one_value(call, compiler, "target")
    name = call.name

    def get(item):
        value = read(item)
        if not isinstance(value, dict):
            raise EvalError(f"{name}: expected a map but got {type_name(value)}")
        return value
    return get


def _keys(call: Call, compiler) -> Getter:
    read = _map_argument(call, compiler)
    return lambda item: list(read(item))


def _values(call: Call, compiler) -> Getter:
    read = _map_argument(call, compiler)
    return lambda item: list(read(item).values())


def _id(size: int) -> Callable[[Call, Any], Getter]:
    def build(call: Call, compiler) -> Getter:
        call = args.arity(call, "target")
        node = call.args[0]
        if not (isinstance(node, Const) and isinstance(node.value, str)):
            raise StatementError(f"the target of {call.name} must be a string literal of {2 * size} hex "
                                 f"characters, got {args.describe(node)}")
        text = node.value
        if len(text) != 2 * size or not all(c in "0123456789abcdefABCDEF" for c in text):
            raise StatementError(f"the target of {call.name} must be {2 * size} hex characters, got {quote(text)}")
        value = bytes.fromhex(text)
        return lambda item: value
    return build


def _uuid(call: Call, compiler) -> Getter:
    args.arity(call)
    return lambda item: str(uuid.uuid4())  # a random (version 4) UUID, new on every call


CONVERTERS: dict[str, Converter] = {
    "Concat": Converter(_concat, "string"),
    "Double": Converter(_converting(_to_double), "double"),
    "ExtractPatterns": Converter(_extract_patterns, "map"),
    "Format": Converter(_format, "string"),
    "HasPrefix": Converter(_affix(str.startswith, "prefix"), "bool"),
    "HasSuffix": Converter(_affix(str.endswith, "suffix"), "bool"),
    "Hex": Converter(_hex, "string"),
    "Int": Converter(_converting(_to_int), "int"),
    "IsBool": Converter(_is(lambda v: isinstance(v, bool)), "bool"),
    "IsDouble": Converter(_is(lambda v: isinstance(v, float)), "bool"),
    "IsInt": Converter(_is(_int_value), "bool"),
    "IsList": Converter(_is(lambda v: isinstance(v, list)), "bool"),
    "IsMap": Converter(_is_map, "bool"),
    "IsMatch": Converter(_is_match, "bool"),
    "IsString": Converter(_is_string, "bool"),
    "Keys": Converter(_keys, "list"),
    "Len": Converter(_len, "int"),
    "MD5": Converter(_on_text(_hash("md5"), "value"), "string", _hash("md5")),
    "ParseJSON": Converter(_parse_json, "map or list"),
    "ParseKeyValue": Converter(_parse_key_value, "map"),
    "SHA1": Converter(_on_text(_hash("sha1"), "value"), "string", _hash("sha1")),
    "SHA256": Converter(_on_text(_sha256_text, "value"), "string", _sha256_text),
    "SHA512": Converter(_on_text(_hash("sha512"), "input"), "string", _hash("sha512")),
    "SpanID": Converter(_id(8), "bytes"),
    "Split": Converter(_split, "list"),
    "String": Converter(_converting(_to_string), "string"),
    "Substring": Converter(_substring, "string"),
    "ToLowerCase": Converter(_on_text(str.lower), "string", str.lower),
    "ToUpperCase": Converter(_on_text(str.upper), "string", str.upper),
    "TraceID": Converter(_id(16), "bytes"),
    "Trim": Converter(_trim, "string"),
    "TrimPrefix": Converter(_affix(str.removeprefix, "prefix"), "string"),
    "TrimSuffix": Converter(_affix(str.removesuffix, "suffix"), "string"),
    "UUID": Converter(_uuid, "string"),
    "Values": Converter(_values, "list"),
}
