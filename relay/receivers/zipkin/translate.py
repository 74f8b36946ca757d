"""Zipkin spans to an OTLP ExportTraceServiceRequest, by the collector's zipkinv2 translator
(``pkg/translator/zipkin``):

- resource: ``localEndpoint.serviceName`` is ``service.name`` (or the key a
  ``otlp.service.name.source`` tag names), and tags whose keys are resource semantic
  conventions (v1.6.1, the collector's table) move to the resource. Spans of one service and
  the same resource tags share a ResourceSpans, in the order they first appear;
- scope: ``otel.scope.name``/``otel.scope.version``, or the older ``otel.library.name``/
  ``otel.library.version``; spans of one scope share a ScopeSpans;
- ids as sent; a parent equal to the span's own id is no parent; ``w3c.tracestate`` is the
  trace state; kind CLIENT/SERVER/PRODUCER/CONSUMER as named, no kind with a ``span.kind`` tag
  of ``internal`` is INTERNAL, else UNSPECIFIED;
- times: microseconds to nanoseconds, end = timestamp + duration; a span without a timestamp
  starts at 0 and carries ``otel.zipkin.absentField.startTime = true``, as in the collector;
- status: ``otel.status_code`` (``STATUS_CODE_OK``…, ``Ok``…, and the ``OK``/``ERROR`` the
  OpenTelemetry specification's Zipkin exporters write) with ``otel.status_description``;
  an ``error`` tag of ``true`` is ERROR. On an ERROR span, an ``error`` tag is the description
  OpenTelemetry exporters put there: it becomes the message where there is none;
- attributes: the remaining tags (typed int/double/bool with ``parse_string_tags``), then
  ``net.host.ip``/``net.host.port`` from the local endpoint and ``peer.service``,
  ``net.peer.ip``/``net.peer.port`` from the remote one;
- events: annotations; ``name|{json attributes}|dropped count`` (what the collector's Zipkin
  exporter writes) and ``{"name": {attributes}}`` (what the specification's exporters write)
  are unpacked, any other value is the event's name whole;
- links: ``otlp.link.N`` tags, as the collector's Zipkin exporter writes them.

``debug`` and ``shared`` have no OTLP field and are dropped, as in the collector. Unlike the
collector, resource tags of a span without a service name still go to its resource (the
collector drops them), and a malformed event form is kept whole as the name rather than
failing the request.
"""

from __future__ import annotations

import json
import re

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from relay.errors import InvalidDataError
from relay.numbers import INT64_MAX, INT64_MIN, parse_int64
from relay.receivers.zipkin.model import ZipkinSpan

Span = trace_pb2.Span
Status = trace_pb2.Status

SERVICE_NAME_SOURCE = "otlp.service.name.source"
START_TIME_ABSENT = "otel.zipkin.absentField.startTime"
SCOPE_NAME_KEYS = ("otel.scope.name", "otel.library.name")
SCOPE_VERSION_KEYS = ("otel.scope.version", "otel.library.version")

# The resource attributes of the semantic conventions v1.6.1, and OpenCensus's, which the
# collector's translator moves from tags to the resource.
RESOURCE_KEYS = frozenset("""
cloud.provider cloud.account.id cloud.region cloud.availability_zone cloud.platform
aws.ecs.container.arn aws.ecs.cluster.arn aws.ecs.launchtype aws.ecs.task.arn aws.ecs.task.family
aws.ecs.task.revision aws.eks.cluster.arn aws.log.group.names aws.log.group.arns aws.log.stream.names
aws.log.stream.arns container.name container.id container.runtime container.image.name container.image.tag
deployment.environment device.id device.model.identifier device.model.name
faas.name faas.id faas.version faas.instance faas.max_memory
host.id host.name host.type host.arch host.image.name host.image.id host.image.version
k8s.cluster.name k8s.node.name k8s.node.uid k8s.namespace.name k8s.pod.uid k8s.pod.name k8s.container.name
k8s.container.restart_count k8s.replicaset.uid k8s.replicaset.name k8s.deployment.uid k8s.deployment.name
k8s.statefulset.uid k8s.statefulset.name k8s.daemonset.uid k8s.daemonset.name k8s.job.uid k8s.job.name
k8s.cronjob.uid k8s.cronjob.name
os.type os.description os.name os.version
process.pid process.executable.name process.executable.path process.command process.command_line
process.command_args process.owner process.runtime.name process.runtime.version process.runtime.description
service.name service.namespace service.instance.id service.version
telemetry.sdk.name telemetry.sdk.language telemetry.sdk.version telemetry.auto.version
webengine.name webengine.version webengine.description
opencensus.starttime opencensus.exporterversion opencensus.resourcetype
""".split())

