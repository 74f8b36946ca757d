"""serve() that fails to start leaves nothing global behind: no log filters on the relay's
handlers, no target_info in the registry, so a second serve() in the same process starts."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from relay.config.load import load
from relay.pipeline.registry import default_registry
from relay.service import serve
from relay.telemetry import SelfMetrics
from tests.support import free_port

WAIT = 10.0


def config_text(metrics_port: int) -> str:
    tree = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{free_port()}"}}}},
            "exporters": {"debug": {}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
                        "telemetry": {
                            # initial_fields installs a filter on every handler of the relay's loggers.
                            "logs": {"initial_fields": {"cluster": "eu-1"}},
                            "metrics": {"readers": [{"pull": {"exporter": {"prometheus": {
                                "host": "127.0.0.1", "port": metrics_port}}}}]}}}}
    return yaml.safe_dump(tree, sort_keys=False)


class Broken(Exception):
    pass


class FailingFactory:
    """The debug exporter's factory, except that building the exporter fails (as a component
    whose create() raises would): nothing real fails at that point on demand."""

    def __init__(self, factory):
        self._factory = factory

    def __getattr__(self, name):
        return getattr(self._factory, name)

    def create(self, *args, **kwargs):
        raise Broken("cannot build")


@pytest.fixture
def handler():
    # A handler on the relay's logger, where install_filters puts the log filters.
    handler = logging.NullHandler()
    logger = logging.getLogger("relay")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(WAIT)) as answer:
            return await answer.text()


def test_a_graph_that_fails_to_build_leaves_nothing_behind_and_a_second_serve_starts(handler):
    telemetry = SelfMetrics(CollectorRegistry())
    port = free_port()
    broken = load(config_text(port), default_registry(), env={})
    factories = broken.factories["exporters"]
    for id_ in list(factories):
        factories[id_] = FailingFactory(factories[id_])

    async def scenario():
        with pytest.raises(Broken):
            await asyncio.wait_for(serve(broken, telemetry, asyncio.Event(), shutdown_timeout=2), WAIT)
        assert handler.filters == []
        assert "target_info" not in generate_latest(telemetry.registry).decode()

        stop = asyncio.Event()
        good = load(config_text(port), default_registry(), env={})
        task = asyncio.create_task(serve(good, telemetry, stop, shutdown_timeout=2))
        try:
            for _ in range(500):  # bounded: until the listener answers or the serve fails
                if task.done():
                    task.result()  # raises what stopped it
                try:
                    body = await scrape(port)
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.01)
            else:
                raise AssertionError("the second serve never listened")
            assert handler.filters != []
            return body
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT)

    body = asyncio.run(scenario())
    assert body.count("\ntarget_info{") + body.startswith("target_info{") == 1
    assert handler.filters == []
