"""The dialect table through the genops processor: every instrumentation's names priced alike."""

from __future__ import annotations

import math

import pytest

from relay import attrs
from relay.genai import dialects, provider
from relay.processors.genops import plan
from tests.test_genops_processor import GPT4O, O1, build, per_million, reader, request_with, run  # noqa: F401 - reader: both scanners

CACHED_COST = (per_million(GPT4O["input"], 2_000) + per_million(GPT4O["cache_read"], 8_000)
               + per_million(GPT4O["output"], 100))
PLAIN_COST = per_million(GPT4O["input"], 10_000) + per_million(GPT4O["output"], 100)

# One row per dialect: the attributes its library writes for the same call (10,000 input
# tokens of which 8,000 were read from cache, 100 output), and the cost that must come out.
DIALECT_CASES = {
    "genops": ({"genops.model": "openai/gpt-4o", "genops.tokens.input": 10_000, "genops.tokens.output": 100,
                "genops.tokens.cache_read": 8_000}, CACHED_COST),
    "otel_genai current": ({"gen_ai.response.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 10_000,
                            "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 8_000},
                           CACHED_COST),
    "otel_genai old names": ({"gen_ai.request.model": "openai/gpt-4o", "gen_ai.usage.prompt_tokens": 10_000,
                              "gen_ai.usage.completion_tokens": 100}, PLAIN_COST),
    "openllmetry": ({"gen_ai.response.model": "openai/gpt-4o", "gen_ai.usage.prompt_tokens": 10_000,
                     "gen_ai.usage.completion_tokens": 100, "gen_ai.usage.cache_read_input_tokens": 8_000,
                     "llm.usage.total_tokens": 10_100}, CACHED_COST),
    "openinference": ({"llm.model_name": "openai/gpt-4o", "llm.provider": "openai",
                       "llm.token_count.prompt": 10_000, "llm.token_count.completion": 100,
                       "llm.token_count.total": 10_100, "llm.token_count.prompt_details.cache_read": 8_000},
                      CACHED_COST),
    "vercel_ai v4": ({"ai.model.id": "openai/gpt-4o", "ai.model.provider": "openai.chat",
                      "ai.usage.promptTokens": 10_000, "ai.usage.completionTokens": 100}, PLAIN_COST),
    "vercel_ai v5": ({"ai.model.id": "openai/gpt-4o", "ai.usage.inputTokens": 10_000,
                      "ai.usage.outputTokens": 100, "ai.usage.cachedInputTokens": 8_000}, CACHED_COST),
    "logfire": ({"gen_ai.request.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 10_000,
                 "gen_ai.usage.output_tokens": 100,
                 "gen_ai.usage.raw": '{"prompt_tokens": 10000, "completion_tokens": 100, '
                                     '"prompt_tokens_details": {"cached_tokens": 8000}}'}, CACHED_COST),
    "openrouter_broadcast": ({"gen_ai.response.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 10_000,
                              "gen_ai.usage.output_tokens": 100, "gen_ai.usage.input_tokens.cached": 8_000},
                             CACHED_COST),
}


@pytest.mark.parametrize("name", DIALECT_CASES)
def test_each_dialect_is_priced_once_with_its_cache_detail(name):
    attributes, expected = DIALECT_CASES[name]
    processor, _ = build()
    (span,) = run(processor, request_with([attributes]))
    assert span["genops.cost.source"] == "computed"
    assert span["genops.cost.total"] == pytest.approx(expected, rel=1e-12)
    assert span["genops.tokens.input"] == 10_000 and span["genops.tokens.output"] == 100


def test_reasoning_tokens_of_each_dialect_are_priced_at_the_reasoning_rate():
    expected = per_million(O1["input"], 500) + per_million(O1["output"], 500) + per_million(O1["reasoning"], 3_500)
    processor, _ = build()
    spans = run(processor, request_with([
        {"gen_ai.response.model": "openai/o1", "gen_ai.usage.input_tokens": 500, "gen_ai.usage.output_tokens": 4_000,
         "gen_ai.usage.reasoning.output_tokens": 3_500},
        {"llm.model_name": "openai/o1", "llm.token_count.prompt": 500, "llm.token_count.completion": 4_000,
         "llm.token_count.completion_details.reasoning": 3_500},
        {"ai.model.id": "openai/o1", "ai.usage.inputTokens": 500, "ai.usage.outputTokens": 4_000,
         "ai.usage.reasoningTokens": 3_500},
        {"gen_ai.request.model": "openai/o1", "gen_ai.usage.input_tokens": 500, "gen_ai.usage.output_tokens": 4_000,
         "gen_ai.usage.raw": '{"completion_tokens_details": {"reasoning_tokens": 3500}}'},
    ]))
    assert [s["genops.cost.total"] for s in spans] == [pytest.approx(expected, rel=1e-12)] * 4
    assert [s["genops.tokens.reasoning"] for s in spans] == [3_500] * 4


@pytest.mark.parametrize("key", ["gen_ai.usage.cache_write.input_tokens", "gen_ai.usage.cache_creation.input_tokens",
                                 "gen_ai.usage.cache_creation_input_tokens",
                                 "llm.token_count.prompt_details.cache_write"])
def test_cache_writes_under_old_and_current_names(key):
    processor, _ = build({"pricing": {"overrides": [
        {"model": "anthropic/claude-x", "input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}]}})
    (span,) = run(processor, request_with([{"gen_ai.request.model": "anthropic/claude-x",
                                            "gen_ai.usage.input_tokens": 5_000, "gen_ai.usage.output_tokens": 10,
                                            key: 4_000}]))
    assert span["genops.cost.total"] == pytest.approx(
        per_million(3.0, 1_000) + per_million(3.75, 4_000) + per_million(15.0, 10), rel=1e-12)
    assert span["genops.tokens.cache_write"] == 4_000


def test_more_cached_than_input_means_the_counts_were_exclusive():
    # Cached tokens cannot be part of a smaller input count, so none is priced twice or negative.
    processor, _ = build()
    (span,) = run(processor, request_with([{"gen_ai.response.model": "openai/gpt-4o",
                                            "gen_ai.usage.input_tokens": 2_000, "gen_ai.usage.output_tokens": 100,
                                            "gen_ai.usage.cache_read.input_tokens": 8_000}]))
    assert span["genops.tokens.input"] == 10_000
    assert span["genops.cost.total"] == pytest.approx(CACHED_COST, rel=1e-12)


@pytest.mark.parametrize("attributes, expected", [
    ({"gen_ai.usage.cost": 0.0042}, 0.0042),                      # OpenLIT
    ({"llm.cost.total": 0.0042}, 0.0042),                         # OpenInference
    ({"gen_ai.cost.total_cost": 0.0042}, 0.0042),                 # LiteLLM
    ({"litellm.cost.total": 0.0042}, 0.0042),                     # LiteLLM, v2 keys
    ({"gen_ai.usage.total_cost": 0.0042}, 0.0042),                # OpenRouter Broadcast
    ({"gen_ai.usage.raw": '{"cost": 0.0042}'}, 0.0042),           # Logfire through OpenRouter
])
def test_each_dialects_reported_cost_is_kept(attributes, expected):
    processor, _ = build()
    (span,) = run(processor, request_with([{"gen_ai.response.model": "openai/gpt-4o",
                                            "gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 100,
                                            **attributes}]))
    assert span["genops.cost.source"] == "reported"
    assert span["genops.cost.total"] == expected
    assert span["genops.cost.computed"] == pytest.approx(PLAIN_COST, rel=1e-12)


def test_a_usage_json_past_its_size_bound_is_not_parsed():
    processor, _ = build()
    raw = '{"cost": 0.5, "pad": "' + "x" * 20_000 + '"}'
    (span,) = run(processor, request_with([{"gen_ai.response.model": "openai/gpt-4o",
                                            "gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 100,
                                            "gen_ai.usage.raw": raw}]))
    assert span["genops.cost.source"] == "computed"


def test_the_dialect_table_derives_the_concept_lists():
    assert dialects.INPUT_TOKENS[0] == "genops.tokens.input"
    assert "llm.token_count.prompt" in dialects.INPUT_TOKENS and "ai.usage.promptTokens" in dialects.INPUT_TOKENS
    assert dialects.MODEL.index("gen_ai.response.model") < dialects.MODEL.index("gen_ai.request.model")
    assert dialects.MODEL.index("llm.model_name") < dialects.MODEL.index("ai.model.id")
    assert all(row.counting in ("inclusive", "exclusive") for row in dialects.DIALECTS)
    names = [row.name for row in dialects.DIALECTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("attributes, resource, expected", [
    ({"server.address": "openrouter.ai", "gen_ai.system": "openai"}, {}, ("openrouter", None, None)),
    ({"url.full": "https://openrouter.ai/api/v1/chat/completions"}, {}, ("openrouter", None, None)),
    ({"http.url": "https://eu.openrouter.ai/api/v1"}, {}, ("openrouter", None, None)),
    ({"server.address": "api.openai.com", "gen_ai.system": "openai"}, {}, ("openai", None, None)),
    ({"gen_ai.provider.name": "azure.ai.openai"}, {}, ("azure.ai.openai", None, None)),
    ({"ai.model.provider": "anthropic.messages"}, {}, ("anthropic", None, None)),
    ({}, {}, ("openai", None, "inferred")),  # from the model's vendor/ prefix
    ({"gen_ai.usage.total_cost": 0.001, "gen_ai.provider.name": "openai",
      "trace.metadata.openrouter.provider_name": "Azure"}, {"service.name": "openrouter"}, ("openrouter", "Azure", None)),
    ({"gen_ai.provider.name": "Azure"}, {"service.name": "openrouter"}, ("openrouter", "Azure", None)),
])
def test_provider_and_openrouters_upstream(attributes, resource, expected):
    processor, _ = build()
    (span,) = run(processor, request_with([{"gen_ai.request.model": "openai/gpt-4o",
                                            "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1,
                                            **attributes}], resource or None))
    assert (span.get("genops.provider"), span.get("genops.openrouter.actual_provider"),
            span.get("genops.provider.source")) == expected


def test_openrouter_host_check_is_exact():
    assert provider.is_openrouter_host("OpenRouter.ai:443")
    assert not provider.is_openrouter_host("evil-openrouter.ai")
    assert not provider.is_openrouter_host("openrouter.ai.example.com")


def test_trace_metadata_and_api_key_names_attribute_broadcast_spans():
    processor, _ = build({"api_keys": {"search-prod": {"team": "search", "project": "ranking"}}})
    base = {"gen_ai.request.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 1, "gen_ai.usage.total_cost": 0.001}
    by_metadata, by_key, both = run(processor, request_with([
        {**base, "trace.metadata.team": "growth", "trace.metadata.customer_id": "c-9"},
        {**base, "trace.metadata.openrouter.api_key_name": "search-prod"},
        {**base, "trace.metadata.openrouter.api_key_name": "search-prod", "trace.metadata.team": "growth"},
    ], {"service.name": "openrouter"}))
    assert (by_metadata["genops.team"], by_metadata["genops.customer_id"]) == ("growth", "c-9")
    assert (by_key["genops.team"], by_key["genops.project"]) == ("search", "ranking")
    assert (both["genops.team"], both["genops.project"]) == ("growth", "ranking")  # the call's own word first
    assert math.isclose(by_key["genops.cost.total"], 0.001)


def test_api_keys_config_names_known_fields():
    from relay.config.decode import decode
    from relay.processors import genops

    config, problems = decode(genops.Config, {"api_keys": {"k": {"squad": "x"}, "empty": {}}})
    assert [str(p) for p in problems] == [
        'api_keys::k::squad: unknown field (valid: team, project, customer_id, environment, feature, cost_center)',
        "api_keys::empty: must set at least one of: team, project, customer_id, environment, feature, cost_center",
    ]


@pytest.mark.skipif(plan._usage is None, reason="the native pricing path was not built here")
def test_the_native_and_python_pricing_paths_write_the_same(monkeypatch):
    from relay.bench.payload import llm_spans

    def enriched(native: bool) -> list[dict]:
        if not native:
            monkeypatch.setattr(plan, "_usage", None)
        processor, _ = build({"duplicates": {"max_calls": 1000}})
        request = llm_spans(400, payload="dialects")
        processor.process(request)
        # The same spans again: the second copy of each call is a duplicate on both paths.
        again = llm_spans(400, payload="dialects")
        processor.process(again)
        return [{kv.key: attrs.to_python(kv.value) for kv in span.attributes}
                for r in (request, again) for rs in r.resource_spans for ss in rs.scope_spans for span in ss.spans]

    native = enriched(True)
    python = enriched(False)
    assert len(native) == len(python) == 800
    assert native == python
    calls_again = [span for span in native[400:] if span.get("gen_ai.response.id") and "genops.cost.source" in span]
    assert len(calls_again) > 200
    assert [span.get("genops.call.duplicate") for span in native[400:] if span in calls_again] == \
        [True] * len(calls_again)
    assert not any(span.get("genops.call.duplicate") for span in native[:400])
