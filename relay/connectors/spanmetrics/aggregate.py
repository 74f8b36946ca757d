"""Spans to series: per resource, one table per metric (calls, duration, events).

A series is keyed by its dimension values; its attributes are built once, when it is
created. The fixed dimensions (service.name, span.name, span.kind, status.code) come
first, unless excluded; a configured dimension is looked up in the span's attributes,
then its resource's, then takes its ``default``, and is left out when there is none.

Past ``aggregation_cardinality_limit`` series in a table, spans for new series go into
one series whose only attribute is ``otel.metric.overflow=true`` (the collector's
convention), so memory stays bounded. Resources are kept in least-recently-seen order;
past ``resource_metrics_cache_size`` the oldest is evicted: reported once more at the
next flush, then forgotten.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from relay import attrs
from relay.connectors.spanmetrics.config import (
    FIXED_DIMENSIONS,
    SERVICE_NAME,
    SPAN_KIND,
    SPAN_NAME,
    STATUS_CODE,
    Config,
)
from relay.connectors.spanmetrics.expo import ExponentialHistogram

OVERFLOW_KEY = ("otel.metric.overflow",)
SCOPE_NAME, SCOPE_VERSION = "span.instrumentation.scope.name", "span.instrumentation.scope.version"
CALLS, DURATION, EVENTS = "calls", "duration", "events"


def _kind_name(kind: int) -> str:
    try:
        return trace_pb2.Span.SpanKind.Name(kind)
    except ValueError:
        return ""


def _status_name(code: int) -> str:
    try:
        return trace_pb2.Status.StatusCode.Name(code)
    except ValueError:
        return ""


def _text(value: str) -> AnyValue:
    return AnyValue(string_value=value)


class Series:
    """One data point's running state; ``fresh`` until it has been flushed once."""

    __slots__ = ("attributes", "start_ns", "count", "buckets", "sum", "expo", "exemplars", "fresh")

    def __init__(self, attributes: list, start_ns: int):
        self.attributes = attributes  # [(key, AnyValue)]
        self.start_ns = start_ns
        self.count = 0
        self.buckets: list[int] | None = None
        self.sum = 0.0
        self.expo: ExponentialHistogram | None = None
        self.exemplars: list = []  # [(trace_id, span_id, value)]
        self.fresh = True


class Table:
    def __init__(self, limit: int):
        self.limit = limit
        self.series: dict[tuple, Series] = {}

    def get(self, key: tuple, attributes, now_ns: int) -> tuple[Series, bool]:
        """(the series of ``key``, whether it went to the overflow series); ``attributes()``
        builds a new series' attributes."""
        found = self.series.get(key)
        if found is not None:
            return found, False
        if self.limit and len(self.series) - (OVERFLOW_KEY in self.series) >= self.limit:
            found = self.series.get(OVERFLOW_KEY)
            if found is None:
                found = self.series[OVERFLOW_KEY] = Series([("otel.metric.overflow", AnyValue(bool_value=True))],
                                                           now_ns)
            return found, True
        found = self.series[key] = Series(attributes(), now_ns)
        return found, False


class Resource:
    def __init__(self, key: tuple, attributes, limit: int):
        self.key = key
        self.attributes = attributes  # a copy of the first resource seen with this key
        self.tables = {CALLS: Table(limit), DURATION: Table(limit), EVENTS: Table(limit)}
        self.last_seen_ns = 0


