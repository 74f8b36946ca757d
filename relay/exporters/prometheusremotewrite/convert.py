"""OTLP metrics as remote write time series, named and labelled as the prometheus exporter does.

Names come from ``prometheus.naming`` and label sets from ``prometheus.labels`` (scope
labels, job/instance, sanitized attributes), so a dashboard reads the same series
whether the relay is scraped or writes remotely. What differs is what remote write
means:

- every point is sent as it is, with its own timestamp, and nothing is kept between
  requests: delta sums and delta histograms, which would need a running total, are
  dropped and counted, as the collector's exporter does; so are exponential histograms;
- ``external_labels`` are added to every series unless the series already has the
  label, as Prometheus adds its own external labels;
- a point flagged "no recorded value" becomes Prometheus' stale marker, which ends the
  series at once instead of when it would have expired;
- labels with an empty value are left out (Prometheus treats them as absent), and
  every label set is sorted by name, ``__name__`` included.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from opentelemetry.proto.metrics.v1 import metrics_pb2

from relay.exporters.prometheusremotewrite import proto
from relay.prometheus import naming
from relay.prometheus.labels import LabelMaker
from relay.prometheus.series import (
    INVALID_POINT,
    explicit_buckets,
    number_value,
)
from relay.prometheus.store import (
    INVALID_NAME,
    UNSPECIFIED_TEMPORALITY,
    UNSUPPORTED_TYPE,
    Drops,
)

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

DELTA_TEMPORALITY = "delta_temporality"
# Prometheus refuses a whole write request over one sample at time 0 (out of bounds).
MISSING_TIMESTAMP = "missing_timestamp"

# The NaN Prometheus writes to mark a series stale (value.StaleNaN): a plain NaN is a value.
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

_METADATA_TYPE = {"counter": proto.COUNTER, "gauge": proto.GAUGE, "histogram": proto.HISTOGRAM,
                  "summary": proto.SUMMARY}


@dataclass
class Converted:
    """One OTLP request as remote write: series (labels sorted, samples in time order),
    one metadata entry per family, and the points that could not be written."""

    series: list = field(default_factory=list)
    metadata: list = field(default_factory=list)
    drops: Drops = field(default_factory=Drops)


class Converter:
    def __init__(self, *, namespace: str = "", external_labels: dict[str, str] | None = None,
                 add_metric_suffixes: bool = True, resource_to_telemetry: bool = False,
                 target_info: bool = True, send_metadata: bool = False):
        self.namespace = namespace
        self.external_labels = dict(external_labels or {})
        self.suffixes = add_metric_suffixes
        # No const labels: those override a series' own labels, while external labels
        # (added by _Batch) only fill in the ones a series lacks.
        self.labels = LabelMaker({}, resource_to_telemetry)
        self.target_info_name = naming.target_info_name(namespace) if target_info else ""
        self.send_metadata = send_metadata

    def convert(self, request) -> Converted:
        batch = _Batch(self.external_labels)
        families: dict[str, object] = {}
        for rm in request.resource_metrics:
            resource = self.labels.resource(rm.resource)
            latest = 0
            for sm in rm.scope_metrics:
                fixed = self.labels.fixed(resource, sm)
                for metric in sm.metrics:
                    latest = max(latest, self._metric(metric, resource, fixed, batch, families))
            if self.target_info_name and latest and resource.target_key is not None:
                # One sample per request at its resource's latest time, as the collector sends it.
                batch.add(self.target_info_name, dict(resource.target()), {}, latest, 1.0)
        return Converted(batch.series(), list(families.values()) if self.send_metadata else [], batch.drops)

    def _metric(self, metric, resource, fixed, batch: _Batch, families: dict) -> int:
        """Adds the metric's samples; returns the latest timestamp written (ms), 0 for none."""
        data_kind = metric.WhichOneof("data")
        if data_kind is None:
            return 0
        points = getattr(metric, data_kind).data_points
        shape = _shape(metric, data_kind)
        if isinstance(shape, str):
            batch.drops.add(shape, len(points), metric.name)
            return 0
        kind, name_kind = shape
        name = naming.metric_name(metric.name, metric.unit, name_kind, self.namespace, self.suffixes)
        if not name:
            batch.drops.add(INVALID_NAME, len(points), metric.name)
            return 0
        latest = 0
        for point in points:
            if not point.time_unix_nano:
                batch.drops.add(MISSING_TIMESTAMP, 1, metric.name)
                continue
            labels = dict(self.labels.key(point.attributes, resource, fixed))
            ms = point.time_unix_nano // 1_000_000
            stale = bool(point.flags & NO_RECORDED_VALUE)
            if kind == "histogram":
                if not _histogram(batch, name, labels, point, ms, stale):
                    batch.drops.add(INVALID_POINT, 1, metric.name)
                    continue
            elif kind == "summary":
                _summary(batch, name, labels, point, ms, stale)
            else:
                batch.add(name, labels, {}, ms, STALE_NAN if stale else number_value(point))
            latest = max(latest, ms)
        if latest and name not in families:
            # The first description stays, as in the prometheus exporter.
            families[name] = proto.MetricMetadata(type=_METADATA_TYPE[kind], metric_family_name=name,
                                                  help=metric.description, unit=metric.unit)
        return latest


