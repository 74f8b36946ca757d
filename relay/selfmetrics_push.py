"""``service.telemetry.metrics.readers[].periodic``: the relay's self-metrics pushed over OTLP.

The registry is read as /metrics reads it, then written as the collector writes its own
metrics over OTLP: a counter is a monotonic cumulative Sum under its name without the
``_total`` that Prometheus exposition adds, a gauge a Gauge, a histogram an explicit-bucket
Histogram with per-bucket counts. Every ``interval`` one request goes out, and once more at
shutdown; a failed push is one log line and never holds the relay up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import CollectorRegistry

from relay.config.telemetry import OtlpPushExporter, PeriodicReader
from relay.selfotlp import METRICS, GrpcSender, HttpSender, destination, key_values

log = logging.getLogger("relay.service")

SCOPE_NAME = "genops-relay"
CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
# Served in the resource itself over OTLP, so never pushed as a metric.
_RESOURCE_FAMILIES = ("target_info",)
_IMPORTED_NS = time.time_ns()


def process_start_ns(families) -> int:
    """When the process started, from the process collector where there is one."""
    for family in families:
        if family.name == "otelcol_process_start_time_seconds":
            for sample in family.samples:
                return int(sample.value * 1e9)
    return _IMPORTED_NS


# Prometheus spells units out in the name; OTLP gives them apart, in UCUM.
_UCUM = {"seconds": "s", "milliseconds": "ms", "bytes": "By"}


def otlp_name(name: str, unit: str) -> tuple[str, str]:
    """(name, unit) as OTLP carries them: without the unit suffix Prometheus adds
    (``otelcol_process_uptime_seconds`` is ``otelcol_process_uptime`` in seconds, ``s``)."""
    if unit and name.endswith(f"_{unit}"):
        name = name[: -len(unit) - 1]
    return name, _UCUM.get(unit, unit)


def _attributes(target, labels: dict) -> None:
    target.extend(key_values(labels))


def _histogram_points(samples, start_ns: int, now_ns: int) -> list[metrics_pb2.HistogramDataPoint]:
    """One point per label set; Prometheus buckets are cumulative (``le``), OTLP's are per bucket."""
    series: dict[tuple, dict] = {}
    for sample in samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        entry = series.setdefault(tuple(sorted(labels.items())), {"labels": labels, "buckets": [],
                                                                  "sum": 0.0, "count": 0})
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
        elif sample.name.endswith("_count"):
            entry["count"] = int(sample.value)
    points = []
    for entry in series.values():
        point = metrics_pb2.HistogramDataPoint(start_time_unix_nano=start_ns, time_unix_nano=now_ns,
                                               count=entry["count"], sum=entry["sum"])
        _attributes(point.attributes, entry["labels"])
        below = 0.0
        for bound, cumulative in sorted(entry["buckets"]):
            if not math.isinf(bound):
                point.explicit_bounds.append(bound)
            point.bucket_counts.append(int(cumulative - below))
            below = cumulative
        points.append(point)
    return points


