"""GET /api/v1/budgets/check on the relay's telemetry listener, over a ledger holding known spend.

The extension is built as the service builds it and its routes are served by the
telemetry app the service serves (a real listener on 127.0.0.1), asked with a real
HTTP client. The ledger's clock is driven, so periods and the cache's expiry are the
test's to choose and nothing sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from relay.component import ComponentID, Host, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError
from relay.extensions import bearertokenauth, genops_ledger
from relay.ledger.check import Query
from relay.ledger.facts import SpanFacts
from relay.ledger.query import NOT_CONFIGURED, with_report_hint
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.telemetry import SelfMetrics, metrics_listener

NS = 10**9
FLUSH_S = 60
NOW = "2026-04-15T12:00:00+00:00"
TOKEN = "s3cret-token"
BUDGETS = [
    {"team": "search", "daily_usd": 10, "monthly_usd": 100},
    {"team": "search", "project": "web", "daily_usd": 4},
    {"team": "search", "customer": "acme", "monthly_usd": 30},
    {"team": "ads", "monthly_usd": 50},
    {"team": "over", "daily_usd": 1},
    {"team": "edge", "daily_usd": 2},
]


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * NS


def facts(team: str, cost: float, *, project: str = "p", customer: str = "", when: str = NOW) -> SpanFacts:
    return SpanFacts(at(when), team, project, "gpt-4o", "openai", customer, cost, {"input": 10}, False)


# (team, project, customer, cost, when, flushed before the checks)
SPEND = [
    ("search", "web", "acme", 3.0, "2026-04-15T09:00:00+00:00", True),
    ("search", "web", "", 0.5, "2026-04-15T11:00:00+00:00", False),
    ("search", "api", "acme", 25.0, "2026-04-03T10:00:00+00:00", True),
    ("search", "api", "", 2.0, "2026-04-15T08:00:00+00:00", False),
    ("search", "api", "", 500.0, "2026-03-31T23:00:00+00:00", True),   # last month: outside every period
    ("ads", "p", "", 10.0, "2026-04-10T10:00:00+00:00", True),
    ("over", "p", "", 1.5, "2026-04-15T10:00:00+00:00", True),
    ("edge", "p", "", 2.0, "2026-04-15T10:00:00+00:00", False),
]


class Clock:
    def __init__(self, text: str):
        self.now = at(text)

    def __call__(self) -> int:
        return self.now


class Relay:
    """A genops_ledger (and a bearertokenauth) built and served as the service does."""

    def __init__(self, tmp_path, budget_check=None):
        self.telemetry = SelfMetrics(CollectorRegistry())
        self.host = Host({}, None, self.telemetry)
        raw = {"directory": str(tmp_path), "flush_interval": f"{FLUSH_S}s", "budgets": BUDGETS}
        if budget_check is not None:
            raw["budget_check"] = budget_check
        config, problems = decode(genops_ledger.Config, raw)
        assert problems == [], problems
        auth_config, problems = decode(bearertokenauth.Config, {"token": TOKEN})
        assert problems == [], problems
        auth_id, ledger_id = ComponentID("bearertokenauth", "gateway"), ComponentID("genops_ledger")
        self.auth = bearertokenauth.create(Settings(auth_id, self.telemetry, host=self.host), auth_config)
        self.extension = genops_ledger.create(Settings(ledger_id, self.telemetry, host=self.host), config)
        self.host.extensions.update({auth_id: self.auth, ledger_id: self.extension})
        self.ledger = self.extension.ledger
        self.clock = self.ledger.clock = Clock(NOW)
        self.listener = metrics_listener(self.telemetry.registry, "127.0.0.1:0", with_report_hint(self.host.routes))
        self.session: aiohttp.ClientSession | None = None
        self.sums = 0

    async def __aenter__(self) -> "Relay":
        await self.listener.start()
        await self.auth.start()
        await self.extension.start()
        sum_cost = self.ledger.store.sum_cost

        def counted(*args, **kwargs):
            self.sums += 1
            return sum_cost(*args, **kwargs)

        self.ledger.store.sum_cost = counted
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()
        await self.extension.shutdown()
        await self.auth.shutdown()
        await self.listener.shutdown()

    async def book(self, spend) -> None:
        for team, project, customer, cost, when, flushed in spend:
            if flushed:
                self.ledger.record(facts(team, cost, project=project, customer=customer, when=when))
        await self.ledger.flush()
        for team, project, customer, cost, when, flushed in spend:
            if not flushed:
                self.ledger.record(facts(team, cost, project=project, customer=customer, when=when))

    async def get(self, query: str, headers=None) -> tuple[int, dict]:
        url = f"http://127.0.0.1:{self.listener.port}/api/v1/budgets/check{query}"
        async with self.session.get(url, headers=headers or {}) as answer:
            assert answer.content_type == "application/json"
            return answer.status, await answer.json()


def budget(team, project=None, customer=None, daily=None, monthly=None) -> dict:
    name = "/".join(part for part in (team, project, customer) if part)
    return {"name": name, "team": team, "project": project, "customer": customer, "daily_usd": daily,
            "monthly_usd": monthly}


SEARCH = budget("search", daily=10, monthly=100)
# Spend of the tables above: search today 3 + 0.5 + 2 = 5.5; this month also 25 (acme); acme 3 + 25.
CASES = [
    # team only: the project and customer budgets do not apply; the daily limit is the tighter.
    ("?team=search", {"allowed": True, "spent_usd": 5.5, "limit_usd": 10.0, "remaining_usd": 4.5,
                      "utilization": 0.55, "period": "daily", "period_key": "2026-04-15", "budget": SEARCH,
                      "budgets_applied": 1}),
    # the project budget: 3 + 0.5 spent of 4 today.
    ("?team=search&project=web", {"allowed": True, "spent_usd": 3.5, "limit_usd": 4.0, "remaining_usd": 0.5,
                                  "utilization": 0.875, "period": "daily", "period_key": "2026-04-15",
                                  "budget": budget("search", "web", daily=4), "budgets_applied": 2}),
    # the customer budget: 3 + 25 of 30 this month, tighter than the team's 4.5 today.
    ("?team=search&project=api&customer=acme",
     {"allowed": True, "spent_usd": 28.0, "limit_usd": 30.0, "remaining_usd": 2.0, "utilization": 28 / 30,
      "period": "monthly", "period_key": "2026-04", "budget": budget("search", customer="acme", monthly=30),
      "budgets_applied": 2}),
    # all three apply; the project's 0.5 left is the least.
    ("?team=search&project=web&customer=acme",
     {"allowed": True, "spent_usd": 3.5, "limit_usd": 4.0, "remaining_usd": 0.5, "utilization": 0.875,
      "period": "daily", "period_key": "2026-04-15", "budget": budget("search", "web", daily=4),
      "budgets_applied": 3}),
    # a monthly-only budget; the customer narrows nothing here.
    ("?team=ads&customer=someone", {"allowed": True, "spent_usd": 10.0, "limit_usd": 50.0, "remaining_usd": 40.0,
                                    "utilization": 0.2, "period": "monthly", "period_key": "2026-04",
                                    "budget": budget("ads", monthly=50), "budgets_applied": 1}),
    ("?team=over", {"allowed": False, "spent_usd": 1.5, "limit_usd": 1.0, "remaining_usd": 0.0,
                    "utilization": 1.5, "period": "daily", "period_key": "2026-04-15",
                    "budget": budget("over", daily=1), "budgets_applied": 1}),
    # spend equal to the limit is not allowed (spent >= limit); this spend is not flushed yet.
    ("?team=edge", {"allowed": False, "spent_usd": 2.0, "limit_usd": 2.0, "remaining_usd": 0.0,
                    "utilization": 1.0, "period": "daily", "period_key": "2026-04-15",
                    "budget": budget("edge", daily=2), "budgets_applied": 1}),
    ("?team=nobody", {"allowed": True, "spent_usd": None, "limit_usd": None, "remaining_usd": None,
                      "utilization": None, "period": None, "period_key": None, "budget": None,
                      "reason": "no budget applies to this team, project and customer"}),
]


def test_the_tightest_applicable_budget_decides(tmp_path):
    async def run():
        async with Relay(tmp_path) as relay:
            await relay.book(SPEND)
            return [await relay.get(query) for query, _ in CASES]

    for (query, expected), (status, answer) in zip(CASES, asyncio.run(run())):
        assert status == 200, (query, answer)
        assert answer["spend"] == "stored+unflushed" and answer["max_staleness_s"] == FLUSH_S
        assert answer["as_of"] == "2026-04-15T12:00:00.000+00:00"
        got = {key: answer[key] for key in expected}
        for key in ("spent_usd", "remaining_usd", "utilization"):
            if expected[key] is not None:
                assert got[key] == pytest.approx(expected[key], abs=1e-9), (query, key)
                got[key] = expected[key]
        assert got == expected, query


def test_a_new_booking_shows_after_the_flush_interval_and_a_cached_answer_reads_no_store(tmp_path):
    async def run():
        async with Relay(tmp_path) as relay:
            await relay.book(SPEND)
            first = (await relay.get("?team=ads"))[1]["spent_usd"]
            sums = relay.sums
            relay.ledger.record(facts("ads", 5.0))
            relay.clock.now += FLUSH_S * NS - 1
            cached = (await relay.get("?team=ads"))[1]["spent_usd"]
            cached_sums = relay.sums
            other = (await relay.get("?team=ads&project=x"))[1]["spent_usd"]   # another query: read now
            relay.clock.now += 1
            fresh = (await relay.get("?team=ads"))[1]["spent_usd"]
            return first, sums, cached, cached_sums, other, fresh, relay.sums

    first, sums, cached, cached_sums, other, fresh, last_sums = asyncio.run(run())
    assert (first, cached) == (10.0, 10.0)
    assert sums > 0 and cached_sums == sums          # the cached answer asked the store nothing
    assert other == 15.0 and fresh == 15.0           # unflushed spend counts once read again
    assert last_sums > cached_sums


def test_concurrent_misses_of_one_query_read_once(tmp_path):
    async def run():
        async with Relay(tmp_path) as relay:
            await relay.book(SPEND)
            check, before = relay.extension.check, relay.sums
            answers = await asyncio.gather(*(check.answer(Query("search")) for _ in range(8)))
            return answers, check.reads, relay.sums - before

    answers, reads, sums = asyncio.run(run())
    assert [answer["spent_usd"] for answer in answers] == [pytest.approx(5.5)] * 8
    assert reads == 1 and sums == 2     # one read: the team budget's day and month


@pytest.mark.parametrize("query, message", [
    ("", "team is required: the team whose call is to be checked (team=…)"),
    ("?project=web", "team is required: the team whose call is to be checked (team=…)"),
    ("?team=", "team is required: the team whose call is to be checked (team=…)"),
    ("?team=a&model=gpt", "unknown parameter model (use team, project, customer)"),
    ("?team=a&team=b", "team is given more than once"),
])
def test_bad_queries_get_a_400_in_json(tmp_path, query, message):
    async def run():
        async with Relay(tmp_path) as relay:
            return await relay.get(query)

    assert asyncio.run(run()) == (400, {"error": message})


def test_with_budget_check_auth_a_check_needs_the_token(tmp_path):
    async def run():
        async with Relay(tmp_path, {"auth": {"authenticator": "bearertokenauth/gateway"}}) as relay:
            await relay.book(SPEND)
            return [await relay.get("?team=ads"),
                    await relay.get("?team=ads", {"Authorization": "Bearer wrong"}),
                    await relay.get("?team=ads", {"Authorization": f"Bearer {TOKEN}"})]

    (none, wrong, right) = asyncio.run(run())
    assert none == (401, {"error": "missing or invalid credentials"})
    assert wrong == (401, {"error": "missing or invalid credentials"})
    assert right[0] == 200 and right[1]["allowed"] is True and right[1]["spent_usd"] == 10.0


LOADED = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  debug: {{}}
extensions:
  bearertokenauth/gateway:
    token: ${{env:GATEWAY_TOKEN}}
  genops_ledger:
    directory: {directory}
    budget_check:
      auth:
        authenticator: {authenticator}
service:
  extensions: [{enabled}]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"""


