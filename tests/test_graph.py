"""The pipeline graph with test components from an injected registry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay.config.load import load
from relay.errors import Problem, RetryableError
from relay.pipeline.graph import Graph, describe
from relay.pipeline.registry import Registry
from relay.processors.helper import FunctionProcessor
from relay.signals import Signal
from relay.telemetry import SelfMetrics


def make_module(type_, signals, create):
    @dataclass
    class Config:
        tag: str = ""

        def validate(self) -> list[Problem]:
            return []

    return type("M", (), {"TYPE": type_, "SIGNALS": signals, "Config": Config, "create": staticmethod(create)})


class World:
    """Records lifecycle events and what each exporter received."""

    def __init__(self):
        self.events: list[str] = []
        self.received: dict[str, list] = {}
        self.receivers: dict[str, object] = {}
        self.fail: set[str] = set()


def registry_for(world: World) -> Registry:
    class Lifecycle:
        def __init__(self, name):
            self.id = name

        async def start(self):
            world.events.append(f"start {self.id}")

        async def shutdown(self):
            world.events.append(f"stop {self.id}")

    class Receiver(Lifecycle):
        def __init__(self, name, consumers):
            super().__init__(name)
            self.consumers = consumers
            world.receivers[name] = self

    class Exporter(Lifecycle):
        mutates_data = False

        async def consume(self, request):
            if self.id in world.fail:
                raise RetryableError(f"{self.id} is down", retry_after=2)
            world.received.setdefault(self.id, []).append(request)

    class Tagger(Lifecycle, FunctionProcessor):
        def __init__(self, name, tag, next_consumer):
            Lifecycle.__init__(self, name)
            FunctionProcessor.__init__(self, name, self.tag, next_consumer)
            self.value = tag

        def tag(self, request):
            for rs in request.resource_spans:
                kv = rs.resource.attributes.add()
                kv.key, kv.value.string_value = "tag", self.value
            return request

    all_signals = tuple(Signal)
    return (Registry()
            .add("receivers", make_module("src", all_signals, lambda s, c, consumers: Receiver(str(s.id), consumers)))
            .add("exporters", make_module("dst", all_signals, lambda s, c: Exporter(str(s.id))))
            .add("processors", make_module("tag", (Signal.TRACES,),
                                           lambda s, c, nxt: Tagger(str(s.id), c.tag, nxt))))


CONFIG = """
receivers: {src/a: {}, src/b: {}}
processors: {tag/x: {tag: x}, tag/y: {tag: y}}
exporters: {dst/1: {}, dst/2: {}, dst/3: {}}
service:
  pipelines:
    traces:      {receivers: [src/a, src/b], processors: [tag/x], exporters: [dst/1, dst/2]}
    traces/raw:  {receivers: [src/a], exporters: [dst/3]}
    traces/y:    {receivers: [src/a], processors: [tag/y, tag/x], exporters: [dst/3]}
    logs:        {receivers: [src/b], exporters: [dst/1]}
"""


def build(world):
    config = load(CONFIG, registry_for(world), env={})
    return config, Graph(config, SelfMetrics())


def one_span():
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(name="s")
    return request


def tags(request) -> list[str]:
    return [kv.value.string_value for kv in request.resource_spans[0].resource.attributes]


def test_start_and_shutdown_order():
    world = World()
    _, graph = build(world)

    async def run():
        await graph.start()
        world.events.append("--")
        await graph.shutdown(timeout=5)

    asyncio.run(run())
    started, stopped = world.events[:world.events.index("--")], world.events[world.events.index("--") + 1:]
    # Every exporter and processor is up before any receiver starts ...
    last_consumer = max(i for i, e in enumerate(started) if e.startswith(("start dst", "start tag")))
    first_receiver = min(i for i, e in enumerate(started) if e.startswith("start src"))
    assert last_consumer < first_receiver
    # ... a processor starts after what it feeds (tag/y feeds tag/x in traces/y) ...
    y_chain = [e for e in started if e in ("start tag/y", "start tag/x")]
    assert y_chain[-1] == "start tag/y"
    # ... and receivers stop first, exporters after processors.
    assert all(e.startswith("stop src") for e in stopped[:2])
    assert stopped.index("stop dst/1") > max(i for i, e in enumerate(stopped) if e.startswith("stop tag"))
    # One instance per exporter id, even when several pipelines name it.
    assert sorted(e for e in started if e.startswith("start dst")) == ["start dst/1", "start dst/2", "start dst/3"]


def test_fan_in_fan_out_and_copies_for_mutating_branches():
    world = World()
    _, graph = build(world)
    a, b = world.receivers["src/a"], world.receivers["src/b"]

    async def run():
        await a.consumers[Signal.TRACES].consume(one_span())
        await b.consumers[Signal.TRACES].consume(one_span())
        await b.consumers[Signal.LOGS].consume(ExportLogsServiceRequest())

    asyncio.run(run())
    # src/a feeds three traces pipelines, src/b one: fan-in on "traces".
    assert [tags(r) for r in world.received["dst/2"]] == [["x"], ["x"]]
    dst3 = sorted(tags(r) for r in world.received["dst/3"])
    # The untouched branch never sees another branch's edits.
    assert dst3 == [[], ["y", "x"]]
    assert sum(isinstance(r, ExportLogsServiceRequest) for r in world.received["dst/1"]) == 1
    assert Signal.LOGS not in a.consumers


def test_one_failing_branch_makes_the_whole_request_retryable_but_others_still_get_it():
    world = World()
    world.fail.add("dst/2")
    _, graph = build(world)
    b = world.receivers["src/b"]
    with pytest.raises(RetryableError) as error:
        asyncio.run(b.consumers[Signal.TRACES].consume(one_span()))
    assert error.value.retry_after == 2
    assert len(world.received["dst/1"]) == 1


def test_describe_prints_every_pipeline():
    world = World()
    config, _ = build(world)
    text = describe(config)
    assert "pipeline traces/y:\n  receivers:  src/a\n  processors: tag/y, tag/x\n  exporters:  dst/3" in text
    assert "pipeline logs:" in text


def test_fanout_calls_inline_consumers_directly_and_still_combines_every_failure():
    from relay.consumer import Fanout

    calls = []

    class Inline:
        mutates_data, runs_inline = False, True

        async def consume(self, request):
            calls.append("inline")
            raise RetryableError("inline branch failed", retry_after=1)

    class Waiting:
        mutates_data = False

        def __init__(self, name):
            self.name = name

        async def consume(self, request):
            await asyncio.sleep(0)
            calls.append(self.name)

    for waiting in ([Waiting("a")], [Waiting("a"), Waiting("b")]):
        calls.clear()
        with pytest.raises(RetryableError) as error:
            asyncio.run(Fanout([Inline()] + waiting).consume(one_span()))
        assert error.value.retry_after == 1
        assert calls == ["inline"] + [w.name for w in waiting]  # the others still got the data
