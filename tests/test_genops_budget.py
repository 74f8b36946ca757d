"""The genops_budget processor and the genops_ledger extension, in process with a real ledger file."""

from __future__ import annotations

import asyncio
import datetime
import random
import time

import pytest
from prometheus_client import CollectorRegistry

from relay import attrs
from relay.component import ComponentID, Host, Settings
from relay.config.decode import decode
from relay.extensions import genops_ledger
from relay.extensions.genops_ledger import parse_range
from relay.processors import genops_budget
from relay.telemetry import SelfMetrics
from tests.e2e.test_budgets_e2e import llm_span, new_request
from tests.support import Recorder

DAY = "2026-04-02T12:00:00+00:00"


def when(text: str = DAY) -> int:
    import datetime

    return int(datetime.datetime.fromisoformat(text).timestamp() * 1e9)


def ledger_config(tmp_path, **raw):
    config, problems = decode(genops_ledger.Config, {"directory": str(tmp_path), **raw})
    assert problems == [], problems
    return config


def build(tmp_path, budget_attributes: bool = False, budgets=None):
    telemetry = SelfMetrics(CollectorRegistry())
    host = Host({}, None, telemetry)
    ledger_id = ComponentID("genops_ledger")
    extension = genops_ledger.create(Settings(ledger_id, telemetry, host=host), ledger_config(tmp_path, budgets=budgets or [
        {"team": "search", "daily_usd": 10}]))
    host.extensions[ledger_id] = extension
    sink = Recorder()
    config, problems = decode(genops_budget.Config, {"budget_attributes": budget_attributes})
    assert problems == []
    processor = genops_budget.create(Settings(ComponentID("genops_budget"), telemetry, host=host), config, sink)
    return extension, processor, sink, telemetry, host


def test_failover_events_carry_the_reference_fields(tmp_path, component_log):
    extension, processor, sink, telemetry, _ = build(tmp_path)
    rng = random.Random(1)
    request = new_request()
    llm_span(request, team="search", cost=0.1, when_ns=when(), rng=rng, provider="Azure",
             extra={"genops.openrouter.predicted_provider": "OpenAI"})
    llm_span(request, team="search", cost=0.1, when_ns=when(), rng=rng, provider="Together",
             extra={"genops.openrouter.fallback_used": True, "genops.openrouter.predicted_provider": "Fireworks"})
    llm_span(request, team="search", cost=0.1, when_ns=when(), rng=rng, provider="OpenAI",
             extra={"genops.openrouter.predicted_provider": "OpenAI"})  # as predicted: no event

    async def run():
        await extension.start()
        try:
            await processor.consume(request)
        finally:
            await extension.shutdown()

    asyncio.run(run())
    records = [r for r in component_log.records if r.getMessage() == "openrouter_provider_failover"]
    assert [(r.fields["original_provider"], r.fields["fallback_provider"], r.fields["reason"]) for r in records] == [
        ("OpenAI", "Azure", "provider_mismatch"), ("Fireworks", "Together", "fallback_used")]
    assert all(r.fields["model"] == "openai/gpt-4o" and r.fields["team"] == "search" for r in records)
    assert sink.requests == [request]
    assert telemetry.registry.get_sample_value("otelcol_genops_provider_failovers_total",
                                               {"model": "openai/gpt-4o", "reason": "fallback_used"}) == 1


def test_budget_attributes_are_stamped_on_a_team_over_a_threshold(tmp_path):
    extension, processor, sink, _, _ = build(tmp_path, budget_attributes=True)
    rng = random.Random(2)
    now = time.time_ns()
    first, second = new_request(), new_request()
    llm_span(first, team="search", cost=6.0, when_ns=now, rng=rng)     # crosses 0.5 of 10
    llm_span(second, team="search", cost=1.0, when_ns=now, rng=rng)
    llm_span(second, team="ads", cost=1.0, when_ns=now, rng=rng)        # no budget: untouched

    async def run():
        await extension.start()
        try:
            await processor.consume(first)
            await processor.consume(second)
        finally:
            await extension.shutdown()

    asyncio.run(run())
    search, ads = sink.requests[1].resource_spans[0].scope_spans[0].spans
    assert attrs.get(search.attributes, "genops.budget.name") == "search"
    assert attrs.get(search.attributes, "genops.budget.allocated") == 10.0
    assert attrs.get(search.attributes, "genops.budget.consumed") == pytest.approx(7.0)
    assert attrs.get(search.attributes, "genops.budget.remaining") == pytest.approx(3.0)
    assert attrs.get(search.attributes, "genops.budget.utilization_percent") == pytest.approx(70.0)
    assert attrs.find(ads.attributes, "genops.budget.name") is None


