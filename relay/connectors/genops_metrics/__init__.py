"""The ``genops_metrics`` connector: LLM spans (and GenAI usage metrics) in, the metrics contract out.

It ends a traces pipeline, and with ``cost_from: metrics`` or ``auto`` a metrics pipeline
too (as an exporter), and starts a metrics pipeline (as a receiver), like the collector's
spanmetrics connector. See ``usage`` for cost from ``gen_ai.client.token.usage``. Every
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

from relay import pricing, status, tasks
from relay.component import Settings
from relay.connectors.genops_metrics.aggregate import Aggregator
from relay.connectors.genops_metrics.config import Config, DimensionConfig
from relay.connectors.genops_metrics.emit import add_budget_gauges, build, new_request
from relay.connectors.genops_metrics.usage import UsageMetrics, resource_identity
from relay.signals import Signal, signal_of
from relay.telemetry import component_logger

TYPE = "genops_metrics"
SIGNALS = (Signal.TRACES, Signal.METRICS)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"cost_from": "auto"}
_IDENTITIES = 100_000  # service instances remembered by cost_from: auto
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
        self.unpriced = telemetry.counter(
            "otelcol_connector_genops_metrics_unpriced_usage_points",
            "gen_ai.client.token.usage points whose model has no price: tokens counted, no cost", ["connector"])
        self.forgotten = telemetry.counter(
            "otelcol_connector_genops_metrics_forgotten_series",
            "Cumulative usage series forgotten for the series limit: their next point is a baseline, "
            "so what they grew by meanwhile is not counted", ["connector"])
        self.consumer = None
        self._task: asyncio.Task | None = None
        self.book = pricing.build(config.pricing) if config.cost_from != "traces" else None
        self.usage = UsageMetrics(self.aggregator, self.book, self.start_ns) if self.book is not None else None
        self.from_metrics: set = set()   # auto: instances whose cost comes from their usage metrics
        self.from_spans: set = set()     # auto: instances whose spans were counted

    def bind(self, consumers: dict) -> None:
        self.consumer = consumers.get(Signal.METRICS)

    async def start(self) -> None:
        self.start_ns = self.clock()
        if self.usage is not None:
            self.usage.started_ns = self.start_ns
            self.book.start()
        self._task = tasks.every(float(self.config.metrics_flush_interval), self.flush, f"{self.id} flush")

    async def shutdown(self) -> None:
        await tasks.stop(self._task)
        self._task = None
        await self.flush(final=True)
        if self.book is not None:
            self.book.close()

    async def consume(self, request) -> None:
        mode = self.config.cost_from
        if signal_of(request) is Signal.METRICS:
            if self.usage is not None:
                self._usage(request, mode)
        elif mode == "traces":
            self.aggregator.add(request)
        elif mode == "auto":
            self._spans_unless_from_metrics(request)
        self._count()

    def _spans_unless_from_metrics(self, request) -> None:
        for rs in request.resource_spans:
            identity = resource_identity(rs.resource)
            if identity in self.from_metrics:
                continue
            one = request
            if len(request.resource_spans) > 1:
                one = type(request)()
                one.resource_spans.append(rs)
            if self.aggregator.add(one) and len(self.from_spans) < _IDENTITIES:
                self.from_spans.add(identity)

    def _usage(self, request, mode: str) -> None:
        # auto: an instance whose spans were counted already adds only what its usage grows by
        # from here on; its first points are the baseline, so no call is counted twice.
        senders = self.usage.add(request, skip_first_of=self.from_spans if mode == "auto" else frozenset())
        if mode == "auto" and senders:
            self.from_spans -= senders
            if len(self.from_metrics) < _IDENTITIES:
                self.from_metrics |= senders

    def _count(self) -> None:
        if self.aggregator.overflowed:
            for metric, count in self.aggregator.overflowed.items():
                self.overflow.labels(str(self.id), metric).inc(count)
            self.aggregator.overflowed.clear()
        if self.aggregator.truncated:
            self.truncated.labels(str(self.id)).inc(self.aggregator.truncated)
            self.aggregator.truncated = 0
        if self.usage is not None and self.usage.unpriced:
            self.unpriced.labels(str(self.id)).inc(self.usage.unpriced)
            self.usage.unpriced = 0
        if self.usage is not None and self.usage.forgotten:
            self.forgotten.labels(str(self.id)).inc(self.usage.forgotten)
            self.usage.forgotten = 0

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

def create(settings: Settings, config: Config) -> GenopsMetrics:
    id_, telemetry, host = settings.id, settings.telemetry, settings.host
    ledger = host.extension(config.budgets_from).ledger if config.budgets_from and host is not None else None
    return GenopsMetrics(id_, config, telemetry, ledger=ledger)
