"""Jaeger's Thrift batches (``jaeger.thrift``) read into the ``jaeger.api_v2`` messages of ``proto``.

Jaeger clients send a ``Batch`` in Thrift's binary protocol to a collector's HTTP port
(``POST /api/traces``) and wrapped in an ``Agent.emitBatch`` call to an agent's UDP ports:
compact protocol on 6831, binary on 6832. Both protocols are read here, by hand: a few
dozen lines against a dependency with a generated-code step. The readers produce a generic
tree (a struct is ``{field id: (type, value)}``), and ``batch`` maps it onto the api_v2
messages by the field ids of ``jaeger.thrift``, so the receiver translates one model only.

As Thrift's own readers do, a field of an unexpected type is skipped and a missing
required field is an error. A thrift span's ``parentSpanId`` becomes a CHILD_OF reference
at the front of its references unless one already names it, as Jaeger's own converter does.
Every length read is checked against the bytes left, and nesting is bounded, so a hostile
payload costs at most its own size.
"""

from __future__ import annotations

import struct

from relay.jaeger import proto

# Thrift's type ids, as the binary protocol writes them.
STOP, BOOL, BYTE, DOUBLE, I16, I32, I64, STRING, STRUCT, MAP, SET, LIST = 0, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15
# The compact protocol's own type ids, by binary id (booleans carry their value in the type).
_COMPACT = {1: BOOL, 2: BOOL, 3: BYTE, 4: I16, 5: I32, 6: I64, 7: DOUBLE, 8: STRING, 9: LIST, 10: SET,
            11: MAP, 12: STRUCT}
# A Jaeger batch nests five deep (batch, span, log, tag); anything much deeper is not one.
MAX_DEPTH = 16
# Message types of a Thrift call: the agent's emitBatch is a oneway call.
CALL, ONEWAY = 1, 4
_VERSION_1 = 0x80010000
_COMPACT_ID = 0x82


class ThriftError(ValueError):
    """The bytes are not the Thrift the receiver expects."""


class _Cursor:
    """Bytes read in order, every read bounded by what is left."""

    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise ThriftError(f"truncated: needs {size} more bytes at offset {self.at}, has {len(self.data) - self.at}")
        chunk = self.data[self.at:self.at + size]
        self.at += size
        return chunk


class _Binary(_Cursor):
    """TBinaryProtocol: big-endian fixed-width numbers, lengths as i32."""

    def unpack(self, fmt: str, size: int):
        return struct.unpack(fmt, self.take(size))[0]

    def value(self, type_: int, depth: int):
        if type_ == BOOL:
            return self.unpack(">B", 1) != 0
        if type_ == BYTE:
            return self.unpack(">b", 1)
        if type_ == I16:
            return self.unpack(">h", 2)
        if type_ == I32:
            return self.unpack(">i", 4)
        if type_ == I64:
            return self.unpack(">q", 8)
        if type_ == DOUBLE:
            return self.unpack(">d", 8)
        if type_ == STRING:
            return self.take(self.unpack(">i", 4))
        if type_ == STRUCT:
            return self.struct(depth + 1)
        if type_ in (LIST, SET):
            element, count = self.unpack(">B", 1), self.unpack(">i", 4)
            return [self.value(element, depth + 1) for _ in range(_bounded(count, self))]
        if type_ == MAP:
            key, value, count = self.unpack(">B", 1), self.unpack(">B", 1), self.unpack(">i", 4)
            return [(self.value(key, depth + 1), self.value(value, depth + 1)) for _ in range(_bounded(count, self))]
        raise ThriftError(f"unknown thrift type {type_} at offset {self.at}")

    def struct(self, depth: int = 0) -> dict:
        if depth > MAX_DEPTH:
            raise ThriftError(f"structs nested deeper than {MAX_DEPTH}")
        fields = {}
        while True:
            type_ = self.unpack(">B", 1)
            if type_ == STOP:
                return fields
            field_id = self.unpack(">h", 2)
            fields[field_id] = (type_, self.value(type_, depth))

    def message(self) -> tuple[str, int, dict]:
        """(name, message type, the arguments struct) of a call."""
        first = self.unpack(">i", 4)
        if first < 0:  # strict: a version word, then the name
            if first & 0xFFFF0000 != _VERSION_1:
                raise ThriftError(f"unsupported binary protocol version {first & 0xFFFF0000:#x}")
            kind = first & 0xFF
            name = self.take(self.unpack(">i", 4))
        else:  # the old unversioned form: the name first, then the type
            name = self.take(first)
            kind = self.unpack(">B", 1)
        self.unpack(">i", 4)  # the sequence id: a oneway call is never answered
        return _text(name, "message name"), kind, self.struct()


