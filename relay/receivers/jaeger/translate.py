"""Jaeger ``api_v2`` batches to an OTLP ``ExportTraceServiceRequest``, as the collector's Jaeger
translator maps them (``jaegerproto_to_traces``; Thrift batches arrive here already read into
api_v2 messages by ``relay.jaeger.thrift``).

- A batch's spans are grouped by their process: a span's own process wins over the batch's,
  and spans with equal processes share one resource. A resource without spans is not sent.
- Process: ``serviceName`` is ``service.name`` and the tags are resource attributes
  (``hostname`` becomes ``host.name``, ``jaeger.version`` becomes
  ``opencensus.exporterversion: Jaeger-<version>``, unless those keys are there already); a
  process named ``OTLPResourceNoServiceName`` (what an OTLP-to-Jaeger step writes for "none")
  is an empty resource.
- Scope: the ``otel.scope.name`` / ``otel.scope.version`` tags, taken off the span. Where
  there is no ``otel.scope.name``, the older ``otel.library.name`` / ``.version`` are read
  (the collector reads only the first pair; OpenTelemetry's own Jaeger exporters wrote both).
- ``span.kind`` is the kind; ``error: true`` makes the status ERROR (described by
  ``otel.status_description``, else ``http.status_message``), else ``otel.status_code``
  (``OK``/``ERROR``) says it, else ``http.status_code``: 4xx is an error for a client and
  unset for a server, anything outside 100-398 an error. The tags read for this are removed,
  except an ``error`` tag that is not ``true`` and ``http.*``. ``w3c.tracestate`` is the trace state.
- The parent is the first reference to the same trace of type CHILD_OF, else of type
  FOLLOWS_FROM; every other reference is a link with ``opentracing.ref_type``
  (``child_of``/``follows_from``). Logs are events, named by their ``event`` field.
"""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from relay.errors import InvalidDataError
from relay.jaeger import proto
from relay.numbers import parse_int64

NO_SERVICE_NAME = "OTLPResourceNoServiceName"

_KIND = {"client": trace_pb2.Span.SPAN_KIND_CLIENT, "server": trace_pb2.Span.SPAN_KIND_SERVER,
         "producer": trace_pb2.Span.SPAN_KIND_PRODUCER, "consumer": trace_pb2.Span.SPAN_KIND_CONSUMER,
         "internal": trace_pb2.Span.SPAN_KIND_INTERNAL}
_UNSET, _OK, _ERROR = (trace_pb2.Status.STATUS_CODE_UNSET, trace_pb2.Status.STATUS_CODE_OK,
                       trace_pb2.Status.STATUS_CODE_ERROR)
_REF_TYPE = {proto.CHILD_OF: "child_of", proto.FOLLOWS_FROM: "follows_from"}
_BLANK_SPAN = proto.Span()
_ZERO_SPAN_ID = bytes(8)
_NANOS_LIMIT = 1 << 64


def to_request(batch) -> ExportTraceServiceRequest:
    """The OTLP request for one api_v2 ``Batch``; InvalidDataError names the first bad span."""
    request = ExportTraceServiceRequest()
    for process, spans in _by_process(batch):
        if not spans:
            continue
        resource_spans = request.resource_spans.add()
        _resource(process, resource_spans.resource)
        scopes: dict[tuple[str, str], object] = {}
        for where, span in spans:
            tags = list(span.tags)
            scope = _take_scope(tags)
            scope_spans = scopes.get(scope)
            if scope_spans is None:
                scope_spans = scopes[scope] = resource_spans.scope_spans.add()
                scope_spans.scope.name, scope_spans.scope.version = scope
            _span(span, tags, scope_spans.spans.add(), where)
    return request


def _by_process(batch) -> list[tuple[object, list]]:
    # Keyed by the process's bytes: deterministic serialization makes equal processes equal keys.
    groups: dict[bytes, tuple[object, list]] = {}

    def group(process):
        key = process.SerializeToString(deterministic=True) if process is not None else b"\0none"
        return groups.setdefault(key, (process, []))

    batch_process = batch.process if batch.HasField("process") else None
    group(batch_process)
    for i, span in enumerate(batch.spans):
        if span == _BLANK_SPAN:
            continue
        owner = span.process if span.HasField("process") else batch_process
        group(owner)[1].append((f"batch.spans[{i}]", span))
    return list(groups.values())


def _resource(process, resource) -> None:
    if process is None or process.service_name == NO_SERVICE_NAME:
        return
    attributes: dict[str, AnyValue] = {}
    if process.service_name:
        attributes["service.name"] = AnyValue(string_value=process.service_name)
    _put_tags(process.tags, attributes)
    if "hostname" in attributes and "host.name" not in attributes:
        attributes = _renamed(attributes, "hostname", "host.name")
    if "jaeger.version" in attributes and "opencensus.exporterversion" not in attributes:
        version = _str(attributes.pop("jaeger.version"))
        attributes["opencensus.exporterversion"] = AnyValue(string_value="Jaeger-" + version)
    _write(attributes, resource.attributes)


def _renamed(attributes: dict, old: str, new: str) -> dict:
    value = attributes.pop(old)
    attributes[new] = value
    return attributes


def _take_scope(tags: list) -> tuple[str, str]:
    for name_key, version_key in (("otel.scope.name", "otel.scope.version"),
                                  ("otel.library.name", "otel.library.version")):
        name = _take_tag(tags, name_key)
        if name is not None:
            return name, _take_tag(tags, version_key) or ""
    return "", ""


def _take_tag(tags: list, key: str) -> str | None:
    # The first tag of that key goes; a value that is not a string reads as "".
    for i, tag in enumerate(tags):
        if tag.key == key:
            del tags[i]
            return tag.v_str if tag.v_type == proto.STRING else ""
    return None


