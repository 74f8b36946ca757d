"""Appending attributes to a span as encoded protobuf, in one C call per span.

Adding attributes one ``KeyValue`` at a time costs a Python round trip per
field; encoding the new ``KeyValue`` entries here and merging them with
``MergeFromString`` appends them all at once (repeated fields concatenate on
merge). Only keys the span does not carry yet may go this way: a merge never
replaces an entry. Encodings of repeated string attributes are cached.
"""

from __future__ import annotations

import struct

_SPAN_ATTRIBUTES = b"\x4a"   # Span.attributes = 9, length-delimited
_KEY = b"\x0a"               # KeyValue.key = 1
_VALUE = b"\x12"             # KeyValue.value = 2
_STRING = b"\x0a"            # AnyValue.string_value = 1
_BOOL = b"\x10"              # AnyValue.bool_value = 2
_INT = b"\x18"               # AnyValue.int_value = 3
_DOUBLE = b"\x21"            # AnyValue.double_value = 4, fixed64
_pack_double = struct.Struct("<d").pack

_CACHE_LIMIT = 8192
_ONE_BYTE = [bytes((n,)) for n in range(0x80)]
_strings: dict[tuple[str, str], bytes] = {}
_double_prefixes: dict[str, bytes] = {}


def varint(number: int) -> bytes:
    # Token counts fit in one to three bytes; those skip the loop.
    if 0 <= number < 0x80:
        return _ONE_BYTE[number]
    if 0 <= number < 0x4000:
        return bytes((number & 0x7F | 0x80, number >> 7))
    if 0 <= number < 0x200000:
        return bytes((number & 0x7F | 0x80, (number >> 7) & 0x7F | 0x80, number >> 14))
    if number < 0:
        number += 1 << 64  # int64 is two's complement on the wire
    if not 0 <= number < 1 << 64:
        raise ValueError(f"{number} does not fit in 64 bits")
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def key_field(key: str) -> bytes:
    """The encoded ``KeyValue.key`` field of ``key``."""
    return _field(_KEY, key.encode())


def _entry(key: str, any_value: bytes) -> bytes:
    return _field(_SPAN_ATTRIBUTES, _field(_KEY, key.encode()) + _field(_VALUE, any_value))


def string_attribute(key: str, value: str) -> bytes:
    cached = _strings.get((key, value))
    if cached is None:
        cached = _entry(key, _field(_STRING, value.encode()))
        if len(_strings) < _CACHE_LIMIT:
            _strings[(key, value)] = cached
    return cached


_int_prefixes: dict[str, bytes] = {}


def int_attribute(key: str, value: int) -> bytes:
    # Entry = tag, entry length, key field, value-field tag, AnyValue length, int tag, varint:
    # everything before the entry length and after it up to the varint depends on the key only.
    encoded = varint(value)
    head = _int_prefixes.get(key)
    if head is None:
        head = _int_prefixes[key] = _field(_KEY, key.encode()) + _VALUE
    any_value = _INT + encoded
    inner = head + varint(len(any_value)) + any_value
    return _SPAN_ATTRIBUTES + varint(len(inner)) + inner


def double_attribute(key: str, value: float) -> bytes:
    prefix = _double_prefixes.get(key)
    if prefix is None:
        whole = _entry(key, _DOUBLE + _pack_double(0.0))
        prefix = _double_prefixes[key] = whole[:-8]
    return prefix + _pack_double(value)


def attribute(key: str, value) -> bytes:
    if isinstance(value, bool):
        return _entry(key, _BOOL + (b"\x01" if value else b"\x00"))
    if isinstance(value, int):
        return int_attribute(key, value)
    if isinstance(value, float):
        return double_attribute(key, value)
    return string_attribute(key, str(value))
