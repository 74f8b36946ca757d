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
