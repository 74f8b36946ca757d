"""The debug exporter and the health_check extension, driven in-process."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
from prometheus_client import CollectorRegistry

from relay import fixtures
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.exporters import debug
from relay.extensions import health_check
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


def test_health_check_answers_like_the_collector():
    config, problems = decode(health_check.Config, {"endpoint": "127.0.0.1:0"})
    assert not problems
    ext = health_check.create(Settings(ComponentID.parse("health_check"), None), config)

    async def get(session):
        async with session.get(f"http://127.0.0.1:{ext.port}/") as answer:
            return answer.status, await answer.json()

    async def run():
        await ext.start()
        try:
            async with aiohttp.ClientSession() as session:
                before = await get(session)
                ext.set_ready(True)
                during = await get(session)
                ext.set_ready(False)
                after = await get(session)
        finally:
            await ext.shutdown()
        return before, during, after

    before, during, after = asyncio.run(run())
    assert before == (503, {"status": "Server not available", "upSince": "0001-01-01T00:00:00Z", "uptime": ""})
    assert during[0] == 200 and during[1]["status"] == "Server available"
    assert during[1]["upSince"].endswith("Z") and during[1]["uptime"].endswith("s")
    assert after[0] == 503