def _span(span, tags: list, out, where: str) -> None:
    out.trace_id = _exact(span.trace_id, 16, f"{where}.trace_id")
    out.span_id = _exact(span.span_id, 8, f"{where}.span_id")
    out.name = span.operation_name
    start = span.start_time.ToNanoseconds()
    end = start + span.duration.ToNanoseconds()
    if not 0 <= start < _NANOS_LIMIT or not 0 <= end < _NANOS_LIMIT:
        raise InvalidDataError(f"{where}: start and end time must be within 1970 to 2554 (OTLP's unsigned nanoseconds)")
    out.start_time_unix_nano, out.end_time_unix_nano = start, end
    parent = _parent(span, where)
    if parent != _ZERO_SPAN_ID:
        out.parent_span_id = parent
    attributes: dict[str, AnyValue] = {}
    _put_tags(tags, attributes)
    kind = attributes.pop("span.kind", None)
    if kind is not None:
        out.kind = _KIND.get(_str(kind), trace_pb2.Span.SPAN_KIND_UNSPECIFIED)
    _status(attributes, out)
    state = attributes.pop("w3c.tracestate", None)
    if state is not None:
        out.trace_state = _str(state)
    _write(attributes, out.attributes)
    for log in span.logs:
        event = out.events.add(time_unix_nano=min(max(0, log.timestamp.ToNanoseconds()), _NANOS_LIMIT - 1))
        fields: dict[str, AnyValue] = {}
        _put_tags(log.fields, fields)
        name = fields.pop("event", None)
        if name is not None:
            event.name = _str(name)
        _write(fields, event.attributes)
    for i, ref in enumerate(span.references):
        if ref.ref_type == proto.CHILD_OF and ref.span_id == parent:
            continue
        link = out.links.add(trace_id=_exact(ref.trace_id, 16, f"{where}.references[{i}].trace_id"),
                             span_id=_exact(ref.span_id, 8, f"{where}.references[{i}].span_id"))
        link.attributes.add(key="opentracing.ref_type",
                            value=AnyValue(string_value=_REF_TYPE.get(ref.ref_type, "follows_from")))


def _parent(span, where: str) -> bytes:
    follows = None
    for i, ref in enumerate(span.references):
        if ref.trace_id != span.trace_id:
            continue
        span_id = _exact(ref.span_id, 8, f"{where}.references[{i}].span_id")
        if ref.ref_type == proto.CHILD_OF:
            return span_id
        if follows is None and ref.ref_type == proto.FOLLOWS_FROM:
            follows = span_id
    return follows if follows is not None else _ZERO_SPAN_ID


def _status(attributes: dict, out) -> None:
    code, message, known = _UNSET, "", False
    error = attributes.get("error")
    if error is not None and error.WhichOneof("value") == "bool_value" and error.bool_value:
        code, known = _ERROR, True
        del attributes["error"]
        description = attributes.pop("otel.status_description", None)
        if description is not None:
            message = _str(description)
        elif "http.status_message" in attributes:
            message = _str(attributes["http.status_message"])
    if "otel.status_code" in attributes:
        stated = attributes.pop("otel.status_code")
        # The error tag is a Jaeger span's last word on failure; the status tags only count without it.
        if not known:
            known = True
            code = {"OK": _OK, "ERROR": _ERROR}.get(_str(stated).upper(), _UNSET)
            description = attributes.pop("otel.status_description", None)
            if description is not None:
                message = _str(description)
    elif not known and "http.status_code" in attributes:
        http = _http_code(attributes["http.status_code"])
        if http is not None:
            from_http = _from_http(http, out.kind)
            if from_http != _UNSET:
                code, known = from_http, True
            if "http.status_message" in attributes:
                message = _str(attributes["http.status_message"])
    if known:
        out.status.code = code
        out.status.message = message


def _http_code(value: AnyValue) -> int | None:
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return value.int_value
    if kind == "string_value":
        # Go's ParseInt: an optional sign and decimal digits within int64, nothing else.
        return parse_int64(value.string_value)
    return None


def _from_http(code: int, kind: int) -> int:
    if code // 100 == 4:  # a 4xx: the span status, not a retry decision
        if kind == trace_pb2.Span.SPAN_KIND_CLIENT:
            return _ERROR
        if kind == trace_pb2.Span.SPAN_KIND_SERVER:
            return _UNSET
    return _UNSET if 100 <= code < 399 else _ERROR


def _put_tags(tags, attributes: dict) -> None:
    # A later tag of the same key replaces the earlier one in place, as in the collector's map.
    for tag in tags:
        attributes[tag.key] = _value(tag)


def _value(tag) -> AnyValue:
    vtype = tag.v_type
    if vtype == proto.STRING:
        return AnyValue(string_value=tag.v_str)
    if vtype == proto.BOOL:
        return AnyValue(bool_value=tag.v_bool)
    if vtype == proto.INT64:
        return AnyValue(int_value=tag.v_int64)
    if vtype == proto.FLOAT64:
        return AnyValue(double_value=tag.v_float64)
    if vtype == proto.BINARY:
        return AnyValue(bytes_value=tag.v_binary)
    return AnyValue(string_value=f'<Unknown Jaeger TagType "{vtype}">')


def _str(value: AnyValue) -> str:
    # pdata's Str(): the string of a string value, "" for any other type.
    return value.string_value if value.WhichOneof("value") == "string_value" else ""


def _write(attributes: dict, out) -> None:
    for key, value in attributes.items():
        out.add(key=key, value=value)


def _exact(identifier: bytes, size: int, where: str) -> bytes:
    if len(identifier) != size:
        raise InvalidDataError(f"{where} must be {size} bytes, got {len(identifier)}")
    return identifier
