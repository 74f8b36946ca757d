"""The pipeline graph: build components from a config, start and stop them in order.

One exporter instance per exporter id, shared by every pipeline naming it;
one processor instance per pipeline; one receiver instance per receiver id,
handed one consumer per signal (a fan-out when several pipelines of that
signal name it; fan-in is simply several receivers holding the same consumer).

A connector is one instance per id too: an exporter at the end of the
pipelines that name it as an exporter, and, like a receiver, handed one
consumer per signal of the pipelines that name it as a receiver.

Start: extensions, exporters, processors (last first), connectors, receivers.
Shutdown: receivers stop taking calls; the processors of pipelines that
receivers feed flush, in pipeline order (so each flushes into a running
successor), while the receivers' calls in flight finish; connectors (a last
flush into their pipelines); the processors of the pipelines connectors
feed; exporters (retries stop, queues drain with one attempt per request,
what is left stays on disk); extensions.
"""

from __future__ import annotations

import asyncio
import logging

from relay import received
from relay.component import ComponentID, Host, Settings
from relay.config.load import RelayConfig
from relay.consumer import fanout
from relay.signals import Signal

log = logging.getLogger("relay.service")


class Graph:
    def __init__(self, config: RelayConfig, telemetry):
        self.config = config
        self.host = host = Host({}, config, telemetry)
        # What each exporter and connector is told it will be sent: its pipelines' signals.
        signals: dict[ComponentID, frozenset[Signal]] = {}
        for pipeline in config.pipelines:
            for id_ in pipeline.exporters:
                signals[id_] = signals.get(id_, frozenset()) | {pipeline.signal}

        def settings(id_: ComponentID) -> Settings:
            return Settings(id_, telemetry, host, signals.get(id_, frozenset()))

        self.extensions = {id_: config.factories["extensions"][id_].create(
            settings(id_), config.components["extensions"][id_]) for id_ in config.extensions}
        host.extensions.update(self.extensions)
        self.connectors = {id_: factory.create(settings(id_), config.components["connectors"][id_])
                           for id_, factory in config.factories["connectors"].items() if id_ in signals}
        self.exporters = {}
        self.processors: list[list] = []       # per pipeline fed by receivers
        self.fed_processors: list[list] = []   # per pipeline fed by connectors
        heads: dict[ComponentID, dict[Signal, list]] = {}
        for pipeline in config.pipelines:
            for id_ in pipeline.exporters:
                if id_ not in self.exporters and id_ not in self.connectors:
                    self.exporters[id_] = config.factories["exporters"][id_].create(
                        settings(id_), config.components["exporters"][id_])
            consumer = fanout([self.connectors.get(id_) or self.exporters[id_] for id_ in pipeline.exporters])
            chain = []
            for id_ in reversed(pipeline.processors):
                exit_ = received.Exit(consumer)
                processor = config.factories["processors"][id_].create(
                    settings(id_), config.components["processors"][id_], exit_)
                exit_.changes = getattr(processor, "changes_data", True)
                chain.insert(0, processor)
                consumer = received.Entered(processor)
            fed_by_connector = any(id_ in self.connectors for id_ in pipeline.receivers)
            (self.fed_processors if fed_by_connector else self.processors).append(chain)
            for id_ in pipeline.receivers:
                heads.setdefault(id_, {}).setdefault(pipeline.signal, []).append(consumer)
        self.receivers = {
            id_: config.factories["receivers"][id_].create(
                settings(id_), config.components["receivers"][id_],
                {signal: fanout(consumers) for signal, consumers in by_signal.items()})
            for id_, by_signal in heads.items() if id_ not in self.connectors
        }
        for id_, connector in self.connectors.items():
            connector.bind({signal: fanout(consumers) for signal, consumers in heads.get(id_, {}).items()})
        self._started: list = []

    async def start(self) -> None:
        """Start everything, data consumers before data producers. Raises on the first failure."""
        order = (list(self.extensions.values()) + list(self.exporters.values())
                 + [p for chain in self.fed_processors + self.processors for p in reversed(chain)]
                 + list(self.connectors.values()) + list(self.receivers.values()))
        for component in order:
            await component.start()
            self._started.append(component)

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop what was started, producers first; each step is bounded by what is left of ``timeout``.

        Receivers stop taking calls at once, but their calls in flight may be
        waiting on a processor (a batch waits for its flush), so the processors
        flush while those calls finish; the receivers are awaited after that.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        started = set(map(id, self._started))

        async def stop(component) -> None:
            if id(component) not in started:
                return
            try:
                await asyncio.wait_for(component.shutdown(), max(0.1, deadline - loop.time()))
            except Exception:  # one component's failure must not block the rest
                log.exception("component shutdown failed", extra={"component": _name(component)})

        receivers = [asyncio.create_task(stop(r)) for r in self.receivers.values()]
        await asyncio.sleep(0)  # each receiver has stopped accepting before processors flush
        stages = [[p for chain in self.processors for p in chain],
                  list(self.connectors.values()),
                  [p for chain in self.fed_processors for p in chain],
                  list(self.exporters.values()),
                  list(self.extensions.values())]
        for component in stages[0]:
            await stop(component)
        await asyncio.gather(*receivers)
        for stage in stages[1:]:
            for component in stage:
                await stop(component)
        self._started.clear()

    def set_ready(self, ready: bool) -> None:
        for extension in self.extensions.values():
            if hasattr(extension, "set_ready"):
                extension.set_ready(ready)


def _name(component) -> str:
    return str(getattr(component, "id", type(component).__name__))


def describe(config: RelayConfig) -> str:
    """The pipeline graph as text, for ``genops-relay validate``."""
    lines = []
    for pipeline in config.pipelines:
        lines.append(f"pipeline {pipeline.id}:")
        lines.append("  receivers:  " + ", ".join(map(str, pipeline.receivers)))
        lines.append("  processors: " + (", ".join(map(str, pipeline.processors)) or "(none)"))
        lines.append("  exporters:  " + ", ".join(map(str, pipeline.exporters)))
    if config.extensions:
        lines.append("extensions: " + ", ".join(map(str, config.extensions)))
    metrics = config.telemetry.metrics
    served = f"metrics on {metrics.address}" if metrics.level != "none" else "metrics off"
    lines.append(f"telemetry: {served}, logs at {config.telemetry.logs.level}")
    return "\n".join(lines)
