"""The genops processor on a metrics pipeline: attribution on every data point.

Each data point gets the configured fields (``metrics.attributes``: team and project by
default), resolved as for spans (``attribution``): the point's own attributes, then the
resource, then the rules, then the defaults. A point that already carries ``genops.<field>``
keeps it. They are written as data-point attributes, so an exporter such as ``prometheus``
turns them into labels; only the configured fields are written, and each value is cut to
``label_max_length``, so the labels they add stay bounded.

Points of one resource mostly differ in their numbers, not in the attributes attribution
reads, so what a point gets is decided once per distinct (resource, client context, those
attributes) and reused.

Walking every attribute of every point through the protobuf runtime would cost more than the
rest of the pipeline, so it is done only where a metric's points changed their attributes: the
request's wire form is also parsed with a schema of our own (``relay.shapes``) that keeps nothing
but each point's attributes, as raw bytes, and where a metric's attributes are equal to those
seen last at the same place of the same resource, its points' signatures are the ones worked
out then. Each point gets its fields in one encoded merge, and the request's new wire form is
bound (``relay.received``), so exporters send it and the genops_metrics connector reads it
without serializing it again.
"""

from __future__ import annotations

from typing import Callable

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from relay import received
from relay.shapes import shapes_of
from relay.attrs import to_python
from relay.genai import keys
from relay.genai.bounds import cap
from relay.processors.genops import attribution

_DECISIONS_PER_RESOURCE = 1024
_SHAPES_CACHED = 1024  # resources whose metric shapes are remembered
_SHAPES_PER_RESOURCE = 1024
_SHAPES_BYTES = 16 << 20  # of attributes remembered in all; then they are forgotten and learnt again
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
    read = frozenset(tuple(attribution.GENOPS_KEYS.values()) + tuple(attribution.METADATA_KEYS.values())
                     + (keys.API_KEY_NAME,) + keys.ENVIRONMENT_FALLBACK
                     + tuple(rule.attribute for rule in config.rules if rule.attribute))
    cache: dict[tuple, dict] = {}
    # resource (its raw bytes) -> {metric's place: [kind, its points' attributes, their signatures,
    # the decision table the merges were looked up in, each point's encoded merge or None]}
    shapes: dict[tuple, dict] = {}
    kept = [0]  # bytes of attributes in shapes

    def shaped(place: dict | None, index: int, kind: str, points, shape) -> list:
        """The metric at this place: the last one seen there if its attributes are the same."""
        known = place.get(index) if place is not None else None
        if known is not None and known[0] == kind and known[1] == shape and len(known[2]) == len(points):
            return known
        found = [kind, None, [tuple(sorted((kv.key, kv.value.SerializeToString())
                                           for kv in point.attributes if kv.key in read)) for point in points],
                 None, None]
        if place is not None and (known is not None or len(place) < _SHAPES_PER_RESOURCE):
            size = shape.ByteSize()
            if size <= _SHAPES_BYTES // 64:
                if kept[0] + size > _SHAPES_BYTES:
                    shapes.clear()
                    kept[0] = 0
                kept[0] += size
                found[1] = type(shape)()
                found[1].CopyFrom(shape)
                place[index] = found
        return found

    def decide(point_values: dict, resource: dict, from_resource: dict, context: dict) -> tuple:
        """(attributes to add, values cut to the cap, those attributes encoded by metric kind)."""
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
        encoded = {kind: point(attributes=entries).SerializeToString() for kind, point in _POINTS.items()}
        return tuple(entries), cut, encoded

    def process(request):
        if not wanted:
            return request
        context = attribution.context_values(context_sources) if context_sources else {}
        context_key = tuple(sorted(context.items()))
        data = received.raw_bytes(request)
        view = shapes_of(request, request.SerializeToString() if data is None else data)
        cut, changed = 0, False
        for at, rm in enumerate(request.resource_metrics):
            decisions = attribution.per_resource(cache, rm.resource, context_key)
            resource = from_resource = None
            place, shown = None, ()
            if view is not None:
                shown = view[at].scope_metrics
                place = shapes.get(key := tuple(view[at].resource))
                if place is None and sum(map(len, key)) <= attribution.CACHEABLE:
                    if len(shapes) >= _SHAPES_CACHED:
                        shapes.clear()
                    place = shapes[key] = {}
                if len(shown) != len(rm.scope_metrics):
                    place, shown = None, ()
            index = 0
            for s, sm in enumerate(rm.scope_metrics):
                shown_metrics = shown[s].metrics if shown else ()
                if len(shown_metrics) != len(sm.metrics):
                    shown_metrics = ()
                for m, metric in enumerate(sm.metrics):
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    points = getattr(metric, kind).data_points
                    shape = getattr(shown_metrics[m], kind) if shown_metrics else None
                    index += 1
                    metric_shape = shaped(place if shape is not None else None, index, kind, points, shape)
                    merges = metric_shape[4]
                    if metric_shape[3] is not decisions:
                        merges, reusable = [], True
                        for point, signature in zip(points, metric_shape[2]):
                            decided = decisions.get(signature)
                            if decided is None:
                                if resource is None:
                                    resource = {kv.key: to_python(kv.value) for kv in rm.resource.attributes}
                                    from_resource = attribution.resource_fields(resource)
                                values = {kv.key: to_python(kv.value) for kv in point.attributes if kv.key in read}
                                decided = decide(values, resource, from_resource, context)
                                cut += decided[1]
                                if len(decisions) < _DECISIONS_PER_RESOURCE:
                                    decisions[signature] = decided
                                else:
                                    reusable = False  # decided afresh each time, and counted each time
                            merges.append(decided[2][kind] if decided[0] else None)
                        if reusable:
                            metric_shape[3], metric_shape[4] = decisions, merges
                    for point, merge in zip(points, merges):
                        if merge is not None:
                            point.MergeFromString(merge)
                            changed = True
        if cut:
            truncated(cut)
        if changed:
            received.rebind(request, request.SerializeToString())
        elif data is not None:
            received.rebind(request, data)  # nothing written: the bytes it arrived as still describe it
        return request

    return process
