"""Run a loaded configuration until told to stop, then shut down in order."""

from __future__ import annotations

import asyncio
import logging

from relay.config.load import RelayConfig
from relay.pipeline.graph import Graph
from relay.telemetry import SelfMetrics, metrics_listener

log = logging.getLogger("relay.service")


async def serve(config: RelayConfig, telemetry: SelfMetrics, stop: asyncio.Event,
                shutdown_timeout: float = 4.0) -> None:
    """Start every component, run until ``stop`` is set, then shut down within ``shutdown_timeout``.

    A failure to start (a port in use, a bad certificate) shuts down what did
    start and raises, so the process exits non-zero with the reason logged.
    """
    graph = Graph(config, telemetry)
    listener = None
    if config.telemetry.metrics.level != "none":
        listener = metrics_listener(telemetry.registry, config.telemetry.metrics.address, graph.host.routes)
    try:
        if listener is not None:
            await listener.start()
        await graph.start()
        graph.set_ready(True)
        log.info("relay started", extra={"fields": {"pipelines": [p.id for p in config.pipelines]}})
        await stop.wait()
        log.info("shutting down")
    finally:
        graph.set_ready(False)
        await graph.shutdown(shutdown_timeout)
        if listener is not None:
            await listener.shutdown()
    log.info("relay stopped")
