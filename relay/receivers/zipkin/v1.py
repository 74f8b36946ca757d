"""Decoding Zipkin v1 JSON (``zipkin-api.yaml``) into v2 spans, as the collector's zipkinv1
translator reads it:

- the first core annotation (``cs``/``cr`` client, ``sr``/``ss`` server, ``ms`` producer, ``mr``
  consumer) gives the kind; the first core annotation whose endpoint names a service gives the
  local endpoint; core annotations are not events, every other annotation is one;
- without a span ``timestamp``, the earliest and latest annotation give the start and end;
- binary annotations are tags (``lc``, the local component, is renamed ``component``); where no
  core annotation named a service, the last binary annotation endpoint that names one is the
  local endpoint, and failing that the ``lc`` value names the service.

Unlike the collector, which keeps them as tags and puts the local endpoint's address on the
resource under ``ipv4``/``port``, v1 spans then go the way Zipkin's own v1-to-v2 conversion
sends them: an address annotation (``ca``, ``sa``, ``ma`` = true, with an endpoint) is the
remote endpoint, and the span is translated like any v2 span (``net.host.ip``,
``net.peer.ip`` and the rest on the span).

Values of binary annotations may be strings, booleans or numbers in v1 JSON (``"ca": true``
marks a client address); all become string tags. v1 Thrift (``application/x-thrift``) is
refused with 415: it is the deprecated Scribe-era encoding, and nothing current sends it.
"""

from __future__ import annotations

from relay.errors import InvalidDataError
from relay.receivers.zipkin.model import Endpoint, ZipkinSpan, hex_id, hex_parent
from relay.receivers.zipkin.v2 import get_field, json_endpoint, kind_of, load_json, micros

# Address annotations: the other side of the call (client, server, message broker).
_ADDRESSES = ("ca", "sa", "ma")
_CORE = {"cs": "CLIENT", "cr": "CLIENT", "sr": "SERVER", "ss": "SERVER", "ms": "PRODUCER", "mr": "CONSUMER"}


def from_json(data: bytes) -> list[ZipkinSpan]:
    spans = load_json(data, "Zipkin v1 JSON")
    if not isinstance(spans, list):
        raise InvalidDataError(f"Zipkin v1 JSON must be an array of spans, not {kind_of(spans)}")
    return [_span(span, f"span {i}") for i, span in enumerate(spans)]


def _span(span, where: str) -> ZipkinSpan:
    if not isinstance(span, dict):
        raise InvalidDataError(f"{where} must be an object, not {kind_of(span)}")
    for key in ("traceId", "id"):
        if span.get(key) is None:
            raise InvalidDataError(f"{where}: {key} is required")
    trace_id = hex_id(span["traceId"], 16, f"{where}: traceId")
    span_id = hex_id(span["id"], 8, f"{where}: id")
    parent_id = hex_parent(span.get("parentId"), f"{where}: parentId")
    kind, local, events, times = "", None, [], []
    for i, annotation in enumerate(get_field(span, "annotations", list, where, [])):
        at = f"{where}: annotations[{i}]"
        if not isinstance(annotation, dict):
            raise InvalidDataError(f"{at} must be an object, not {kind_of(annotation)}")
        value = get_field(annotation, "value", str, at, "")
        if not value:
            continue
        timestamp = micros(annotation, "timestamp", at) or 0
        endpoint = annotation.get("endpoint")
        endpoint = json_endpoint(endpoint, f"{at}: endpoint") if endpoint is not None else None
        times.append(timestamp)
        core = _CORE.get(value)
        if core is None:
            events.append((timestamp, value))
            continue
        kind = kind or core
        if local is None and endpoint is not None and endpoint.service_name:
            local = endpoint
    tags: dict[str, str] = {}
    remote = None
    fallback, local_component = None, ""
    for i, binary in enumerate(get_field(span, "binaryAnnotations", list, where, [])):
        at = f"{where}: binaryAnnotations[{i}]"
        if not isinstance(binary, dict):
            raise InvalidDataError(f"{at} must be an object, not {kind_of(binary)}")
        key = get_field(binary, "key", str, at, "")
        value = binary.get("value")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif value is None:
            value = ""
        elif not isinstance(value, str):
            raise InvalidDataError(f'{at}: value of "{key[:80]}" must be a string, boolean or number')
        endpoint = binary.get("endpoint")
        if endpoint is not None:
            endpoint = json_endpoint(endpoint, f"{at}: endpoint")
            if key in _ADDRESSES and value == "true":
                remote = remote or endpoint
                continue
            fallback = endpoint if endpoint.service_name else fallback
        if key == "lc":
            key, local_component = "component", value
        tags[key] = value
    if local is None:
        local = fallback or (Endpoint(service_name=local_component) if local_component else None)
    timestamp = micros(span, "timestamp", where) or None
    duration = micros(span, "duration", where) or 0
    if timestamp is None and times:
        timestamp = min(times) or None
        duration = max(times) - min(times)
    return ZipkinSpan(trace_id=trace_id, id=span_id, parent_id=parent_id, name=get_field(span, "name", str, where, ""),
                      kind=kind, timestamp=timestamp, duration=duration, local_endpoint=local, remote_endpoint=remote,
                      annotations=events, tags=tags, debug=get_field(span, "debug", bool, where, False))
