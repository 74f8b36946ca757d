"""Decoding Zipkin v2 spans: the JSON array of Zipkin's API (``zipkin2-api.yaml``) and the
``ListOfSpans`` protobuf (``zipkin.proto``). Every problem is an InvalidDataError naming the
span (by its position in the array) and the field, so a client can find what it sent wrong.

Unknown JSON keys are ignored, as Zipkin's own parsers ignore them; a JSON null is the same as
a missing field (the OpenTelemetry SDK's exporter writes ``"kind": null`` for internal spans).
Ids are 1 to 32 (trace) or 1 to 16 (span) hex digits, left-padded, as zipkin-go reads them; a zero
trace or span id is refused, a zero parent id is a root. Two checks are stricter than the
collector's: a ``kind`` outside Zipkin's four and an endpoint address that is not an IP address
are refused (400) rather than read as no kind or no address.
"""

from __future__ import annotations

import json

from google.protobuf.message import DecodeError

from relay.errors import InvalidDataError
from relay.receivers.zipkin import proto
from relay.receivers.zipkin.model import KINDS, Endpoint, ZipkinSpan, address, hex_id, hex_parent, raw_id


def load_json(data: bytes, what: str):
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidDataError(f"cannot parse {what}: the body is not JSON ({error})") from None
    except RecursionError:
        raise InvalidDataError(f"cannot parse {what}: the JSON nests too deep") from None


def from_json(data: bytes) -> list[ZipkinSpan]:
    spans = load_json(data, "Zipkin v2 JSON")
    if not isinstance(spans, list):
        raise InvalidDataError(f"Zipkin v2 JSON must be an array of spans, not {kind_of(spans)}")
    return [_json_span(span, f"span {i}") for i, span in enumerate(spans)]


def kind_of(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def get_field(span: dict, key: str, kind: type | tuple, where: str, default=None):
    value = span.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidDataError(f"{where}: {key} must not be {kind_of(value)}")
    return value


def micros(span: dict, key: str, where: str) -> int | None:
    value = get_field(span, key, int, where)
    if value is not None and value < 0:
        raise InvalidDataError(f"{where}: {key} must not be negative")
    return value


def _json_span(span, where: str) -> ZipkinSpan:
    if not isinstance(span, dict):
        raise InvalidDataError(f"{where} must be an object, not {kind_of(span)}")
    if span.get("traceId") is None:
        raise InvalidDataError(f"{where}: traceId is required")
    if span.get("id") is None:
        raise InvalidDataError(f"{where}: id is required")
    trace_id = hex_id(span["traceId"], 16, f"{where}: traceId")
    span_id = hex_id(span["id"], 8, f"{where}: id")
    parent_id = hex_parent(span.get("parentId"), f"{where}: parentId")
    kind = get_field(span, "kind", str, where, "")
    if kind and kind not in KINDS:
        raise InvalidDataError(f'{where}: kind "{kind[:40]}" is not one of {", ".join(KINDS)}')
    tags = get_field(span, "tags", dict, where, {})
    for key, value in tags.items():
        if not isinstance(value, str):
            raise InvalidDataError(f'{where}: tag "{key[:80]}" must be a string, not {kind_of(value)}')
    annotations = []
    for i, annotation in enumerate(get_field(span, "annotations", list, where, [])):
        at = f"{where}: annotations[{i}]"
        if not isinstance(annotation, dict):
            raise InvalidDataError(f"{at} must be an object, not {kind_of(annotation)}")
        annotations.append((micros(annotation, "timestamp", at) or 0, get_field(annotation, "value", str, at, "")))
    return ZipkinSpan(
        trace_id=trace_id, id=span_id, parent_id=parent_id,
        name=get_field(span, "name", str, where, ""), kind=kind,
        timestamp=micros(span, "timestamp", where) or None, duration=micros(span, "duration", where) or 0,
        local_endpoint=_json_endpoint(span, "localEndpoint", where),
        remote_endpoint=_json_endpoint(span, "remoteEndpoint", where),
        annotations=annotations, tags=dict(tags),
        debug=get_field(span, "debug", bool, where, False), shared=get_field(span, "shared", bool, where, False))


def json_endpoint(value, where: str) -> Endpoint:
    if not isinstance(value, dict):
        raise InvalidDataError(f"{where} must be an object, not {kind_of(value)}")
    ipv4, ipv6 = get_field(value, "ipv4", str, where, ""), get_field(value, "ipv6", str, where, "")
    port = get_field(value, "port", int, where, 0)
    if not 0 <= port <= 65535:
        raise InvalidDataError(f"{where}: port {port} is not between 0 and 65535")
    return Endpoint(service_name=get_field(value, "serviceName", str, where, ""),
                    ipv4=address(ipv4, 4, f"{where}: ipv4") if ipv4 else "",
                    ipv6=address(ipv6, 6, f"{where}: ipv6") if ipv6 else "", port=port)


def _json_endpoint(span: dict, key: str, where: str) -> Endpoint | None:
    value = span.get(key)
    return None if value is None else json_endpoint(value, f"{where}: {key}")


def from_protobuf(data: bytes) -> list[ZipkinSpan]:
    try:
        message = proto.ListOfSpans.FromString(data)
    except DecodeError as error:
        raise InvalidDataError(f"cannot parse zipkin.proto3.ListOfSpans: {error}") from None
    return [_proto_span(span, f"span {i}") for i, span in enumerate(message.spans)]


def _proto_span(span, where: str) -> ZipkinSpan:
    # zipkin.proto: a trace id is 8 or 16 bytes, a span id 8; an absent parent is empty (or zeros).
    parent_id = raw_id(span.parent_id, (8,), 8, f"{where}: parent_id") if any(span.parent_id) else None
    kind = proto.KIND_NAMES.get(span.kind, "")
    return ZipkinSpan(
        trace_id=raw_id(span.trace_id, (8, 16), 16, f"{where}: trace_id"),
        id=raw_id(span.id, (8,), 8, f"{where}: id"), parent_id=parent_id,
        name=span.name, kind="" if kind == "SPAN_KIND_UNSPECIFIED" else kind,
        timestamp=span.timestamp or None, duration=span.duration,
        local_endpoint=_proto_endpoint(span, "local_endpoint", where),
        remote_endpoint=_proto_endpoint(span, "remote_endpoint", where),
        annotations=[(a.timestamp, a.value) for a in span.annotations], tags=dict(span.tags),
        debug=span.debug, shared=span.shared)


def _proto_endpoint(span, key: str, where: str) -> Endpoint | None:
    if not span.HasField(key):
        return None
    value = getattr(span, key)
    at = f"{where}: {key}"
    if not 0 <= value.port <= 65535:
        raise InvalidDataError(f"{at}: port {value.port} is not between 0 and 65535")
    if value.ipv4 and len(value.ipv4) != 4:
        raise InvalidDataError(f"{at}: ipv4 has {len(value.ipv4)} bytes (expected 4)")
    if value.ipv6 and len(value.ipv6) != 16:
        raise InvalidDataError(f"{at}: ipv6 has {len(value.ipv6)} bytes (expected 16)")
    return Endpoint(service_name=value.service_name,
                    ipv4=address(value.ipv4, 4, f"{at}: ipv4") if value.ipv4 else "",
                    ipv6=address(value.ipv6, 6, f"{at}: ipv6") if value.ipv6 else "", port=value.port)
