"""The health_check extension, driven in-process."""

from __future__ import annotations

import asyncio

import aiohttp

from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.extensions import health_check


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
