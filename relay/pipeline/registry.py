"""The registry: component type -> factory. The only module that imports every component.

It is passed to the loader and the graph builder rather than read as a global,
so tests can build registries with test components of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.component import Factory


@dataclass
class Registry:
    receivers: dict[str, Factory] = field(default_factory=dict)
    processors: dict[str, Factory] = field(default_factory=dict)
    exporters: dict[str, Factory] = field(default_factory=dict)
    connectors: dict[str, Factory] = field(default_factory=dict)
    extensions: dict[str, Factory] = field(default_factory=dict)

    def types(self, kind: str) -> dict[str, Factory]:
        return getattr(self, kind)

    def add(self, kind: str, module, *aliases: str) -> "Registry":
        factory = Factory.from_module(module)
        section = self.types(kind)
        for name in (factory.type,) + tuple(getattr(module, "ALIASES", ())) + aliases:
            section[name] = factory
        return self


def default_registry() -> Registry:
    from relay.connectors import genops_metrics
    from relay.connectors import spanmetrics as span_metrics
    from relay.exporters import debug, jaeger, otlp_grpc, otlp_http, prometheus, prometheusremotewrite
    from relay.extensions import basicauth, bearertokenauth, file_storage, genops_ledger, health_check, pprof, zpages
    from relay.processors import attributes, batch, genops, genops_budget, memory_limiter, resource, transform
    from relay.processors import filter as filter_processor
    from relay.processors import resourcedetection as resource_detection
    from relay.receivers import jaeger as jaeger_receiver
    from relay.receivers import otlp
    from relay.receivers import prometheus as prometheus_receiver
    from relay.receivers import zipkin as zipkin_receiver

    return (Registry()
            .add("receivers", otlp)
            .add("receivers", jaeger_receiver)
            .add("receivers", prometheus_receiver)
            .add("receivers", zipkin_receiver)
            .add("processors", attributes)
            .add("processors", batch)
            .add("processors", filter_processor)
            .add("processors", genops)
            .add("processors", genops_budget)
            .add("processors", memory_limiter)
            .add("processors", resource)
            .add("processors", resource_detection)
            .add("processors", transform)
            .add("exporters", otlp_grpc)
            .add("exporters", otlp_http)
            .add("exporters", jaeger)
            .add("exporters", prometheusremotewrite)
            .add("exporters", debug)
            .add("exporters", prometheus)
            .add("connectors", genops_metrics)
            .add("connectors", span_metrics)
            .add("extensions", basicauth)
            .add("extensions", bearertokenauth)
            .add("extensions", file_storage)
            .add("extensions", genops_ledger)
            .add("extensions", health_check)
            .add("extensions", pprof)
            .add("extensions", zpages))
