"""The aggregated series as one OTLP metrics request per flush, and what a flush resets.

One ResourceMetrics per resource (its attributes as first seen), scope
``spanmetricsconnector``, metrics ``<namespace>.calls`` (monotonic sum),
``<namespace>.duration`` (histogram in ``ms`` or ``s``) and ``<namespace>.events``.

Timestamps, as the collector sets them: cumulative points run from the series'
creation to now, (T1, T2), (T1, T3), ...; delta points from the series' previous
flush, (T1, T2), (T2, T3), ..., remembered for ``metric_timestamp_cache_size`` series.
A cumulative sum is first reported at zero, so that Prometheus' rate() and increase()
see its first increment; the last flush, at shutdown, reports every series as it is.
"""

from __future__ import annotations

from collections import OrderedDict

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from relay.connectors.spanmetrics.aggregate import CALLS, DURATION, EVENTS, Aggregator

SCOPE = "spanmetricsconnector"
_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


class DeltaStarts:
    """The last flush time of delta series, least recently flushed forgotten first."""

    def __init__(self, size: int):
        self.size = size
        self.times: OrderedDict[tuple, int] = OrderedDict()

    def start(self, key: tuple, default: int) -> int:
        return self.times.get(key, default)

    def flushed(self, key: tuple, now_ns: int) -> None:
        self.times[key] = now_ns
        self.times.move_to_end(key)
        while len(self.times) > self.size:
            self.times.popitem(last=False)


def build(aggregator: Aggregator, starts: DeltaStarts, now_ns: int, final: bool = False
          ) -> tuple[ExportMetricsServiceRequest | None, int]:
    """(the request, or None when there is nothing to report; its data points), and the reset."""
    config = aggregator.config
    delta = config.delta
    temporality = _DELTA if delta else _CUMULATIVE
    request = ExportMetricsServiceRequest()
    points = 0
    for resource in list(aggregator.resources.values()) + aggregator.evicted:
        rm = metrics_pb2.ResourceMetrics()
        for key, value in resource.attributes:
            kv = rm.resource.attributes.add(key=key)
            kv.value.CopyFrom(value)
        sm = rm.scope_metrics.add()
        sm.scope.name = SCOPE
        for name in (CALLS, DURATION, EVENTS):
            table = resource.tables[name]
            if not table.series:
                continue
            metric = sm.metrics.add(name=config.metric_name(name))
            if name == DURATION:
                metric.unit = config.histogram.unit
                if config.histogram.exponential is not None:
                    metric.exponential_histogram.aggregation_temporality = temporality
                    data = metric.exponential_histogram.data_points
                else:
                    metric.histogram.aggregation_temporality = temporality
                    data = metric.histogram.data_points
            else:
                metric.sum.is_monotonic = True
                metric.sum.aggregation_temporality = temporality
                data = metric.sum.data_points
            for key, series in table.series.items():
                start = series.start_ns
                if delta:
                    start = starts.start((resource.key, name, key), start)
                    starts.flushed((resource.key, name, key), now_ns)
                point = data.add(start_time_unix_nano=start, time_unix_nano=now_ns)
                for attr_key, value in series.attributes:
                    kv = point.attributes.add(key=attr_key)
                    kv.value.CopyFrom(value)
                if name != DURATION:
                    point.as_int = 0 if series.fresh and not delta and not final else series.count
                elif series.expo is not None:
                    _exponential(point, series.expo)
                else:
                    point.count, point.sum = series.count, series.sum
                    point.bucket_counts.extend(series.buckets or [0] * (len(aggregator.bounds) + 1))
                    point.explicit_bounds.extend(aggregator.bounds)
                for trace_id, span_id, value in series.exemplars:
                    point.exemplars.add(time_unix_nano=now_ns, trace_id=trace_id, span_id=span_id, as_double=value)
                series.exemplars.clear()
                series.fresh = False
                points += 1
        if sm.metrics:
            request.resource_metrics.append(rm)
    _reset(aggregator, now_ns)
    return (request if request.resource_metrics else None), points


def _exponential(point, histogram) -> None:
    point.count, point.sum = histogram.count, histogram.sum
    point.scale, point.zero_count = histogram.scale, histogram.zero_count
    if histogram.count:
        point.min, point.max = histogram.min, histogram.max
    offset, counts = histogram.buckets()
    point.positive.offset = offset
    point.positive.bucket_counts.extend(counts)


def _reset(aggregator: Aggregator, now_ns: int) -> None:
    aggregator.evicted.clear()
    config = aggregator.config
    if config.delta:
        aggregator.resources.clear()
        return
    expiration_ns = int(config.metrics_expiration * 1e9)
    if expiration_ns:
        for key in [k for k, r in aggregator.resources.items() if now_ns - r.last_seen_ns >= expiration_ns]:
            del aggregator.resources[key]