KIND = {"CLIENT": Span.SPAN_KIND_CLIENT, "SERVER": Span.SPAN_KIND_SERVER,
        "PRODUCER": Span.SPAN_KIND_PRODUCER, "CONSUMER": Span.SPAN_KIND_CONSUMER}
STATUS = {"STATUS_CODE_UNSET": Status.STATUS_CODE_UNSET, "STATUS_CODE_OK": Status.STATUS_CODE_OK,
          "STATUS_CODE_ERROR": Status.STATUS_CODE_ERROR, "Unset": Status.STATUS_CODE_UNSET,
          "Ok": Status.STATUS_CODE_OK, "Error": Status.STATUS_CODE_ERROR, "UNSET": Status.STATUS_CODE_UNSET,
          "OK": Status.STATUS_CODE_OK, "ERROR": Status.STATUS_CODE_ERROR}
_MAX_LINKS = 128  # otlp.link.0 … otlp.link.127, read until the first missing
# ASCII digits only, as Go's regexp reads \d.
_DOUBLE = re.compile(r"-?[0-9]+\.[0-9]+")
_INT64 = (INT64_MIN, INT64_MAX)


def to_otlp(spans: list[ZipkinSpan], parse_string_tags: bool = False) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    # resource key -> (its ResourceSpans, scope key -> its ScopeSpans)
    resources: dict[tuple, tuple] = {}
    for i, zspan in enumerate(spans):
        tags = dict(zspan.tags)
        resource_key = _pop_resource(zspan, tags)
        scope_key = (_pop_first(tags, SCOPE_NAME_KEYS), _pop_first(tags, SCOPE_VERSION_KEYS))
        if resource_key not in resources:
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.extend(_key_values(_resource_attributes(resource_key)))
            resources[resource_key] = (resource_spans, {})
        resource_spans, scopes = resources[resource_key]
        scope_spans = scopes.get(scope_key)
        if scope_spans is None:
            scope_spans = scopes[scope_key] = resource_spans.scope_spans.add()
            scope_spans.scope.name, scope_spans.scope.version = scope_key
        _span(zspan, tags, scope_spans.spans.add(), parse_string_tags, f"span {i}")
    return request


def _pop_first(tags: dict, keys: tuple[str, ...]) -> str:
    values = [tags.pop(key) for key in keys if key in tags]
    return values[0] if values else ""


def _pop_resource(zspan: ZipkinSpan, tags: dict) -> tuple:
    service = zspan.local_endpoint.service_name if zspan.local_endpoint is not None else ""
    source = tags.pop(SERVICE_NAME_SOURCE, "")
    moved = tuple(sorted((key, tags.pop(key)) for key in [k for k in tags if k in RESOURCE_KEYS]))
    return service, source, moved


def _resource_attributes(key: tuple) -> dict:
    service, source, moved = key
    attributes = {source or "service.name": service} if service else {}
    # As in the collector, a service.name tag wins over the endpoint's name.
    attributes.update(moved)
    return attributes


def _span(zspan: ZipkinSpan, tags: dict, out, parse_string_tags: bool, where: str) -> None:
    out.trace_id = zspan.trace_id
    out.span_id = zspan.id
    if "w3c.tracestate" in tags:
        out.trace_state = tags.pop("w3c.tracestate")
    if zspan.parent_id is not None and zspan.parent_id != zspan.id:
        out.parent_span_id = zspan.parent_id
    out.name = zspan.name
    if zspan.kind:
        out.kind = KIND[zspan.kind]
    elif "span.kind" in tags:
        out.kind = Span.SPAN_KIND_INTERNAL if tags.pop("span.kind") == "internal" else Span.SPAN_KIND_UNSPECIFIED
    _status(tags, out.status)
    _links(tags, out, where)
    attributes = {key: _tag_value(value, parse_string_tags) for key, value in tags.items()}
    local, remote = zspan.local_endpoint, zspan.remote_endpoint
    if local is not None:
        for ip in (local.ipv4, local.ipv6):
            if ip:
                attributes["net.host.ip"] = ip
        if local.port > 0:
            attributes["net.host.port"] = local.port
    if remote is not None:
        if remote.service_name:
            attributes["peer.service"] = remote.service_name
        for ip in (remote.ipv4, remote.ipv6):
            if ip:
                attributes["net.peer.ip"] = ip
        if remote.port > 0:
            attributes["net.peer.port"] = remote.port
    if zspan.timestamp is None:
        attributes[START_TIME_ABSENT] = True
    start = _nanos((zspan.timestamp or 0) * 1000, f"{where}: timestamp")
    out.start_time_unix_nano = start
    out.end_time_unix_nano = _nanos(start + zspan.duration * 1000, f"{where}: timestamp + duration")
    out.attributes.extend(_key_values(attributes))
    for j, (timestamp, value) in enumerate(zspan.annotations):
        event = out.events.add(time_unix_nano=_nanos(timestamp * 1000, f"{where}: annotations[{j}]: timestamp"))
        event.name, attrs, dropped = _annotation(value)
        event.attributes.extend(_key_values(attrs))
        event.dropped_attributes_count = dropped


