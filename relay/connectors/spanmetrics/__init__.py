"""The ``spanmetrics`` connector: Request, Error and Duration metrics from spans, as the collector's.

It ends traces pipelines (as an exporter) and starts metrics pipelines (as a receiver).
Every span counts once in ``traces.span.metrics.calls`` and once in
``traces.span.metrics.duration`` (end minus start, in ``ms`` by default), with the
dimensions ``service.name``, ``span.name``, ``span.kind`` (``SPAN_KIND_SERVER``, ...)
and ``status.code`` (``STATUS_CODE_ERROR``, ...) plus the configured ones; the
Prometheus exporter serves them as ``traces_span_metrics_calls_total`` and
``traces_span_metrics_duration_milliseconds_bucket``. See ``aggregate`` for dimensions
and limits and ``emit`` for temporality and timestamps.

Every ``metrics_flush_interval`` (60s) the series go to the metrics pipelines, and once
more at shutdown (the collector has no last flush; here nothing aggregated is left
behind). A failed cumulative flush loses nothing, since the next one carries the same
totals; a failed delta flush loses its points, which are counted and logged. Spans
whose resource has no ``service.name`` make no metrics, as in the collector: they are
counted in ``otelcol_connector_spanmetrics_skipped_spans_total``.

Not implemented: the collector's feature gates (legacy metric names, service.instance.id
as a dimension) and tracestate-based adjusted counts; ``dimensions_cache_size`` is
accepted and has no effect (it sized a cache the collector has deprecated).
"""

from __future__ import annotations

import time

from relay import status, tasks
from relay.component import Settings
from relay.connectors.spanmetrics.aggregate import Aggregator
from relay.connectors.spanmetrics.config import Config, Dimension
from relay.connectors.spanmetrics.emit import DeltaStarts, build
from relay.signals import Signal
from relay.telemetry import Throttled, component_logger

TYPE = "spanmetrics"
# The collector's newer name for the same component.
ALIASES = ("span_metrics",)
SIGNALS = (Signal.TRACES,)
TO_SIGNALS = (Signal.METRICS,)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"dimensions": [{"name": "http.request.method", "default": "GET"}], "metrics_flush_interval": "15s"}

__all__ = ["TYPE", "SIGNALS", "TO_SIGNALS", "EXAMPLE", "Config", "Dimension", "create", "SpanMetrics"]


class SpanMetrics:
    mutates_data = False  # it only reads spans
    runs_inline = True  # consume() only computes: fan-out need not give it a task

    def __init__(self, id_, config: Config, telemetry, clock=time.time_ns):
        self.id = id_
        self.config = config
        self.clock = clock
        self.aggregator = Aggregator(config)
        self.starts = DeltaStarts(config.metric_timestamp_cache_size)
        self.consumer = None
        self._task = None
        self.log = component_logger(id_)
        self.noisy = Throttled(self.log, 60.0)
        name = str(id_)
        self.skipped = telemetry.counter(
            "otelcol_connector_spanmetrics_skipped_spans",
            "Spans that made no metrics because their resource has no service.name", ["connector"]).labels(name)
        self._overflow = telemetry.counter(
            "otelcol_connector_spanmetrics_overflow_points",
            "Spans (or span events) counted in a metric's otel.metric.overflow series: the cardinality limit",
            ["connector", "metric"])
        self.evicted = telemetry.counter(
            "otelcol_connector_spanmetrics_evicted_resources",
            "Resources forgotten for resource_metrics_cache_size (their series restart if they come back)",
            ["connector"]).labels(name)
        self.flush_failures = telemetry.counter(
            "otelcol_connector_spanmetrics_flush_failures",
            "Flushes the metrics pipeline refused", ["connector"]).labels(name)
        self.dropped = telemetry.counter(
            "otelcol_connector_spanmetrics_dropped_points",
            "Delta data points lost with a refused flush", ["connector"]).labels(name)

    def bind(self, consumers: dict) -> None:
        self.consumer = consumers.get(Signal.METRICS)

    async def start(self) -> None:
        self._task = tasks.every(float(self.config.metrics_flush_interval), self.flush, f"{self.id} flush")

    async def shutdown(self) -> None:
        await tasks.stop(self._task)
        self._task = None
        await self.flush(final=True)

    async def consume(self, request) -> None:
        aggregator = self.aggregator
        aggregator.add(request, self.clock())
        if aggregator.skipped:
            self.skipped.inc(aggregator.skipped)
            self.noisy.warning("spans without service.name make no metrics", {"spans": aggregator.skipped})
            aggregator.skipped = 0
        if aggregator.overflowed:
            for metric, count in aggregator.overflowed.items():
                self._overflow.labels(str(self.id), metric).inc(count)
            self.noisy.warning("cardinality limit reached: spans go to the overflow series",
                               {"limit": self.config.aggregation_cardinality_limit})
            aggregator.overflowed.clear()
        if aggregator.evictions:
            self.evicted.inc(aggregator.evictions)
            self.noisy.warning("resource_metrics_cache_size reached: the least recently seen resource is forgotten",
                               {"size": self.config.resource_metrics_cache_size})
            aggregator.evictions = 0

    async def flush(self, final: bool = False) -> None:
        """Send the series to the metrics pipelines (tests call it with their own clock)."""
        if self.consumer is None:
            return
        request, points = build(self.aggregator, self.starts, self.clock(), final=final)
        if request is None:
            return
        try:
            await self.consumer.consume(request)
        except Exception as error:  # noqa: BLE001 - cumulative: the next flush resends these totals
            self.flush_failures.inc()
            if self.config.delta:
                self.dropped.inc(points)
            self.log.warning("metrics flush failed", fields={"error": status.describe(error),
                                                            "lost_points": points if self.config.delta else 0})


def create(settings: Settings, config: Config) -> SpanMetrics:
    return SpanMetrics(settings.id, config, settings.telemetry)
