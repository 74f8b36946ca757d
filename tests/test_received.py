"""The bytes a request arrived as are never sent once a processor changed it, whether or not the
processor knows about them: real receiver, graph and exporter, and processors written with no
helper at all."""

from __future__ import annotations

import asyncio
import dataclasses
import types

import grpc

from relay.config.load import load
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import Sink, free_port, traces_request


def processor_module(type_name: str, mutate, changes_data: bool | None):
    """A processor type that changes each request in place by ``mutate`` and calls its next consumer."""

    class InPlace:
        mutates_data = True

        def __init__(self, next_consumer):
            self.next = next_consumer

        async def start(self):
            pass

        async def shutdown(self):
            pass

        async def consume(self, request):
            mutate(request)
            await self.next.consume(request)

    if changes_data is not None:
        InPlace.changes_data = changes_data

    @dataclasses.dataclass
    class Config:
        pass

    return types.SimpleNamespace(TYPE=type_name, Config=Config, SIGNALS=tuple(Signal),
                                 create=lambda settings, config, next_consumer: InPlace(next_consumer))


def rename(request) -> None:
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.name = "renamed"


def send_through(module, request):
    """(what the sink received) for ``request`` sent to a real OTLP receiver -> module -> otlp exporter."""
    sink = Sink().start()
    port = free_port()
    registry = default_registry().add("processors", module)
    config = load(f"""
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}}}
processors:
  {module.TYPE}:
exporters:
  otlp: {{endpoint: "{sink.endpoint}", tls: {{insecure: true}}, compression: none, sending_queue: {{enabled: false}}}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [{module.TYPE}], exporters: [otlp]}}
""", registry, env={})

    async def run():
        graph = Graph(config, SelfMetrics())
        await graph.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await channel.unary_unary(Signal.TRACES.method)(request.SerializeToString(), timeout=10)
        finally:
            await graph.shutdown(5.0)

    try:
        asyncio.run(run())
        assert sink.wait_for(Signal.TRACES, sum(len(ss.spans) for rs in request.resource_spans
                                                for ss in rs.scope_spans))
        return sink.requests[Signal.TRACES]
    finally:
        sink.stop()


def test_a_processor_that_changes_the_request_in_place_without_any_helper_sends_the_change():
    sent = traces_request(spans=3)
    [received] = send_through(processor_module("inplace", rename, changes_data=None), sent)
    assert {span.name for rs in received.resource_spans for ss in rs.scope_spans for span in ss.spans} == {"renamed"}


def test_the_guard_is_what_does_it_a_processor_that_says_it_changes_nothing_is_believed():
    """Control: one that declares changes_data = False and still changes the request has the bytes it
    arrived as forwarded, so the test above passes because of the guard, not by accident."""
    sent = traces_request(spans=3)
    [received] = send_through(processor_module("liar", rename, changes_data=False), sent)
    assert received == sent