def _nanos(value: int, what: str) -> int:
    if value >= 2 ** 64:
        raise InvalidDataError(f"{what} is past what OTLP can hold (2^64 nanoseconds)")
    return value


def _status(tags: dict, status) -> None:
    if "otel.status_code" in tags:
        status.code = STATUS.get(tags.pop("otel.status_code"), Status.STATUS_CODE_UNSET)
        if "otel.status_description" in tags:
            status.message = tags.pop("otel.status_description")
    if tags.get("error") == "true":
        status.code = Status.STATUS_CODE_ERROR
        del tags["error"]
    elif status.code == Status.STATUS_CODE_ERROR and "error" in tags:
        message = tags.pop("error")
        status.message = status.message or message


def _links(tags: dict, out, where: str) -> None:
    for i in range(_MAX_LINKS):
        value = tags.pop(f"otlp.link.{i}", None)
        if value is None:
            return
        parts = value.split("|")
        if len(parts) < 5:
            continue
        at = f"{where}: tag otlp.link.{i}"
        link = out.links.add(trace_id=_link_id(parts[0], 16, f"{at}: trace id"),
                             span_id=_link_id(parts[1], 8, f"{at}: span id"), trace_state=parts[2])
        attrs = _json_object("|".join(parts[3:-1]))
        dropped = _count(parts[-1])
        if attrs is None or dropped is None:
            raise InvalidDataError(f"{at}: expected trace id|span id|trace state|JSON attributes|dropped count")
        link.attributes.extend(_key_values(attrs))
        link.dropped_attributes_count = dropped


def _link_id(text: str, size: int, what: str) -> bytes:
    text = text.strip('"')
    if not text:
        return b""
    if len(text) != 2 * size:
        raise InvalidDataError(f'{what} "{text[:80]}" is not {2 * size} hex digits')
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidDataError(f'{what} "{text[:80]}" is not {2 * size} hex digits') from None


def _annotation(value: str) -> tuple[str, dict, int]:
    parts = value.split("|")
    if len(parts) >= 3:
        attrs, dropped = _json_object("|".join(parts[1:-1])), _count(parts[-1])
        if attrs is not None and dropped is not None:
            return parts[0], attrs, dropped
    if value.startswith("{"):
        packed = _json_object(value)
        if packed is not None and len(packed) == 1:
            (name, attrs), = packed.items()
            if isinstance(attrs, dict):
                return name, attrs, 0
    return value, {}, 0


def _json_object(text: str) -> dict | None:
    # What does not parse, nests too deep or holds a number past a double (where the
    # collector's Go decoder fails too) is not the packed form: the value stays whole.
    try:
        value = json.loads(text, parse_int=_json_int)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _json_int(text: str) -> int:
    value = int(text)  # past 4300 digits a ValueError, as wanted
    try:
        float(value)
    except OverflowError:
        raise ValueError("integer past the range of a double") from None
    return value


def _count(text: str) -> int | None:
    # Digits only (no sign), within OTLP's uint32.
    count = parse_int64(text) if text[:1] not in ("+", "-") else None
    return count if count is not None and count < 2 ** 32 else None


def _tag_value(value: str, parse: bool) -> AnyValue:
    """A tag as sent, or with ``parse_string_tags`` the int, double or bool it spells."""
    if parse:
        # As the collector's -?\d+: a minus sign, never a plus.
        number = parse_int64(value) if value[:1] != "+" else None
        if number is not None:
            return AnyValue(int_value=number)
        if _DOUBLE.fullmatch(value):
            return AnyValue(double_value=float(value))
        if value in ("true", "false"):
            return AnyValue(bool_value=value == "true")
    return AnyValue(string_value=value)


def _key_values(attributes: dict) -> list[KeyValue]:
    return [KeyValue(key=key, value=value if isinstance(value, AnyValue) else _any(value))
            for key, value in attributes.items()]


def _any(value) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value) if _INT64[0] <= value <= _INT64[1] else AnyValue(double_value=value)
    if isinstance(value, float):
        # JSON numbers in event and link attributes: whole ones are ints, as in the collector.
        return AnyValue(int_value=int(value)) if value.is_integer() and abs(value) < 2 ** 63 else \
            AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list) and all(isinstance(v, (str, bool, int, float)) for v in value):
        any_value = AnyValue()
        any_value.array_value.values.extend(_any(v) for v in value)
        return any_value
    return AnyValue(string_value=json.dumps(value, separators=(",", ":")))