def to_otlp(families, resource: dict[str, str], start_ns: int, now_ns: int,
            scope_version: str = "") -> metrics_service_pb2.ExportMetricsServiceRequest:
    """The families a registry collects (``registry.collect()``) as one export request."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    _attributes(resource_metrics.resource.attributes, resource)
    scope = resource_metrics.scope_metrics.add()
    scope.scope.name, scope.scope.version = SCOPE_NAME, scope_version
    for family in families:
        if family.name in _RESOURCE_FAMILIES:
            continue
        name, unit = otlp_name(family.name, family.unit)
        metric = metrics_pb2.Metric(name=name, description=family.documentation, unit=unit)
        if family.type == "counter":
            metric.sum.is_monotonic, metric.sum.aggregation_temporality = True, CUMULATIVE
            for sample in family.samples:
                if sample.name.endswith("_total"):  # not ``_created``: the start time is the process's
                    point = metric.sum.data_points.add(start_time_unix_nano=start_ns, time_unix_nano=now_ns,
                                                       as_double=sample.value)
                    _attributes(point.attributes, sample.labels)
            points = metric.sum.data_points
        elif family.type in ("gauge", "unknown", "info"):
            for sample in family.samples:
                point = metric.gauge.data_points.add(time_unix_nano=now_ns, as_double=sample.value)
                _attributes(point.attributes, sample.labels)
            points = metric.gauge.data_points
        elif family.type == "histogram":
            metric.histogram.aggregation_temporality = CUMULATIVE
            metric.histogram.data_points.extend(_histogram_points(family.samples, start_ns, now_ns))
            points = metric.histogram.data_points
        elif family.type == "summary":
            points = _summary(metric, family.samples, start_ns, now_ns)
        else:
            continue
        if len(points):  # a labelled metric nothing has counted into yet has no series
            scope.metrics.append(metric)
    return request


def _summary(metric, samples, start_ns: int, now_ns: int):
    series: dict[tuple, metrics_pb2.SummaryDataPoint] = {}
    for sample in samples:
        labels = {k: v for k, v in sample.labels.items() if k != "quantile"}
        key = tuple(sorted(labels.items()))
        if key not in series:
            series[key] = metric.summary.data_points.add(start_time_unix_nano=start_ns, time_unix_nano=now_ns)
            _attributes(series[key].attributes, labels)
        point = series[key]
        if sample.name.endswith("_sum"):
            point.sum = sample.value
        elif sample.name.endswith("_count"):
            point.count = int(sample.value)
        elif "quantile" in sample.labels:
            point.quantile_values.add(quantile=float(sample.labels["quantile"]), value=sample.value)
    return metric.summary.data_points


class GrpcPush(GrpcSender):
    """MetricsService/Export to a periodic reader's exporter."""

    def __init__(self, config: OtlpPushExporter):
        super().__init__(METRICS, destination(config), log)


class HttpPush(HttpSender):
    """OTLP/HTTP to ``/v1/metrics`` (or the path the endpoint gives) of a periodic reader's exporter."""

    def __init__(self, config: OtlpPushExporter):
        super().__init__(METRICS, destination(config))


class SelfMetricsPush:
    """One periodic reader: pushes ``registry`` every ``interval`` on its own task."""

    def __init__(self, registry: CollectorRegistry, reader: PeriodicReader, resource: dict[str, str],
                 version: str = "", sleep=asyncio.sleep, clock=time.time_ns):
        self.registry = registry
        self.reader = reader
        self.resource = resource
        self.version = version
        self.sleep = sleep
        self.clock = clock
        otlp = reader.exporter.otlp
        self.transport = GrpcPush(otlp) if otlp.protocol == "grpc" else HttpPush(otlp)
        # The exporter's own timeout and the reader's both bound one push.
        self.timeout = min(reader.timeout, otlp.timeout) / 1000
        self.pushed = 0
        self.failed = 0
        self._task: asyncio.Task | None = None

    def request(self) -> metrics_service_pb2.ExportMetricsServiceRequest:
        families = list(self.registry.collect())
        return to_otlp(families, self.resource, process_start_ns(families), self.clock(), self.version)

    async def push(self, timeout: float | None = None) -> bool:
        """One push; a failure is logged (once: this runs once an interval) and returns False."""
        limit = self.timeout if timeout is None else min(timeout, self.timeout)
        try:
            body = self.request().SerializeToString()
            await asyncio.wait_for(self.transport.send(body, limit), limit)
        except Exception as error:  # noqa: BLE001 - a push must never end the loop or the relay
            self.failed += 1
            reason = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error) or type(error).__name__
            log.warning("self-metrics push failed", extra={"fields": {
                "endpoint": self.reader.exporter.otlp.url, "error": reason}})
            return False
        self.pushed += 1
        return True

    async def _run(self) -> None:
        while True:
            await self.sleep(self.reader.interval / 1000)
            await self.push()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="self-metrics push")

    async def shutdown(self, timeout: float) -> None:
        """Stops the loop and pushes the final counts once, within ``timeout`` seconds."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            await self.push(timeout)
        await self.transport.close()
