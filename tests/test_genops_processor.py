"""The genops processor: attribution order, cost precedence and what it writes."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from relay import attrs, client
from relay.client import ClientInfo
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.genai import scan as read
from relay.processors import genops
from relay.processors.genops import plan
from relay.telemetry import SelfMetrics
from tests.support import Recorder

# Rates written here, per million tokens, so expected costs never come from the code under test.
GPT4O = {"input": 2.5, "output": 10.0, "cache_read": 1.25}
MINI = {"input": 0.15, "output": 0.6}
O1 = {"input": 15.0, "output": 60.0, "reasoning": 60.0}
PRICING = {"overrides": [
    {"model": "openai/gpt-4o", **GPT4O},
    {"model": "openai/gpt-4o-mini", **MINI},
    {"model": "openai/o1", **O1},
]}
SPAN_START = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


@pytest.fixture(autouse=True, params=["native", "python"] if read.NATIVE else ["python"])
def reader(request, monkeypatch):
    """Every test runs with the native scanner (where built) and with the pure-Python reader."""
    if request.param == "python":
        monkeypatch.setattr(read, "_scan", None)
        monkeypatch.setattr(plan, "_usage", None)  # and spans are priced by the Python path
    return request.param


def build(settings: dict | None = None, telemetry: SelfMetrics | None = None):
    settings = {"pricing": PRICING, **(settings or {})}
    config, problems = decode(genops.Config, settings)
    assert problems == []
    telemetry = telemetry or SelfMetrics()
    return genops.create(Settings(ComponentID("genops"), telemetry), config, Recorder()), telemetry


def request_with(span_attributes: list[dict], resource: dict | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in (resource or {"service.name": "chat-api"}).items():
        attrs.put(rs.resource.attributes, key, value)
    ss = rs.scope_spans.add()
    for index, attributes in enumerate(span_attributes):
        span = ss.spans.add(name=f"span {index}", span_id=bytes([index + 1]) * 8, trace_id=b"\x01" * 16,
                            start_time_unix_nano=SPAN_START)
        for key, value in attributes.items():
            attrs.put(span.attributes, key, value)
    return request


def run(processor, request) -> list[dict]:
    processor.process(request)
    return [{kv.key: attrs.to_python(kv.value) for kv in span.attributes}
            for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def per_million(rate: float, tokens: int) -> float:
    return rate * tokens / 1_000_000


def test_non_llm_spans_pass_untouched():
    processor, _ = build()
    request = request_with([{"http.route": "/health", "http.response.status_code": 200}, {}])
    before = request.SerializeToString()
    processor.process(request)
    assert request.SerializeToString() == before


def test_computed_cost_and_every_written_attribute():
    processor, telemetry = build()
    (span,) = run(processor, request_with([{
        "gen_ai.request.model": "openai/gpt-4o", "gen_ai.system": "openai",
        "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300,
    }]))
    expected = per_million(GPT4O["input"], 1200) + per_million(GPT4O["output"], 300)
    assert span["genops.cost.total"] == pytest.approx(expected, rel=1e-12)
    assert span["genops.cost.source"] == "computed"
    assert span["genops.cost.currency"] == "USD"
    assert span["genops.cost.price_source"] == "override"
    assert span["genops.team"] == "unassigned" and span["genops.project"] == "unassigned"
    assert span["genops.model"] == "openai/gpt-4o" and span["genops.provider"] == "openai"
    assert span["genops.tokens.input"] == 1200 and span["genops.tokens.output"] == 300
    assert telemetry.registry.get_sample_value(
        "otelcol_processor_genops_spans_total", {"processor": "genops", "source": "computed"}) == 1


def test_cached_and_reasoning_tokens_are_priced_once_at_their_own_rates():
    processor, _ = build()
    cached, reasoning = run(processor, request_with([
        {"gen_ai.response.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 10_000,
         "gen_ai.usage.cache_read.input_tokens": 8_000, "gen_ai.usage.output_tokens": 100},
        {"gen_ai.response.model": "openai/o1", "gen_ai.usage.input_tokens": 500,
         "gen_ai.usage.output_tokens": 4_000, "gen_ai.usage.reasoning_tokens": 3_500},
    ]))
    assert cached["genops.cost.total"] == pytest.approx(
        per_million(GPT4O["input"], 2_000) + per_million(GPT4O["cache_read"], 8_000)
        + per_million(GPT4O["output"], 100), rel=1e-12)
    assert reasoning["genops.cost.total"] == pytest.approx(
        per_million(O1["input"], 500) + per_million(O1["output"], 500) + per_million(O1["reasoning"], 3_500),
        rel=1e-12)


def test_exclusive_token_counting_adds_cache_tokens_to_input():
    processor, _ = build({"token_counting": "exclusive"})
    (span,) = run(processor, request_with([
        {"gen_ai.response.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 2_000,
         "gen_ai.usage.cache_read_input_tokens": 8_000, "gen_ai.usage.output_tokens": 100}]))
    assert span["genops.tokens.input"] == 10_000
    assert span["genops.cost.total"] == pytest.approx(
        per_million(GPT4O["input"], 2_000) + per_million(GPT4O["cache_read"], 8_000)
        + per_million(GPT4O["output"], 100), rel=1e-12)


@pytest.mark.parametrize("key", ["genops.cost.total", "genops.cost.amount", "gen_ai.usage.cost", "llm.cost.total"])
def test_a_reported_cost_is_kept_exactly_as_sent(key):
    processor, telemetry = build()
    (span,) = run(processor, request_with([{
        "gen_ai.response.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 1_000_000,
        "gen_ai.usage.output_tokens": 1_000_000, key: 0.0123456789}]))
    assert span[key] == 0.0123456789
    assert span["genops.cost.total"] == 0.0123456789
    assert span["genops.cost.source"] == "reported"
    assert "genops.cost.price_source" not in span
    assert telemetry.registry.get_sample_value(
        "otelcol_processor_genops_spans_total", {"processor": "genops", "source": "reported"}) == 1


def test_a_reported_currency_is_not_overwritten():
    processor, _ = build()
    (span,) = run(processor, request_with([{"gen_ai.request.model": "x", "genops.cost.total": 1.5,
                                            "genops.cost.currency": "EUR"}]))
    assert span["genops.cost.currency"] == "EUR" and span["genops.cost.total"] == 1.5


def test_the_response_model_is_priced_before_the_request_model():
    processor, _ = build()
    (span,) = run(processor, request_with([{
        "gen_ai.request.model": "openai/gpt-4o", "gen_ai.response.model": "openai/gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 1000}]))
    assert span["genops.cost.total"] == pytest.approx(per_million(MINI["input"], 1000)
                                                       + per_million(MINI["output"], 1000), rel=1e-12)
    assert span["genops.model"] == "openai/gpt-4o-mini"


def test_an_unknown_response_model_falls_back_to_the_request_model():
    processor, _ = build()
    (span,) = run(processor, request_with([{
        "gen_ai.request.model": "openai/gpt-4o", "gen_ai.response.model": "acme/never-heard-of-it",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 0}]))
    assert span["genops.cost.total"] == pytest.approx(per_million(GPT4O["input"], 1000), rel=1e-12)


def test_an_unknown_model_is_unpriced_counted_and_gets_no_cost():
    processor, telemetry = build()
    spans = run(processor, request_with([
        {"gen_ai.request.model": "acme/secret-model-7", "gen_ai.usage.input_tokens": 10,
         "gen_ai.usage.output_tokens": 5},
        {"gen_ai.request.model": "acme/secret-model-7"},
    ]))
    for span in spans:
        assert span["genops.cost.source"] == "unpriced"
        assert "genops.cost.total" not in span and "genops.cost.currency" not in span
    sample = telemetry.registry.get_sample_value
    assert sample("otelcol_processor_genops_unpriced_spans_total",
                  {"processor": "genops", "model": "acme/secret-model-7", "reason": "unknown_model"}) == 1
    assert sample("otelcol_processor_genops_unpriced_spans_total",
                  {"processor": "genops", "model": "acme/secret-model-7", "reason": "no_usage"}) == 1


def test_the_fallback_rate_prices_unknown_models_when_configured():
    processor, _ = build({"pricing": {**PRICING, "fallback": {"input": 1.0, "output": 2.0}}})
    (span,) = run(processor, request_with([{
        "gen_ai.request.model": "acme/secret-model-7", "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 1000}]))
    assert span["genops.cost.source"] == "computed"
    assert span["genops.cost.price_source"] == "fallback"
    assert span["genops.cost.total"] == pytest.approx(per_million(1.0, 1000) + per_million(2.0, 1000), rel=1e-12)


def test_unpriced_model_labels_are_bounded(monkeypatch):
    monkeypatch.setattr(genops, "MODEL_LABEL_LIMIT", 3)
    processor, telemetry = build()
    run(processor, request_with([{"gen_ai.request.model": f"acme/m{i}", "gen_ai.usage.input_tokens": 1}
                                 for i in range(10)]))
    samples = [s for metric in telemetry.registry.collect() if metric.name == "otelcol_processor_genops_unpriced_spans"
               for s in metric.samples if s.name.endswith("_total")]
    models = {s.labels["model"] for s in samples}
    assert models == {"acme/m0", "acme/m1", "acme/m2", "other"}
    assert sum(s.value for s in samples) == 10


RULES = {
    "defaults": {"team": "unassigned", "project": "misc", "environment": "dev"},
    "rules": [
        {"from_context": "metadata.x-genops-team", "target": "team"},
        {"attribute": "service.name", "value": "chat-api", "set": {"team": "chat", "project": "assistant"}},
        {"attribute": "service.name", "pattern": "^search-", "set": {"team": "search"}},
    ],
}
LLM = {"gen_ai.request.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 1}


@pytest.mark.parametrize("span, resource, metadata, expected", [
    # The span's own attribute wins over everything.
    ({"genops.team": "span-team"}, {"service.name": "chat-api", "genops.team": "res-team"}, [("x-genops-team", "hdr")],
     {"genops.team": "span-team", "genops.project": "assistant"}),
    # Then the resource's.
    ({}, {"service.name": "chat-api", "genops.team": "res-team"}, [("x-genops-team", "hdr")],
     {"genops.team": "res-team", "genops.project": "assistant"}),
    # Then rules in order: the header rule comes first.
    ({}, {"service.name": "chat-api"}, [("x-genops-team", "hdr")], {"genops.team": "hdr", "genops.project": "assistant"}),
    ({}, {"service.name": "chat-api"}, [], {"genops.team": "chat", "genops.project": "assistant"}),
    ({}, {"service.name": "search-indexer"}, [], {"genops.team": "search", "genops.project": "misc"}),
    # A span attribute can trigger a rule too.
    ({"service.name": "search-api"}, {}, [], {"genops.team": "search"}),
    # Then defaults.
    ({}, {"service.name": "billing"}, [], {"genops.team": "unassigned", "genops.project": "misc",
                                           "genops.environment": "dev"}),
    # Environment falls back to deployment.environment(.name), span then resource, before defaults.
    ({"deployment.environment": "staging"}, {"deployment.environment.name": "prod"}, [],
     {"genops.environment": "staging"}),
    ({}, {"deployment.environment.name": "prod"}, [], {"genops.environment": "prod"}),
    ({}, {"genops.customer_id": "cust-9", "genops.cost_center": "cc-1"}, [],
     {"genops.customer_id": "cust-9", "genops.cost_center": "cc-1"}),
])
def test_attribution_order(span, resource, metadata, expected):
    processor, _ = build(RULES)
    token = client.bind(ClientInfo.from_pairs(metadata))
    try:
        (got,) = run(processor, request_with([{**LLM, **span}], resource))
    finally:
        client.unbind(token)
    for key, value in expected.items():
        assert got[key] == value, key


def test_metadata_reaches_the_processor_through_a_fanout_task():
    processor, _ = build(RULES)
    request = request_with([dict(LLM)], {"service.name": "billing"})

    async def run_in_task():
        token = client.bind(ClientInfo.from_pairs([("x-genops-team", "from-header")]))
        try:
            await asyncio.gather(processor.consume(request))
        finally:
            client.unbind(token)

    asyncio.run(run_in_task())
    assert attrs.get(request.resource_spans[0].scope_spans[0].spans[0].attributes, "genops.team") == "from-header"


@pytest.mark.parametrize("settings, expected", [
    ({"defaults": {"squad": "x"}}, ["defaults::squad: unknown field (valid: team, project, customer_id, "
                                    "environment, feature, cost_center)"]),
    ({"rules": [{"attribute": "service.name", "set": {"team": "a"}}]},
     ["rules::0::attribute: needs exactly one of value (exact) or pattern (regex)"]),
    ({"rules": [{"attribute": "service.name", "pattern": "(", "set": {"team": "a"}}]},
     ["rules::0::pattern: invalid regex: missing ), unterminated subpattern at position 0"]),
    ({"rules": [{"from_context": "header.x", "target": "team"}]},
     ['rules::0::from_context: must be "metadata.<key>" or "client.address"']),
    ({"rules": [{"from_context": "metadata.x", "target": "squad"}]},
     ["rules::0::target: must be one of: team, project, customer_id, environment, feature, cost_center"]),
    ({"rules": [{"attribute": "a", "from_context": "metadata.x"}]},
     ["rules::0: a rule needs exactly one of attribute or from_context"]),
    ({"pricing": {"currency": "EUR"}}, ['pricing::currency: "EUR": only USD is supported until conversion exists']),
])
def test_invalid_config(settings, expected):
    _, problems = decode(genops.Config, settings)
    assert [str(p) for p in problems] == expected


def test_plans_are_reused_across_requests_but_never_across_resources_or_clients():
    processor, _ = build(RULES)
    results = []
    for resource, header in [({"service.name": "billing"}, "alpha"), ({"service.name": "billing"}, "beta"),
                             ({"service.name": "chat-api"}, None), ({"service.name": "billing"}, "alpha")]:
        token = client.bind(ClientInfo.from_pairs([("x-genops-team", header)] if header else []))
        try:
            (span,) = run(processor, request_with([dict(LLM)], resource))
        finally:
            client.unbind(token)
        results.append((span["genops.team"], span["genops.project"]))
    assert results == [("alpha", "misc"), ("beta", "misc"), ("chat", "assistant"), ("alpha", "misc")]


class SwitchingBook:
    """A price book whose data an automatic update replaces between two requests."""

    def __init__(self):
        from relay.pricing import Rates

        self.version = object()
        self.rates = Rates(model="acme/m", source="builtin", input=1e-6, output=0.0)
        self.calls = 0

    def data_version(self):
        return self.version

    def rates_in_force(self, models, provider, at):
        self.calls += 1
        return self.rates, 0, 2**63  # valid forever, unless the data changes


def test_new_price_data_replaces_the_rates_plans_remember():
    from relay.pricing import Rates
    from relay.processors.genops.drift import Drift
    from relay.processors.genops.enrich import make

    book = SwitchingBook()
    config, _ = decode(genops.Config, {})
    process = make(config, book, lambda tally: None, Drift("genops", 10))
    span = {"gen_ai.request.model": "acme/m", "gen_ai.usage.input_tokens": 1_000_000}

    def cost():
        request = request_with([dict(span)])
        process(request)
        return attrs.get(request.resource_spans[0].scope_spans[0].spans[0].attributes, "genops.cost.total")

    assert cost() == pytest.approx(1.0)
    assert cost() == pytest.approx(1.0) and book.calls == 1  # remembered by the plan
    book.rates = Rates(model="acme/m", source="builtin", input=3e-6, output=0.0)
    book.version = object()
    assert cost() == pytest.approx(3.0) and book.calls == 2


def test_minimal_attributes_write_only_team_cost_and_the_duplicate_marks():
    processor, telemetry = build({"attributes": "minimal", "defaults": {"team": "t", "project": "p"}})
    call = {"gen_ai.request.model": "openai/gpt-4o", "gen_ai.system": "openai", "gen_ai.response.id": "r-1",
            "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}
    first, again, reported = run(processor, request_with([call, dict(call), {
        "gen_ai.request.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5, "gen_ai.usage.cost": -3.0}]))
    expected = per_million(GPT4O["input"], 1200) + per_million(GPT4O["output"], 300)
    assert first == {**call, "genops.team": "t", "genops.cost.total": pytest.approx(expected, rel=1e-12)}
    # A later copy of the call still says so, or a connector downstream would count it twice.
    assert again == {**call, "genops.team": "t", "genops.cost.total": pytest.approx(expected, rel=1e-12),
                     "genops.call.duplicate": True, "genops.cost.booked": 0.0}
    # A refused reported cost is still refused and counted; the span keeps its own value only.
    assert set(reported) - {"gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
                            "gen_ai.usage.cost"} == {"genops.team", "genops.cost.total"}
    assert telemetry.registry.get_sample_value(
        "otelcol_processor_genops_spans_total", {"processor": "genops", "source": "computed"}) == 3


def test_minimal_attributes_are_smaller_on_the_wire_than_full():
    call = {"gen_ai.request.model": "openai/gpt-4o", "gen_ai.system": "openai",
            "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}
    sizes = {}
    for mode in ("full", "minimal"):
        processor, _ = build({"attributes": mode})
        request = request_with([call])
        before = request.ByteSize()
        processor.process(request)
        sizes[mode] = request.ByteSize() - before
    assert sizes["minimal"] * 3 < sizes["full"], sizes


def test_attributes_takes_full_or_minimal_only():
    _, problems = decode(genops.Config, {"attributes": "tiny"})
    assert len(problems) == 1 and "attributes" in str(problems[0]) and "minimal" in str(problems[0])
