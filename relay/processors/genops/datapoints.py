"""The genops processor on a metrics pipeline: attribution on every data point.

Each data point gets the configured fields (``metrics.attributes``: team and project by
default), resolved as for spans (``attribution``): the point's own attributes, then the
resource, then the rules, then the defaults. A point that already carries ``genops.<field>``
keeps it. They are written as data-point attributes, so an exporter such as ``prometheus``
turns them into labels; only the configured fields are written, and each value is cut to
``label_max_length``, so the labels they add stay bounded.

Points of one resource mostly differ in their numbers, not in the attributes attribution
reads, so what a point gets is decided once per distinct (resource, client context, those
attributes) and reused. Those attributes are read from the request's wire form
(``relay.points.signatures``, one signature per point) rather than through the protobuf
runtime. Each point gets its fields in one encoded merge, and where the native module is
built, the request's new wire form is the old one with the same entries spliced in, bound
(``relay.received``) so that exporters send it and the genops_metrics connector reads it
without serializing the request again.
"""

from __future__ import annotations

from typing import Callable

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from relay import points, received
from relay.attrs import to_python
from relay.genai import keys
from relay.genai.bounds import cap
from relay.processors.genops import attribution
from relay.signatures import values as signature_values

_DECISIONS_PER_RESOURCE = 1024
# Each kind of metric's data point message, for the encoded form of what a point gets.
_POINTS = {"gauge": metrics_pb2.NumberDataPoint, "sum": metrics_pb2.NumberDataPoint,
           "histogram": metrics_pb2.HistogramDataPoint,
           "exponential_histogram": metrics_pb2.ExponentialHistogramDataPoint,
           "summary": metrics_pb2.SummaryDataPoint}


def make(config, truncated: Callable[[int], None]) -> Callable:
    """The pure metrics-request function; ``truncated(n)`` is told of values cut to the cap."""
    rules, context_sources = attribution.compile_rules(config.rules)
    defaults = dict(config.defaults)
    api_keys = {name: dict(fields) for name, fields in config.api_keys.items()}
    wanted = tuple(dict.fromkeys(config.metrics.attributes))
    limit = config.label_max_length
    # The point attributes attribution can read: nothing else can change what a point gets.
    read = tuple(dict.fromkeys(tuple(attribution.GENOPS_KEYS.values()) + tuple(attribution.METADATA_KEYS.values())
                               + (keys.API_KEY_NAME,) + keys.ENVIRONMENT_FALLBACK
                               + tuple(rule.attribute for rule in config.rules if rule.attribute)))
    index = {key: slot for slot, key in enumerate(read)}
    cache: dict[tuple, dict] = {}

    def decide(signature: bytes, resource: dict, from_resource: dict, context: dict) -> tuple:
        """(attributes to add, values cut to the cap, them encoded by metric kind, them as
        ``points.splice`` takes them)."""
        point_values = {read[slot]: value for slot, value in signature_values(signature).items()}
        fields = attribution.resolve(point_values, resource, from_resource, rules, context, defaults, api_keys)
        entries, cut = [], 0
        for name in wanted:
            value = fields.get(name)
            if value is None:
                continue
            capped = cap(value, limit)
            cut += capped is not value
            kv = KeyValue(key=attribution.GENOPS_KEYS[name])
            kv.value.string_value = capped
            entries.append(kv)
        if not entries:
            return (), cut, None, b""
        encoded = {kind: point(attributes=entries).SerializeToString() for kind, point in _POINTS.items()}
        return tuple(entries), cut, encoded, points.attribute_entries(entries)

    def process(request):
        if not wanted:
            return request
        context = attribution.context_values(context_sources) if context_sources else {}
        context_key = tuple(sorted(context.items()))
        data, found = points.signatures(request, index)
        encodings: list = []  # per point: its additions encoded by metric kind, or None
        additions: list[bytes] = []  # per point: its additions as points.splice takes them
        cut = writes = 0
        for at, (resource_bytes, signatures) in enumerate(found):
            decisions = attribution.per_resource(cache, resource_bytes, context_key)
            resource = from_resource = None
            # Mostly every point of a resource has the same signature (none of the keys read).
            distinct = (signatures[0],) if signatures and signatures.count(signatures[0]) == len(signatures) \
                else signatures
            decided_for = {}
            for signature in distinct:
                decided = decisions.get(signature)
                if decided is None:
                    if resource is None:
                        attributes = request.resource_metrics[at].resource.attributes
                        resource = {kv.key: to_python(kv.value) for kv in attributes}
                        from_resource = attribution.resource_fields(resource)
                    decided = decide(signature, resource, from_resource, context)
                    cut += decided[1]
                    if len(decisions) < _DECISIONS_PER_RESOURCE:
                        decisions[signature] = decided
                decided_for[signature] = decided
                writes = writes or decided[2] is not None
            if distinct is signatures:
                chosen = [decided_for[signature] for signature in signatures]
                encodings += [decided[2] for decided in chosen]
                additions += [decided[3] for decided in chosen]
            elif signatures:
                _, _, encoded, addition = decided_for[signatures[0]]
                encodings += [encoded] * len(signatures)
                additions += [addition] * len(signatures)
        if cut:
            truncated(cut)
        if not writes:
            if data is not None:
                received.rebind(request, data)  # nothing written: the bytes it arrived as still describe it
            return request
        each = iter(encodings)
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    for point, encoded in zip(getattr(metric, kind).data_points, each):
                        if encoded is not None:
                            point.MergeFromString(encoded[kind])
        if data is not None:
            received.rebind(request, points.splice(data, additions))
        else:
            received.rebind(request, request.SerializeToString())
        return request

    return process