def _histogram(batch: _Batch, name: str, labels: dict, point, ms: int, stale: bool) -> bool:
    if stale:
        # The marker needs only the series names, and an ended series may carry no counts.
        bounds, counts = tuple(point.explicit_bounds), [0] * (len(point.explicit_bounds) + 1)
    else:
        buckets = explicit_buckets(point)
        if buckets is None:
            return False
        bounds, counts = buckets
    bucket, cumulative = f"{name}_bucket", 0
    for bound, count in zip(bounds, counts):
        cumulative += count
        if math.isinf(bound) and bound > 0:
            continue  # the +Inf bucket below is the point's total count
        batch.add(bucket, labels, {"le": naming.go_float_g(bound)}, ms, STALE_NAN if stale else cumulative)
    batch.add(bucket, labels, {"le": "+Inf"}, ms, STALE_NAN if stale else point.count)
    if point.HasField("sum") or stale:
        # Without a sum (optional in OTLP) there is no _sum series rather than a made-up 0.
        batch.add(f"{name}_sum", labels, {}, ms, STALE_NAN if stale else point.sum)
    batch.add(f"{name}_count", labels, {}, ms, STALE_NAN if stale else point.count)
    return True


def _summary(batch: _Batch, name: str, labels: dict, point, ms: int, stale: bool) -> None:
    for quantile in point.quantile_values:
        batch.add(name, labels, {"quantile": naming.go_float_g(quantile.quantile)}, ms,
                  STALE_NAN if stale else quantile.value)
    batch.add(f"{name}_sum", labels, {}, ms, STALE_NAN if stale else point.sum)
    batch.add(f"{name}_count", labels, {}, ms, STALE_NAN if stale else point.count)


class _Batch:
    """Samples by final label set: points of one series in one request become one series."""

    def __init__(self, external_labels: dict[str, str]):
        self.external = external_labels
        self.samples: dict[tuple, list[tuple[int, float]]] = {}
        self.drops = Drops()

    def add(self, name: str, labels: dict, extra: dict, ms: int, value: float) -> None:
        # An empty value is an absent label to Prometheus, so it leaves room for an external one.
        merged = dict(self.external)
        merged.update((k, v) for k, v in labels.items() if v)
        merged.update(extra)
        merged["__name__"] = name
        self.samples.setdefault(tuple(sorted(merged.items())), []).append((ms, float(value)))

    def series(self) -> list:
        out = []
        for key, samples in self.samples.items():
            series = proto.TimeSeries()
            series.labels.extend(proto.Label(name=k, value=v) for k, v in key)
            # The spec wants each series' samples in time order; sort is stable for equal times.
            samples.sort(key=lambda sample: sample[0])
            series.samples.extend(proto.Sample(value=v, timestamp=t) for t, v in samples)
            out.append(series)
        return out


def _shape(metric, data_kind: str) -> tuple[str, str] | str:
    """(sample kind, naming kind) of a metric, or why none of its points can be written."""
    if data_kind == "exponential_histogram":
        return UNSUPPORTED_TYPE
    data = getattr(metric, data_kind)
    if data_kind in ("sum", "histogram"):
        if data.aggregation_temporality == DELTA:
            return DELTA_TEMPORALITY
        if data.aggregation_temporality != CUMULATIVE:
            return UNSPECIFIED_TEMPORALITY
    if data_kind == "sum":
        return ("counter", naming.COUNTER) if data.is_monotonic else ("gauge", naming.NON_MONOTONIC)
    return data_kind, data_kind


def write_requests(series: list, metadata: list, max_bytes: int) -> list:
    """WriteRequests of at most ``max_bytes`` each (uncompressed), series first, then metadata.

    An item bigger than the limit on its own goes alone: splitting a series is not
    possible, and the receiver's own limit decides whether it is taken.
    """
    requests = []
    current = proto.WriteRequest()
    size = 0
    for item, target in [(s, "timeseries") for s in series] + [(m, "metadata") for m in metadata]:
        item_size = _encoded_size(item)
        if size and size + item_size > max_bytes:
            requests.append(current)
            current, size = proto.WriteRequest(), 0
        getattr(current, target).append(item)
        size += item_size
    if size:
        requests.append(current)
    return requests


def _encoded_size(message) -> int:
    """Bytes ``message`` takes as a field of the WriteRequest: tag, length and body."""
    body = message.ByteSize()
    return 1 + _varint_size(body) + body


def _varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)
