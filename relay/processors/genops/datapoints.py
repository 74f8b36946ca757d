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
"""

from __future__ import annotations

from typing import Callable

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from relay.attrs import to_python
from relay.genai import keys
from relay.genai.bounds import cap
from relay.processors.genops import attribution

_DECISIONS_PER_RESOURCE = 1024


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

    def decide(point_values: dict, resource: dict, from_resource: dict, context: dict) -> tuple:
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
        return tuple(entries), cut

    def process(request):
        if not wanted:
            return request
        context = attribution.context_values(context_sources) if context_sources else {}
        context_key = tuple(sorted(context.items()))
        cut = 0
        for rm in request.resource_metrics:
            decisions = attribution.per_resource(cache, rm.resource, context_key)
            resource = from_resource = None
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    for point in getattr(metric, kind).data_points:
                        signature = tuple(sorted((kv.key, kv.value.SerializeToString())
                                                 for kv in point.attributes if kv.key in read))
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
                        if decided[0]:
                            point.attributes.extend(decided[0])
        if cut:
            truncated(cut)
        return request

    return process
