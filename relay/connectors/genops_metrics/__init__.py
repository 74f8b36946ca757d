"""The ``genops_metrics`` connector: LLM spans in, the metrics contract out.

It ends a traces pipeline (as an exporter) and starts a metrics pipeline (as
a receiver), like the collector's spanmetrics connector. Every
``metrics_flush_interval`` it sends the cumulative series to the metrics
pipelines that name it, and once more on shutdown; a failed flush loses
nothing, since the next one carries the same running totals. A new series is
first reported at zero (as the collector's spanmetrics does), so that
Prometheus' rate() sees its first increment; the shutdown flush reports
every series as it stands. Data points past
the cardinality limit are counted per metric in
``otelcol_connector_genops_metrics_overflow_points_total``.
"""

from __future__ import annotations

import asyncio
import time

from relay import status, tasks
from relay.connectors.genops_metrics.aggregate import Aggregator
from relay.connectors.genops_metrics.config import Config, DimensionConfig
from relay.connectors.genops_metrics.emit import add_budget_gauges, build, new_request
from relay.signals import Signal
from relay.telemetry import component_logger

TYPE = "genops_metrics"
SIGNALS = (Signal.TRACES,)
TO_SIGNALS = (Signal.METRICS,)
RESOURCE = {"service.name": "genops-relay"}

__all__ = ["TYPE", "SIGNALS", "TO_SIGNALS", "Config", "DimensionConfig", "create", "GenopsMetrics"]


class GenopsMetrics:
    mutates_data = False  # it only reads spans
    runs_inline = True  # consume() only computes: fan-out need not give it a task

    def __init__(self, id_, config: Config, telemetry, clock=time.time_ns, ledger=None):
        self.id = id_
        self.ledger = ledger
        self.config = config
        self.aggregator = Aggregator(config)
        self.clock = clock
        self.start_ns = clock()
        self.log = component_logger(id_)
        self.overflow = telemetry.counter(
            "otelcol_connector_genops_metrics_overflow_points",
            "Data points that went into a metric's overflow series because of the cardinality limit",
            ["connector", "metric"])
        self.truncated = telemetry.counter(
            "otelcol_connector_genops_metrics_truncated_values",
            "Label values cut to label_max_length (counted when a span kind is first planned)", ["connector"])
        self.flush_failures = telemetry.counter(
            "otelcol_connector_genops_metrics_flush_failures",
            "Flushes of aggregated metrics the metrics pipeline refused (the next flush carries them again)",
            ["connector"])
        self.consumer = None
        self._task: asyncio.Task | None = None

    def bind(self, consumers: dict) -> None:
        self.consumer = consumers.get(Signal.METRICS)

    async def start(self) -> None:
        self.start_ns = self.clock()
        self._task = tasks.every(float(self.config.metrics_flush_interval), self.flush, f"{self.id} flush")

    async def shutdown(self) -> None:
        await tasks.stop(self._task)
        self._task = None
        await self.flush(final=True)

    async def consume(self, request) -> None:
        self.aggregator.add(request)
        if self.aggregator.overflowed:
            for metric, count in self.aggregator.overflowed.items():
                self.overflow.labels(str(self.id), metric).inc(count)
            self.aggregator.overflowed.clear()
        if self.aggregator.truncated:
            self.truncated.labels(str(self.id)).inc(self.aggregator.truncated)
            self.aggregator.truncated = 0

    async def flush(self, final: bool = False) -> None:
        if self.consumer is None:
            return
        now = self.clock()
        request = build(self.aggregator, RESOURCE, f"genops-relay/{TYPE}", self.start_ns, now,
                        zero_fresh=not final)
        if self.ledger is not None and self.ledger.budgets:
            if request is None:
                request = new_request(RESOURCE, f"genops-relay/{TYPE}")
            add_budget_gauges(request, self.ledger.status(now), now)
        if request is None:
            return
        try:
            await self.consumer.consume(request)
        except Exception as error:  # noqa: BLE001 - cumulative: the next flush resends these totals
            self.flush_failures.labels(str(self.id)).inc()
            self.log.warning("metrics flush failed", fields={"error": status.describe(error)})

def create(id_, config: Config, telemetry, host=None) -> GenopsMetrics:
    ledger = host.extension(config.budgets_from).ledger if config.budgets_from and host is not None else None
    return GenopsMetrics(id_, config, telemetry, ledger=ledger)