class Aggregator:
    def __init__(self, config: Config):
        self.config = config
        self.bounds = config.bounds()
        self.divider = 1e6 if config.histogram.unit == "ms" else 1e9
        self.excluded = set(config.exclude_dimensions)
        self.fixed = [name for name in FIXED_DIMENSIONS if name not in self.excluded]
        self.scopes = set(config.include_instrumentation_scope)
        self.key_attributes = set(config.resource_metrics_key_attributes)
        self.calls_dimensions = config.dimensions + config.calls_dimensions
        self.duration_dimensions = config.dimensions + config.histogram.dimensions
        self.events_dimensions = config.dimensions + config.events.dimensions
        self.resources: OrderedDict[tuple, Resource] = OrderedDict()
        self.evicted: list[Resource] = []
        # What add() saw that the caller counts: spans skipped (no service.name), points per
        # metric that went into an overflow series, resources evicted.
        self.skipped = 0
        self.overflowed: dict[str, int] = {}
        self.evictions = 0

    def add(self, request, now_ns: int) -> None:
        config = self.config
        exemplars = config.exemplars.enabled
        for rs in request.resource_spans:
            resource_attrs = rs.resource.attributes
            service = attrs.find(resource_attrs, SERVICE_NAME)
            if service is None:
                self.skipped += sum(len(ss.spans) for ss in rs.scope_spans)
                continue
            service_name = service.string_value if service.WhichOneof("value") == "string_value" else ""
            resource = self._resource(resource_attrs, now_ns)
            calls, duration, events = (resource.tables[name] for name in (CALLS, DURATION, EVENTS))
            for ss in rs.scope_spans:
                scope = ss.scope if ss.scope.name in self.scopes and ss.scope.name else None
                for span in ss.spans:
                    fixed = {SERVICE_NAME: service_name, SPAN_NAME: span.name, SPAN_KIND: _kind_name(span.kind),
                             STATUS_CODE: _status_name(span.status.code)}
                    elapsed = span.end_time_unix_nano - span.start_time_unix_nano
                    value = elapsed / self.divider if elapsed > 0 else 0.0
                    lookups = (span.attributes, resource_attrs)
                    sample = (span.trace_id, span.span_id, value) if exemplars and any(span.trace_id) else None
                    series = self._series(calls, CALLS, fixed, self.calls_dimensions, lookups, scope, now_ns)
                    series.count += 1
                    self._exemplar(series, sample)
                    if not config.histogram.disable:
                        series = self._series(duration, DURATION, fixed, self.duration_dimensions, lookups, scope,
                                              now_ns)
                        self._observe(series, value)
                        self._exemplar(series, sample)
                    if config.events.enabled:
                        for event in span.events:
                            # The span's own attributes first, then the event's over the resource's.
                            series = self._series(events, EVENTS, fixed, self.events_dimensions,
                                                  (span.attributes, event.attributes, resource_attrs), scope, now_ns)
                            series.count += 1
                            self._exemplar(series, sample)

    def _resource(self, resource_attrs, now_ns: int) -> Resource:
        pairs = [(kv.key, kv.value.SerializeToString(deterministic=True)) for kv in resource_attrs
                 if not self.key_attributes or kv.key in self.key_attributes]
        key = tuple(sorted(pairs))
        resource = self.resources.get(key)
        if resource is None:
            if len(self.resources) >= self.config.resource_metrics_cache_size:
                _, oldest = self.resources.popitem(last=False)
                self.evicted.append(oldest)
                self.evictions += 1
            resource = self.resources[key] = Resource(key, [(kv.key, _copy(kv.value)) for kv in resource_attrs],
                                                      self.config.aggregation_cardinality_limit)
        else:
            self.resources.move_to_end(key)
        resource.last_seen_ns = now_ns
        return resource

    def _series(self, table: Table, metric: str, fixed: dict, dimensions, lookups, scope, now_ns: int) -> Series:
        found = []
        for dimension in dimensions:
            value = None
            for kvs in lookups:
                value = attrs.find(kvs, dimension.name)
                if value is not None:
                    break
            if value is None and dimension.default is not None:
                value = _text(dimension.default)
            if value is not None:
                found.append((dimension.name, value))
        key = tuple(fixed[name] for name in self.fixed) + tuple(
            (name, value.SerializeToString(deterministic=True)) for name, value in found)
        if scope is not None:
            key += ((SCOPE_NAME, scope.name, scope.version),)

        def attributes() -> list:
            out = [(name, _text(fixed[name])) for name in self.fixed]
            out += [(name, _copy(value)) for name, value in found]
            if scope is not None:
                out.append((SCOPE_NAME, _text(scope.name)))
                if scope.version:
                    out.append((SCOPE_VERSION, _text(scope.version)))
            return out

        series, overflowed = table.get(key, attributes, now_ns)
        if overflowed:
            self.overflowed[metric] = self.overflowed.get(metric, 0) + 1
        return series

    def _observe(self, series: Series, value: float) -> None:
        exponential = self.config.histogram.exponential
        if exponential is not None:
            if series.expo is None:
                series.expo = ExponentialHistogram(exponential.max_size)
            series.expo.observe(value)
            return
        if series.buckets is None:
            series.buckets = [0] * (len(self.bounds) + 1)
        # A value on a bound belongs to that bucket: bounds are upper-inclusive in OTLP.
        series.buckets[bisect_left(self.bounds, value)] += 1
        series.count += 1
        series.sum += value

    def _exemplar(self, series: Series, sample) -> None:
        if sample is not None and len(series.exemplars) < self.config.exemplars.max_per_data_point:
            series.exemplars.append(sample)


def _copy(value: AnyValue) -> AnyValue:
    out = AnyValue()
    out.CopyFrom(value)
    return out