@pytest.mark.parametrize("authenticator, enabled, problem", [
    ("bearertokenauth/gateway", "genops_ledger",
     'extensions::genops_ledger::budget_check::auth::authenticator: extension "bearertokenauth/gateway" must '
     "also be listed in service::extensions"),
    ("bearertokenauth/other", "bearertokenauth/gateway, genops_ledger",
     'extensions::genops_ledger::budget_check::auth::authenticator: references extension '
     '"bearertokenauth/other", which is not configured under extensions'),
])
def test_the_checks_authenticator_is_checked_when_the_config_loads(tmp_path, authenticator, enabled, problem):
    with pytest.raises(ConfigError) as caught:
        load(LOADED.format(directory=tmp_path, authenticator=authenticator, enabled=enabled), default_registry(),
             env={"GATEWAY_TOKEN": TOKEN})
    assert [str(p) for p in caught.value.problems] == [problem]
    assert TOKEN not in str(caught.value)


def test_a_loaded_relay_serves_the_check_behind_the_token(tmp_path):
    config = load(LOADED.format(directory=tmp_path, authenticator="bearertokenauth/gateway",
                                enabled="bearertokenauth/gateway, genops_ledger"), default_registry(),
                  env={"GATEWAY_TOKEN": TOKEN})

    async def run():
        telemetry = SelfMetrics(CollectorRegistry())
        graph = Graph(config, telemetry)
        listener = metrics_listener(telemetry.registry, "127.0.0.1:0", with_report_hint(graph.host.routes))
        await listener.start()
        await graph.start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                out = []
                for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
                    async with session.get(f"http://127.0.0.1:{listener.port}/api/v1/budgets/check?team=a",
                                           headers=headers) as answer:
                        out.append((answer.status, await answer.json()))
                return out
        finally:
            await graph.shutdown(5)
            await listener.shutdown()

    refused, answered = asyncio.run(run())
    assert refused == (401, {"error": "missing or invalid credentials"})
    assert answered[0] == 200 and answered[1]["allowed"] is True and answered[1]["budget"] is None


def test_without_a_ledger_the_check_answers_how_to_keep_one():
    async def run():
        telemetry = SelfMetrics(CollectorRegistry())
        listener = metrics_listener(telemetry.registry, "127.0.0.1:0", with_report_hint([]))
        await listener.start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                out = []
                for path in ("/api/v1/budgets/check?team=a", "/api/v1/cost/report"):
                    async with session.get(f"http://127.0.0.1:{listener.port}{path}") as answer:
                        out.append((answer.status, await answer.json()))
                return out
        finally:
            await listener.shutdown()

    check, report = asyncio.run(run())
    assert check == report == (404, {"error": NOT_CONFIGURED})
