"""Run a loaded configuration until told to stop, then shut down in order."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging

from relay.config.load import RelayConfig
from relay.ledger.query import with_report_hint
from relay.pipeline.graph import Graph
from relay.selflogs import config_secrets, self_logs
from relay.selfmetrics_push import SelfMetricsPush
from relay.telemetry import (
    InitialFields,
    SampledLogs,
    Sampler,
    SelfMetrics,
    TargetInfo,
    install_filters,
    metrics_listener,
    remove_filters,
    resource_attributes,
)

log = logging.getLogger("relay.service")


def _version() -> str:
    try:
        return importlib.metadata.version("genops-relay")
    except importlib.metadata.PackageNotFoundError:
        return ""


def log_advisories(config: RelayConfig) -> None:
    """One line per setting the config gives that has no effect here (the README lists them)."""
    for note in config.advisories:
        log.warning(f"accepted, has no effect here: {note}", extra={"fields": {"reason": note.reason}})


def log_filters(logs) -> list:
    """What ``service.telemetry.logs`` asks of every line beyond its level."""
    filters = []
    if logs.sampling is not None and logs.sampling.enabled:
        filters.append(SampledLogs(Sampler(logs.sampling.initial, logs.sampling.thereafter,
                                           tick=logs.sampling.tick)))
    if logs.initial_fields:
        filters.append(InitialFields(logs.initial_fields))
    return filters


async def serve(config: RelayConfig, telemetry: SelfMetrics, stop: asyncio.Event,
                shutdown_timeout: float = 4.0) -> None:
    """Start every component, run until ``stop`` is set, then shut down within ``shutdown_timeout``.

    A failure to start (a port in use, a bad certificate) shuts down what did
    start and raises, so the process exits non-zero with the reason logged.
    """
    # Everything global (log filters, the registered target_info) is set up inside the try, so a
    # failure to build or start undoes it and a later serve() in the same process starts clean.
    installed: list = []
    graph = None
    listeners = []
    target_info = None
    logs_out = None
    pushers: list[SelfMetricsPush] = []
    try:
        installed = install_filters(log_filters(config.telemetry.logs))
        # One resource (one service.instance.id) for the self-logs, target_info and the pushes.
        resource = resource_attributes(config.telemetry.resource_attributes(), _version())
        if config.telemetry.logs.processors:
            # Before anything else is logged, so every line of the start goes out over OTLP too.
            logs_out = self_logs(config.telemetry.logs.processors, resource, telemetry,
                                 config_secrets(config.components), config.telemetry.logs.initial_fields)
            await asyncio.to_thread(logs_out.start)
        log_advisories(config)
        graph = Graph(config, telemetry)
        metrics = config.telemetry.metrics
        if metrics.level != "none":
            # One listener per pull reader (or the one address); each serves the same registry.
            listeners = [metrics_listener(telemetry.registry, address, with_report_hint(graph.host.routes))
                         for address in dict.fromkeys(metrics.listen_addresses())]
            # One push task per periodic reader.
            pushers = [SelfMetricsPush(telemetry.registry, reader.periodic, resource, _version())
                       for reader in metrics.readers or () if reader is not None and reader.periodic is not None]
            for pusher in pushers:
                pusher.start()
            if not any(reader.pull.exporter.prometheus.without_target_info for reader in metrics.readers or ()
                       if reader.pull is not None and reader.pull.exporter.prometheus is not None):
                info = TargetInfo(resource)
                telemetry.registry.register(info)
                target_info = info  # only once registered: unregistering one that is not would raise
        for listener in listeners:
            await listener.start()
            # Every listener's start is logged with its port, this one (8888 by default) too.
            host = listener.endpoint.rpartition(":")[0]
            log.info("self telemetry listening", extra={"fields": {
                "endpoint": f"{host}:{listener.port}", "port": listener.port, "path": "/metrics"}})
        await graph.start()
        graph.set_ready(True)
        log.info("relay started", extra={"fields": {"pipelines": [p.id for p in config.pipelines]}})
        await stop.wait()
        log.info("shutting down")
    finally:
        if graph is not None:
            graph.set_ready(False)
            await graph.shutdown(shutdown_timeout)
        # After the graph, so the last push carries the final counts; bounded, so a sink down waits no longer.
        await asyncio.gather(*(pusher.shutdown(shutdown_timeout) for pusher in pushers))
        for listener in listeners:
            await listener.shutdown()
        if target_info is not None:
            telemetry.registry.unregister(target_info)
        if logs_out is not None:
            await asyncio.to_thread(logs_out.shutdown, shutdown_timeout)
        remove_filters(installed)
    log.info("relay stopped")