class _Compact(_Cursor):
    """TCompactProtocol: zigzag varints, field ids as deltas, little-endian doubles."""

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        result = shift = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ThriftError(f"varint longer than 10 bytes at offset {self.at}")

    def zigzag(self) -> int:
        raw = self.varint()
        return (raw >> 1) ^ -(raw & 1)

    def compact_type(self, nibble: int) -> int:
        if nibble not in _COMPACT:
            raise ThriftError(f"unknown compact thrift type {nibble} at offset {self.at}")
        return _COMPACT[nibble]

    def value(self, type_: int, depth: int, boolean: bool | None = None):
        if type_ == BOOL:
            # A field's boolean is in its header; a list's booleans are a byte each.
            return boolean if boolean is not None else self.byte() == 1
        if type_ == BYTE:
            return struct.unpack("<b", self.take(1))[0]
        if type_ in (I16, I32, I64):
            return self.zigzag()
        if type_ == DOUBLE:
            return struct.unpack("<d", self.take(8))[0]
        if type_ == STRING:
            return self.take(self.varint())
        if type_ == STRUCT:
            return self.struct(depth + 1)
        if type_ in (LIST, SET):
            header = self.byte()
            count = header >> 4
            if count == 15:
                count = self.varint()
            element = self.compact_type(header & 0x0F)
            return [self.value(element, depth + 1) for _ in range(_bounded(count, self))]
        if type_ == MAP:
            count = self.varint()
            if count == 0:
                return []
            kinds = self.byte()
            key, value = self.compact_type(kinds >> 4), self.compact_type(kinds & 0x0F)
            return [(self.value(key, depth + 1), self.value(value, depth + 1)) for _ in range(_bounded(count, self))]
        raise ThriftError(f"unknown thrift type {type_} at offset {self.at}")

    def struct(self, depth: int = 0) -> dict:
        if depth > MAX_DEPTH:
            raise ThriftError(f"structs nested deeper than {MAX_DEPTH}")
        fields = {}
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return fields
            nibble, delta = header & 0x0F, header >> 4
            field_id = last + delta if delta else self.zigzag()
            type_ = self.compact_type(nibble)
            boolean = (nibble == 1) if type_ == BOOL else None
            fields[field_id] = (type_, self.value(type_, depth, boolean))
            last = field_id

    def message(self) -> tuple[str, int, dict]:
        if self.byte() != _COMPACT_ID:
            raise ThriftError("not a compact protocol message (no protocol id 0x82)")
        version = self.byte()
        if version & 0x1F != 1:
            raise ThriftError(f"unsupported compact protocol version {version & 0x1F}")
        self.varint()  # the sequence id
        name = self.take(self.varint())
        return _text(name, "message name"), version >> 5, self.struct()


def _bounded(count: int, reader) -> int:
    # Every element takes at least one byte, so a count past the bytes left is a lie.
    if count < 0 or count > len(reader.data) - reader.at:
        raise ThriftError(f"collection of {count} elements in {len(reader.data) - reader.at} bytes")
    return count


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ThriftError(f"{what} is not UTF-8") from None


# --- jaeger.thrift, by field id --------------------------------------------------------------

# TagType of jaeger.thrift, to the api_v2 ValueType.
_TAG_TYPES = {0: proto.STRING, 1: proto.FLOAT64, 2: proto.BOOL, 3: proto.INT64, 4: proto.BINARY}


def _get(fields: dict, field_id: int, type_: int, where: str, name: str, required: bool = False):
    found = fields.get(field_id)
    if found is None or found[0] != type_:
        if required:
            # Thrift skips a field of another type, so such a field is as good as missing.
            what = "is missing" if found is None else f"has thrift type {found[0]}, not {type_}"
            raise ThriftError(f"{where}: required field {name} {what}")
        return None
    return found[1]


def _structs(values: list | None) -> list:
    # A list of another element type reads as structs of nothing: skipped, as Thrift skips it.
    return [value for value in values or () if isinstance(value, dict)]


def _tag(fields: dict, where: str) -> proto.KeyValue:
    key = _text(_get(fields, 1, STRING, where, "key", True), f"{where}.key")
    vtype = _get(fields, 2, I32, where, "vType", True)
    kv = proto.KeyValue(key=key)
    if vtype not in _TAG_TYPES:
        # Kept as an unknown value type, for the translator to say so.
        kv.v_type = vtype if 0 <= vtype < 2 ** 31 else 0
        return kv
    kv.v_type = _TAG_TYPES[vtype]
    if kv.v_type == proto.STRING:
        kv.v_str = _text(_get(fields, 3, STRING, where, "vStr") or b"", f"{where}.vStr")
    elif kv.v_type == proto.FLOAT64:
        kv.v_float64 = _get(fields, 4, DOUBLE, where, "vDouble") or 0.0
    elif kv.v_type == proto.BOOL:
        kv.v_bool = bool(_get(fields, 5, BOOL, where, "vBool"))
    elif kv.v_type == proto.INT64:
        kv.v_int64 = _get(fields, 6, I64, where, "vLong") or 0
    else:
        kv.v_binary = _get(fields, 7, STRING, where, "vBinary") or b""
    return kv