def test_spans_that_are_not_llm_calls_are_not_booked(tmp_path):
    extension, processor, _, _, _ = build(tmp_path)
    request = new_request()
    span = request.resource_spans[0].scope_spans[0].spans.add(name="GET /health")
    attrs.put(span.attributes, "genops.team", "search")

    async def run():
        await extension.start()
        try:
            await processor.consume(request)
            assert len(extension.ledger.pending) == 0
        finally:
            await extension.shutdown()

    asyncio.run(run())


@pytest.mark.parametrize("raw, problem", [
    ({"timezone": "Mars/Olympus"}, 'timezone: "Mars/Olympus" is not an IANA time zone (e.g. UTC, Europe/Berlin)'),
    ({"flush_interval": "0s"}, "flush_interval: must be positive"),
    ({"retention_days": 0}, "retention_days: must be at least 1"),
    ({"budgets": [{"team": "a", "daily_usd": 1}, {"team": "a", "monthly_usd": 2}]},
     'budgets::1::name: another budget is named "a" (set name to tell them apart)'),
])
def test_ledger_config_problems_name_the_key(tmp_path, raw, problem):
    _, problems = decode(genops_ledger.Config, {"directory": str(tmp_path), **raw})
    assert [str(p) for p in problems] == [problem]


@pytest.mark.parametrize("start, end, message", [
    ("2026-13-01", "2026-01-02", 'from "2026-13-01" is not a date'),
    ("2026-01-01", "01/02/2026", 'to "01/02/2026" is not a date'),
    ("2026-01-03", "2026-01-02", "to must not be before from"),
])
def test_report_ranges_are_checked(start, end, message):
    with pytest.raises(ValueError, match=message):
        parse_range(start, end, "UTC")


def test_without_from_or_to_the_range_is_this_month_so_far():
    now = datetime.datetime(2026, 3, 31, 23, 30, tzinfo=datetime.timezone.utc)   # 1 April in Berlin
    first, last = parse_range("", "", "Europe/Berlin", now=now)
    assert (first.isoformat(), last.isoformat()) == ("2026-04-01T00:00:00+02:00", "2026-04-02T00:00:00+02:00")
    first, last = parse_range("", "", "UTC", now=now)
    assert (first.isoformat(), last.isoformat()) == ("2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00")
    # One bound given: from the first of to's month, or up to the end of today.
    first, last = parse_range("", "2026-02-10", "UTC", now=now)
    assert (first.isoformat(), last.isoformat()) == ("2026-02-01T00:00:00+00:00", "2026-02-11T00:00:00+00:00")
    first, last = parse_range("2026-03-30", "", "UTC", now=now)
    assert (first.isoformat(), last.isoformat()) == ("2026-03-30T00:00:00+00:00", "2026-04-01T00:00:00+00:00")
    with pytest.raises(ValueError, match="to must not be before from"):
        parse_range("2026-04-02", "", "UTC", now=now)
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_range("", "", "Mars/Olympus", now=now)


def test_a_date_range_covers_whole_days_in_the_ledgers_zone():
    first, last = parse_range("2026-03-01", "2026-03-01", "Europe/Berlin")
    assert (first.isoformat(), last.isoformat()) == ("2026-03-01T00:00:00+01:00", "2026-03-02T00:00:00+01:00")


def test_flushes_at_the_same_time_write_each_batch_once(tmp_path):
    from relay.ledger.facts import SpanFacts

    extension, _, _, _, _ = build(tmp_path)
    ledger = extension.ledger

    def facts(cost: float) -> SpanFacts:
        return SpanFacts(when(), "search", "p", "m", "OpenAI", "", cost, {"input": 1, "output": 1}, False)

    async def run():
        await extension.start()
        try:
            for _ in range(100):
                ledger.record(facts(0.5))
            # The timer's flush and a report's flush may meet; the batch must land once.
            await asyncio.gather(ledger.flush(), ledger.flush(), ledger.flush())
            ledger.record(facts(1.0))
            await asyncio.gather(ledger.flush(), ledger.flush())
            day = ledger.status(when())[0].period
            return ledger._sum_written(day, {"team": "search", "project": None, "customer": None})
        finally:
            await extension.shutdown()

    assert asyncio.run(run()) == pytest.approx(51.0)
