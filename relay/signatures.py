"""An attribute list's wanted keys as one hashable value: a signature.

Each present wanted key contributes (its slot and the length of its value as varints, the
value's serialized ``AnyValue``), in slot order; the first entry of a key counts, as the native
scanners (``relay/wire.h``) read it. Items whose signatures are equal carry the same values
under those keys, so what those values decide can be kept by signature.
"""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_SCALARS = frozenset(("string_value", "bool_value", "int_value", "double_value"))


def scalar(value: AnyValue):
    """The value as a str, int, float or bool; Ellipsis for a value of another kind."""
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in _SCALARS else ...


def varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def signature(attributes, index: dict[str, int], below: int) -> bytes:
    """The signature of the keys whose slot is below ``below``, from ``KeyValue`` messages."""
    raw: dict[int, bytes] = {}
    for kv in attributes:
        slot = index.get(kv.key)
        if slot is not None and slot < below and slot not in raw:
            raw[slot] = kv.value.SerializeToString()
    return b"".join(varint(slot) + varint(len(raw[slot])) + raw[slot] for slot in sorted(raw))


def values(signature_: bytes) -> dict[int, object]:
    """{slot: value} of a signature, values as ``scalar`` gives them."""
    found, pos = {}, 0
    while pos < len(signature_):
        slot, pos = _read_varint(signature_, pos)
        length, pos = _read_varint(signature_, pos)
        found[slot] = scalar(AnyValue.FromString(signature_[pos:pos + length]))
        pos += length
    return found


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    number, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        number |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return number, pos