def _tags(fields: dict, field_id: int, where: str, name: str, required: bool = False) -> list:
    values = _get(fields, field_id, LIST, where, name, required)
    return [_tag(tag, f"{where}.{name}[{i}]") for i, tag in enumerate(_structs(values))]


def _id(value: int, size: int) -> bytes:
    # Thrift's i64 is signed; an id is its 64 bits, big-endian.
    return (value & 0xFFFFFFFFFFFFFFFF).to_bytes(size, "big")


def _trace_id(high: int, low: int) -> bytes:
    return _id(high, 8) + _id(low, 8)


def _process(fields: dict, where: str) -> proto.Process:
    name = _text(_get(fields, 1, STRING, where, "serviceName", True), f"{where}.serviceName")
    return proto.Process(service_name=name, tags=_tags(fields, 2, where, "tags"))


# What the api_v2 messages can hold, in microseconds: a protobuf Timestamp is within the years
# 1 to 9999 and a Duration within 10000 years either way; past them protobuf raises.
_TIMESTAMP_US = (-62_135_596_800 * 10 ** 6, 253_402_300_799_999_999)
_DURATION_US = (-315_576_000_000 * 10 ** 6, 315_576_000_000 * 10 ** 6)


def _micros(value: int, bounds: tuple[int, int], what: str) -> int:
    if not bounds[0] <= value <= bounds[1]:
        kind = "a timestamp (years 1 to 9999)" if bounds is _TIMESTAMP_US else "a duration (10000 years)"
        raise ThriftError(f"{what} of {value} microseconds is past what {kind} can hold")
    return value


def _span(fields: dict, where: str) -> proto.Span:
    def need(field_id, type_, name):
        return _get(fields, field_id, type_, where, name, True)

    trace_id = _trace_id(need(2, I64, "traceIdHigh"), need(1, I64, "traceIdLow"))
    span = proto.Span(trace_id=trace_id, span_id=_id(need(3, I64, "spanId"), 8),
                      operation_name=_text(need(5, STRING, "operationName"), f"{where}.operationName"),
                      flags=need(7, I32, "flags") & 0xFFFFFFFF)
    parent = need(4, I64, "parentSpanId")
    start, duration = need(8, I64, "startTime"), need(9, I64, "duration")
    span.start_time.FromMicroseconds(_micros(start, _TIMESTAMP_US, f"{where}.startTime"))
    span.duration.FromMicroseconds(_micros(duration, _DURATION_US, f"{where}.duration"))
    references = []
    for i, ref in enumerate(_structs(_get(fields, 6, LIST, where, "references"))):
        at = f"{where}.references[{i}]"
        references.append(proto.SpanRef(
            trace_id=_trace_id(_get(ref, 3, I64, at, "traceIdHigh", True), _get(ref, 2, I64, at, "traceIdLow", True)),
            span_id=_id(_get(ref, 4, I64, at, "spanId", True), 8),
            ref_type=_get(ref, 1, I32, at, "refType", True) & 0x7FFFFFFF))
    parent_id = _id(parent, 8)
    if parent and not any(ref.span_id == parent_id and ref.trace_id == trace_id for ref in references):
        references.insert(0, proto.SpanRef(trace_id=trace_id, span_id=parent_id, ref_type=proto.CHILD_OF))
    span.references.extend(references)
    span.tags.extend(_tags(fields, 10, where, "tags"))
    for i, log in enumerate(_structs(_get(fields, 11, LIST, where, "logs"))):
        at = f"{where}.logs[{i}]"
        entry = span.logs.add()
        entry.timestamp.FromMicroseconds(_micros(_get(log, 1, I64, at, "timestamp", True), _TIMESTAMP_US,
                                                 f"{at}.timestamp"))
        entry.fields.extend(_tags(log, 2, at, "fields", True))
    return span


def batch(fields: dict) -> proto.Batch:
    """A ``jaeger.thrift`` Batch struct (as the readers return it) as an api_v2 ``Batch``."""
    result = proto.Batch(process=_process(_get(fields, 1, STRUCT, "batch", "process", True), "batch.process"))
    spans = _get(fields, 2, LIST, "batch", "spans", True)
    result.spans.extend(_span(span, f"batch.spans[{i}]") for i, span in enumerate(_structs(spans)))
    return result


def read_batch(data: bytes) -> proto.Batch:
    """A Batch in the binary protocol, as a collector's HTTP port takes it."""
    reader = _Binary(data)
    fields = reader.struct()
    return batch(fields)


def read_emit_batch(data: bytes, compact: bool) -> proto.Batch:
    """An ``Agent.emitBatch`` call, as an agent's UDP ports take it (one per datagram)."""
    reader = _Compact(data) if compact else _Binary(data)
    name, kind, arguments = reader.message()
    if name != "emitBatch":
        raise ThriftError(f'unsupported agent call "{name}" (supported: emitBatch)')
    if kind not in (CALL, ONEWAY):
        raise ThriftError(f"message type {kind} is not a call")
    found = _get(arguments, 1, STRUCT, "emitBatch", "batch", True)
    return batch(found)
