"""The prometheus exporter's "transport": the series store plus the /metrics listener.

Sending a request stores it; Prometheus pulls it at its own pace. A sweep task
expires stale series on a timer, not only at scrape time, so memory stays bounded
when nothing scrapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from relay.exporters.prometheus.exposition import StoreCollector
from relay.httpserver import HttpListener
from relay.prometheus.store import SeriesStore
from relay.telemetry import component_logger

# Spelled out: older prometheus_client releases have no constant for exactly this.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DROPPED_POINTS = "otelcol_exporter_prometheus_dropped_points"
EXPIRED_SERIES = "otelcol_exporter_prometheus_expired_series"
TRUNCATED_VALUES = "otelcol_exporter_prometheus_truncated_values"
MAX_SWEEP_INTERVAL = 30.0


class PrometheusTransport:
    def __init__(self, id_, config, telemetry, *, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 registry: CollectorRegistry | None = None):
        self.id = id_
        self.log = component_logger(id_)
        self.store = SeriesStore(
            namespace=config.namespace, const_labels=config.const_labels,
            add_metric_suffixes=config.add_metric_suffixes,
            resource_to_telemetry=config.resource_to_telemetry_conversion.enabled,
            expiration=config.metric_expiration, max_series=config.max_series, now=now)
        # Its own registry: the series of the data it relays, never the relay's self-metrics.
        self.registry = registry if registry is not None else CollectorRegistry()
        self.collector = StoreCollector(self.store, send_timestamps=config.send_timestamps,
                                        before_collect=self.sweep)
        self.registry.register(self.collector)
        self.open_metrics = config.enable_open_metrics
        self.sweep_interval = min(config.metric_expiration / 2, MAX_SWEEP_INTERVAL)
        self._sleep = sleep
        self._sweeper: asyncio.Task | None = None
        self._warned: set[str] = set()
        self._dropped = telemetry.counter(
            DROPPED_POINTS, "Metric data points the prometheus exporter could not store, by reason",
            ["exporter", "reason"])
        self._expired = telemetry.counter(
            EXPIRED_SERIES, "Series the prometheus exporter removed after metric_expiration",
            ["exporter"]).labels(str(id_))
        self._truncated = telemetry.counter(
            TRUNCATED_VALUES, "Attribute values the prometheus exporter cut to the label length cap",
            ["exporter"]).labels(str(id_))
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        self.listener = HttpListener(app, config.endpoint)

    @property
    def port(self) -> int | None:
        return self.listener.port

    async def start(self) -> None:
        await self.listener.start()
        self._sweeper = asyncio.create_task(self._sweep_periodically())
        self.log.info("prometheus exporter listening", fields={"port": self.listener.port})

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.listener.shutdown()

    async def send(self, request) -> None:
        drops = self.store.ingest(request)
        labels = self.store.labels
        if labels.truncated:
            self._truncated.inc(labels.truncated)
            labels.truncated = 0
        for reason, count in drops.counts.items():
            self._dropped.labels(str(self.id), reason).inc(count)
            if reason not in self._warned:
                # Once per reason: the counter carries the rate, the log line says why.
                self._warned.add(reason)
                self.log.warning("data points dropped", fields={
                    "reason": reason, "points": count, "metric": drops.examples[reason],
                    "series": self.store.series_count, "max_series": self.store.max_series})

    def sweep(self) -> int:
        removed = self.store.sweep()
        if removed:
            self._expired.inc(removed)
        return removed

    async def _sweep_periodically(self) -> None:
        while True:
            await self._sleep(self.sweep_interval)
            try:
                self.sweep()
            except Exception:
                self.log.exception("expiring series failed")

    def _encoder(self, accept: str):
        if not self.open_metrics:
            return generate_latest, TEXT_CONTENT_TYPE
        encoder, content_type = choose_encoder(accept)
        keywords = getattr(encoder, "keywords", {})
        if getattr(encoder, "func", None) is openmetrics.generate_latest and \
                keywords.get("escaping") == openmetrics.UNDERSCORES:
            # prometheus_client's OpenMetrics encoder escapes ":" in sample names but not in
            # the TYPE line, splitting such a family in two. Exposed names are valid legacy
            # names already, so writing them unescaped is what underscore escaping means.
            encoder = functools.partial(encoder, escaping=openmetrics.ALLOWUTF8)
        return encoder, content_type

    async def _scrape(self, request: web.Request) -> web.Response:
        encoder, content_type = self._encoder(request.headers.get("Accept", ""))
        # prometheus_client's encoders take tens of microseconds per sample: thousands of
        # histogram series would hold the event loop (and every receiver) for seconds.
        # The rows are copied here, on the loop; families are built and written in a thread.
        body = await asyncio.to_thread(encoder, self.collector.snapshot())
        return web.Response(body=body, headers={"Content-Type": content_type})
