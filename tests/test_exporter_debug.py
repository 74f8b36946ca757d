"""The debug exporter, driven in-process."""

from __future__ import annotations

import asyncio
import io
import json

from prometheus_client import CollectorRegistry

from relay import fixtures
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.exporters import debug
from relay.telemetry import SelfMetrics, setup_logging


def run_debug(verbosity: str, request) -> list[dict]:
    stream = io.StringIO()
    setup_logging("info", stream)
    telemetry = SelfMetrics(CollectorRegistry())
    config, problems = decode(debug.Config, {"verbosity": verbosity})
    assert not problems
    exporter = debug.create(Settings(ComponentID.parse("debug/x"), telemetry), config)
    asyncio.run(exporter.consume(request))
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_debug_basic_logs_one_summary_line_per_request():
    request = fixtures.load("traces_llm")
    lines = run_debug("basic", request)
    assert len(lines) == 1
    spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    assert lines[0]["spans"] == spans and lines[0]["component"] == "debug/x"
    assert lines[0]["resources"] == len(request.resource_spans)
    assert "content" not in lines[0]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_debug_basic_writes_each_signals_sums_at_most_once_a_minute():
    """An SDK exporting every 5 s would otherwise get a line every 5 s for ever."""
    stream = io.StringIO()
    setup_logging("info", stream)
    clock = Clock()
    config, _ = decode(debug.Config, {"verbosity": "basic"})
    exporter = debug.create(Settings(ComponentID.parse("debug/x"), SelfMetrics(CollectorRegistry())), config,
                            clock=clock)
    traces, metrics = fixtures.load("traces_llm"), fixtures.load("metrics")
    spans = sum(len(ss.spans) for rs in traces.resource_spans for ss in rs.scope_spans)

    async def run():
        for _ in range(13):                     # exports of both signals every 5 s, for 60 s
            await exporter.consume(traces)
            await exporter.consume(metrics)
            clock.now += 5.0
        await exporter.consume(traces)          # two more within the next minute:
        await exporter.consume(traces)          # left for shutdown to write
        await exporter.shutdown()

    asyncio.run(run())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    traces_lines = [line for line in lines if line["msg"] == "traces received"]
    metrics_lines = [line for line in lines if line["msg"] == "metrics received"]
    # The first at once; at 60 s the sum of the twelve since; at shutdown the two unwritten.
    assert [line["requests"] for line in traces_lines] == [1, 12, 2]
    assert [line["spans"] for line in traces_lines] == [spans, 12 * spans, 2 * spans]
    assert [line["requests"] for line in metrics_lines] == [1, 12]
    assert len(lines) == 5


def test_debug_detailed_logs_the_whole_request_as_otlp_json():
    request = fixtures.load("metrics")
    (line,) = run_debug("detailed", request)
    from relay import otlpjson

    assert otlpjson.decode(line["content"], type(request)) == request


def test_debug_normal_adds_a_line_per_resource():
    request = fixtures.load("logs")
    lines = run_debug("normal", request)
    assert len(lines) == 1 + len(request.resource_logs)
    assert lines[1]["attributes"]["service.name"]
