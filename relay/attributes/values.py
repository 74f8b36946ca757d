"""What the attributes and resource processors do to one value: hash, convert, render as text.

The semantics are the collector's (see ``attraction``'s docstring for where they
differ on purpose): a string hashes as its UTF-8 bytes, a bool as one byte, an
int and a double as 8 bytes little-endian; conversions that fail leave the
value unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from decimal import Decimal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from relay import attrs

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_INT_BYTES = struct.Struct("<q")
_DOUBLE_BYTES = struct.Struct("<d")


def digest(value: AnyValue) -> str | None:
    """SHA-256 hex digest of a value (see the module docstring for the bytes), None for an empty one."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        data = value.string_value.encode()
    elif kind == "bool_value":
        data = b"\x01" if value.bool_value else b"\x00"
    elif kind == "int_value":
        data = _INT_BYTES.pack(value.int_value)
    elif kind == "double_value":
        data = _DOUBLE_BYTES.pack(value.double_value)
    elif kind == "bytes_value":
        data = value.bytes_value
    elif kind is None:
        return None
    else:
        data = value.SerializeToString(deterministic=True)
    return hashlib.sha256(data).hexdigest()


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_DOUBLE_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DOUBLE_WORD = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def parse_int(text: str) -> int | None:
    if not _INT_TEXT.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def parse_double(text: str) -> float | None:
    if _DOUBLE_WORD.fullmatch(text):
        return float(text)
    if not _DOUBLE_TEXT.fullmatch(text):
        return None
    number = float(text)
    return None if math.isinf(number) else number


def plain_double(number: float) -> str:
    """Shortest round-trip digits without an exponent: Go's FormatFloat(f, 'f', -1, 64)."""
    if not math.isfinite(number):
        return "NaN" if math.isnan(number) else ("+Inf" if number > 0 else "-Inf")
    return format(Decimal(repr(number)).normalize(), "f")


_EXPONENT_ZERO = re.compile(r"e([+-])0(\d)$")


def es6_double(number: float) -> str:
    """A double as the collector's AsString writes it (ES6 number-to-string)."""
    magnitude = abs(number)
    if not math.isfinite(number) or magnitude == 0 or 1e-6 <= magnitude < 1e21:
        return plain_double(number)
    # Here repr always uses an exponent; ES6 drops the exponent's leading zero.
    return _EXPONENT_ZERO.sub(r"e\1\2", repr(number))


def scalar_text(value: AnyValue) -> str | None:
    """A string, bool, int or double as text for regexp matching (the collector's forms); None otherwise."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return plain_double(value.double_value)
    return None


def _to_int(value: AnyValue) -> None:
    kind = value.WhichOneof("value")
    if kind == "double_value":
        number = value.double_value
        if math.isfinite(number) and _INT64_MIN <= number < -float(_INT64_MIN):
            value.int_value = int(number)
    elif kind == "bool_value":
        value.int_value = int(value.bool_value)
    elif kind == "string_value":
        number = parse_int(value.string_value)
        if number is not None:
            value.int_value = number


def _to_double(value: AnyValue) -> None:
    kind = value.WhichOneof("value")
    if kind == "int_value":
        value.double_value = float(value.int_value)
    elif kind == "bool_value":
        value.double_value = 1.0 if value.bool_value else 0.0
    elif kind == "string_value":
        number = parse_double(value.string_value)
        if number is not None:
            value.double_value = number


def _to_string(value: AnyValue) -> None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return
    if kind == "double_value":
        text = es6_double(value.double_value)
    elif kind == "bytes_value":
        text = base64.b64encode(value.bytes_value).decode()
    elif kind in ("array_value", "kvlist_value"):
        text = json.dumps(attrs.to_python(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False,
                          default=lambda b: base64.b64encode(b).decode())
    else:
        text = scalar_text(value) or ""
    value.string_value = text


CONVERTERS = {"int": _to_int, "double": _to_double, "string": _to_string}
