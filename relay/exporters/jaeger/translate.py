"""OTLP traces to Jaeger ``api_v2`` batches, as the collector's Jaeger translator maps them.

One ``Batch`` per resource: the resource becomes the batch's ``Process``
(``service.name`` its service name, every other attribute a process tag) and
each span carries the rest of what OTLP says as Jaeger tags, references and
logs. A resource without spans sends nothing: an empty batch tells Jaeger
nothing it would store.
"""

from __future__ import annotations

import base64
import decimal
import json
import math

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from relay.attributes.values import plain_double, scalar_text
from relay.jaeger import proto

SERVICE_NAME = "service.name"
NO_SERVICE_NAME = "OTLPResourceNoServiceName"

_SPAN_KIND = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "internal",
    trace_pb2.Span.SPAN_KIND_SERVER: "server",
    trace_pb2.Span.SPAN_KIND_CLIENT: "client",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "producer",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "consumer",
}
_STATUS = {trace_pb2.Status.STATUS_CODE_OK: "OK", trace_pb2.Status.STATUS_CODE_ERROR: "ERROR"}

# OTLP span flags: the low 8 bits are the W3C trace flags (bits 8 and 9 say whether the
# parent is remote). Only the sampled bit means the same in Jaeger, where bit 1 is "debug"
# while W3C uses it for "random trace id".
_TRACE_FLAGS = 0xFF
_SAMPLED = 0x01


def batches(request) -> list:
    """One ``Batch`` per resource that has spans, in request order."""
    out = []
    for resource_spans in request.resource_spans:
        spans = [(span, scope_spans.scope) for scope_spans in resource_spans.scope_spans
                 for span in scope_spans.spans]
        if not spans:
            continue
        batch = proto.Batch(process=process(resource_spans.resource))
        batch.spans.extend(translate_span(span, scope) for span, scope in spans)
        out.append(batch)
    return out


def process(resource) -> proto.Process:
    result = proto.Process(service_name=NO_SERVICE_NAME)
    for kv in resource.attributes:
        if kv.key == SERVICE_NAME:
            result.service_name = as_string(kv.value)
        else:
            result.tags.append(tag(kv.key, kv.value))
    return result


def translate_span(span, scope) -> proto.Span:
    trace_id = _pad(span.trace_id, 16)
    result = proto.Span(trace_id=trace_id, span_id=_pad(span.span_id, 8), operation_name=span.name,
                        flags=_flags(span.flags))
    if any(span.parent_span_id):
        result.references.add(trace_id=trace_id, span_id=_pad(span.parent_span_id, 8), ref_type=proto.CHILD_OF)
    for link in span.links:
        result.references.add(trace_id=_pad(link.trace_id, 16), span_id=_pad(link.span_id, 8),
                              ref_type=proto.FOLLOWS_FROM)
    result.start_time.FromNanoseconds(span.start_time_unix_nano)
    result.duration.FromNanoseconds(max(0, span.end_time_unix_nano - span.start_time_unix_nano))
    result.tags.extend(span_tags(span, scope))
    for event in span.events:
        log = result.logs.add()
        log.timestamp.FromNanoseconds(event.time_unix_nano)
        # The event's name goes first, unless an attribute already says "event".
        if event.name and not any(kv.key == "event" for kv in event.attributes):
            log.fields.add(key="event", v_type=proto.STRING, v_str=event.name)
        log.fields.extend(tag(kv.key, kv.value) for kv in event.attributes)
    return result


def span_tags(span, scope) -> list:
    tags = [tag(kv.key, kv.value) for kv in span.attributes]
    if span.kind in _SPAN_KIND:
        tags.append(proto.KeyValue(key="span.kind", v_type=proto.STRING, v_str=_SPAN_KIND[span.kind]))
    code = span.status.code
    if code in _STATUS:
        tags.append(proto.KeyValue(key="otel.status_code", v_type=proto.STRING, v_str=_STATUS[code]))
    if code == trace_pb2.Status.STATUS_CODE_ERROR:
        tags.append(proto.KeyValue(key="error", v_type=proto.BOOL, v_bool=True))
    if span.status.message:
        tags.append(proto.KeyValue(key="otel.status_description", v_type=proto.STRING, v_str=span.status.message))
    if span.trace_state:
        tags.append(proto.KeyValue(key="w3c.tracestate", v_type=proto.STRING, v_str=span.trace_state))
    if scope.name:
        tags.append(proto.KeyValue(key="otel.scope.name", v_type=proto.STRING, v_str=scope.name))
    if scope.version:
        tags.append(proto.KeyValue(key="otel.scope.version", v_type=proto.STRING, v_str=scope.version))
    return tags


def tag(key: str, value: AnyValue) -> proto.KeyValue:
    kind = value.WhichOneof("value")
    if kind == "bool_value":
        return proto.KeyValue(key=key, v_type=proto.BOOL, v_bool=value.bool_value)
    if kind == "int_value":
        return proto.KeyValue(key=key, v_type=proto.INT64, v_int64=value.int_value)
    if kind == "double_value":
        return proto.KeyValue(key=key, v_type=proto.FLOAT64, v_float64=value.double_value)
    if kind == "bytes_value":
        return proto.KeyValue(key=key, v_type=proto.BINARY, v_binary=value.bytes_value)
    # Strings, arrays and kvlists (as JSON), and an empty value (as "").
    return proto.KeyValue(key=key, v_type=proto.STRING, v_str=as_string(value))


def as_string(value: AnyValue) -> str:
    """An attribute value as text, the way the collector's pdata writes it (``AsString``)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    text = scalar_text(value)
    if text is not None:
        return text
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return _json(value)


def _json(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return "null"
    if kind == "string_value":
        return json.dumps(value.string_value, ensure_ascii=False)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return _json_float(value.double_value)
    if kind == "bytes_value":
        return json.dumps(base64.b64encode(value.bytes_value).decode("ascii"))
    if kind == "array_value":
        return "[" + ",".join(_json(item) for item in value.array_value.values) + "]"
    # A kvlist is a map there: keys sorted, the last of a repeated key winning.
    entries = {kv.key: kv.value for kv in value.kvlist_value.values}
    return "{" + ",".join(f"{json.dumps(key, ensure_ascii=False)}:{_json(entries[key])}"
                          for key in sorted(entries)) + "}"


def _json_float(number: float) -> str:
    # JSON numbers as Go writes them: shortest digits, an exponent only far from 1.
    if not math.isfinite(number):
        return "null"
    magnitude = abs(number)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        return _exponent_form(number)
    return plain_double(number)


def _exponent_form(number: float) -> str:
    digits = repr(number)  # shortest round-trip digits; may be positional or exponent
    value = decimal.Decimal(digits)
    sign, coefficient, exponent = value.as_tuple()
    coefficient_text = "".join(str(d) for d in coefficient).rstrip("0") or "0"
    point_exponent = exponent + len(coefficient) - 1
    mantissa = coefficient_text[0] + ("." + coefficient_text[1:] if len(coefficient_text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{point_exponent:+d}"


def _flags(flags: int) -> int:
    # No trace flags at all means "not recorded" (the Python SDK never records them), not
    # "not sampled": a span that reached an exporter was sampled.
    trace_flags = flags & _TRACE_FLAGS
    if trace_flags == 0:
        return _SAMPLED
    return trace_flags & _SAMPLED


def _pad(identifier: bytes, size: int) -> bytes:
    # Jaeger ids are fixed width; OTLP ids are big-endian, so a short one pads on the left.
    return identifier.rjust(size, b"\0")[-size:]
