"""Pricing: the built-in database against written-down prices, precedence, dates, names, arithmetic, cache.

Expected costs are computed here, by ``expected_cost`` below, from rates written
in this file with where they come from; nothing expected is read from the code
under test.
"""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import yaml

from relay.config.decode import decode
from relay.errors import ConfigError
from relay.pricing import (
    FallbackConfig,
    OverrideConfig,
    PriceBook,
    PricingConfig,
    Rates,
    RateTier,
    Usage,
    build,
    builtin,
    cost_of,
    names,
)
from relay.pricing.source import Answer
from relay.pricing.times import parse_instant, to_ns

M = 1_000_000
# The built-in data (genai-prices 0.2.3) records OpenRouter price changes up to
# 2026-11-09; the table is checked at a fixed later instant so every row is in force.
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def expected_cost(per_million: dict, usage: Usage) -> float:
    """Inclusive counts: cache tokens inside input, reasoning inside output; each token once."""
    inp, out = per_million["input"], per_million["output"]
    cache_read = per_million.get("cache_read", inp)
    cache_write = per_million.get("cache_write", inp)
    reasoning = per_million.get("reasoning", out)
    uncached = usage.input - usage.cache_read - usage.cache_write
    visible = usage.output - usage.reasoning
    return (uncached * inp + usage.cache_read * cache_read + usage.cache_write * cache_write
            + visible * out + usage.reasoning * reasoning) / M + per_million.get("request", 0.0)


PLAIN = Usage(input=12_000, output=800)
CACHED = Usage(input=12_000, output=800, cache_read=8_000)
CACHE_WRITE = Usage(input=12_000, output=800, cache_read=6_000, cache_write=3_000)
REASONING = Usage(input=3_000, output=5_000, reasoning=4_200)
CACHED_REASONING = Usage(input=20_000, output=6_000, cache_read=16_000, reasoning=5_000)

# (OpenRouter id, USD per million tokens, usage). Sources, per group:
TABLE = [
    # OpenAI API pricing page (openai.com/api/pricing), list prices, standard tier, as published
    # 2025; OpenRouter passes them through (its /api/v1/models lists the same, 2026-11).
    ("openai/gpt-4o", {"input": 2.5, "output": 10.0, "cache_read": 1.25}, CACHED),
    ("openai/gpt-4o-mini", {"input": 0.15, "output": 0.6, "cache_read": 0.075}, CACHED),
    ("openai/gpt-4o-2024-05-13", {"input": 5.0, "output": 15.0}, PLAIN),
    ("openai/gpt-4-turbo", {"input": 10.0, "output": 30.0}, PLAIN),
    ("openai/gpt-3.5-turbo", {"input": 0.5, "output": 1.5}, PLAIN),
    ("openai/gpt-4.1", {"input": 2.0, "output": 8.0, "cache_read": 0.5}, CACHED),
    ("openai/gpt-4.1-mini", {"input": 0.4, "output": 1.6, "cache_read": 0.1}, CACHED),
    ("openai/o1", {"input": 15.0, "output": 60.0, "cache_read": 7.5}, CACHED_REASONING),
    ("openai/o3-mini", {"input": 1.1, "output": 4.4, "cache_read": 0.55}, REASONING),
    ("openai/o4-mini", {"input": 1.1, "output": 4.4, "cache_read": 0.275}, CACHED_REASONING),
    ("openai/gpt-5", {"input": 1.25, "output": 10.0, "cache_read": 0.125}, CACHED_REASONING),
    # Anthropic pricing page (anthropic.com/pricing#api), 2025. OpenRouter's listing of the
    # Claude 3 and 3.x models carries no cache rates (2026-11), so cached tokens there cost input.
    ("anthropic/claude-3-opus", {"input": 15.0, "output": 75.0}, PLAIN),
    ("anthropic/claude-3-haiku", {"input": 0.25, "output": 1.25}, PLAIN),
    ("anthropic/claude-3.5-sonnet", {"input": 3.0, "output": 15.0}, PLAIN),
    ("anthropic/claude-3.5-haiku", {"input": 0.8, "output": 4.0}, PLAIN),
    ("anthropic/claude-3.7-sonnet", {"input": 3.0, "output": 15.0}, REASONING),
    ("anthropic/claude-sonnet-4", {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
     CACHE_WRITE),
    ("anthropic/claude-opus-4", {"input": 15.0, "output": 75.0, "cache_read": 1.5, "cache_write": 18.75},
     CACHE_WRITE),
    # Google Gemini API pricing page (ai.google.dev/gemini-api/docs/pricing), paid tier, prompts up
    # to 128k (1.5) / 200k (2.5) tokens, 2025; the 2.5 Pro cache-write rate as OpenRouter lists it.
    ("google/gemini-2.0-flash-001", {"input": 0.1, "output": 0.4}, PLAIN),
    ("google/gemini-flash-1.5", {"input": 0.075, "output": 0.3}, PLAIN),
    ("google/gemini-pro-1.5", {"input": 1.25, "output": 5.0}, PLAIN),
    ("google/gemini-2.5-pro", {"input": 1.25, "output": 10.0, "cache_read": 0.125, "cache_write": 0.375},
     CACHE_WRITE),
    # Mistral (mistral.ai/pricing), Mistral Large 24.11, 2025; cache-read rate as OpenRouter lists it, 2026-11.
    ("mistralai/mistral-large", {"input": 2.0, "output": 6.0, "cache_read": 0.2}, CACHED),
    # xAI API pricing (docs.x.ai), grok-2-1212, 2025.
    ("x-ai/grok-2-1212", {"input": 2.0, "output": 10.0}, PLAIN),
    # Cohere pricing, Command R+ (04-2024), 2024.
    ("cohere/command-r-plus", {"input": 3.0, "output": 15.0}, PLAIN),
    # Amazon Bedrock pricing, Nova Pro on-demand, 2025.
    ("amazon/nova-pro-v1", {"input": 0.8, "output": 3.2}, PLAIN),
    # OpenRouter /api/v1/models pricing as recorded in genai-prices 0.2.3 data, in force 2026-11-20
    # (hosted open-weight models: OpenRouter's own listing is the only source).
    ("meta-llama/llama-3.1-405b-instruct", {"input": 0.8, "output": 0.8}, PLAIN),
    ("deepseek/deepseek-r1", {"input": 0.7, "output": 2.5}, REASONING),
    # OpenRouter ":free" variants are billed 0 (openrouter.ai/docs, model variants).
    ("meta-llama/llama-3.3-70b-instruct:free", {"input": 0.0, "output": 0.0}, PLAIN),
]


@pytest.fixture(scope="module")
def builtin_book() -> PriceBook:
    return build(PricingConfig())


def test_table_has_the_required_models():
    ids = {row[0] for row in TABLE}
    assert len(ids) >= 20
    assert {"openai/gpt-4o", "anthropic/claude-3-opus", "meta-llama/llama-3.1-405b-instruct"} <= ids
    assert any(usage.cache_read for _, _, usage in TABLE)
    assert any(usage.reasoning for _, _, usage in TABLE)


@pytest.mark.parametrize("model, per_million, usage", TABLE, ids=[row[0] for row in TABLE])
def test_builtin_database_matches_published_prices(builtin_book, model, per_million, usage):
    rates = builtin_book.rates([model], None, AT)
    assert rates is not None, model
    assert (rates.model, rates.source) == (model, "builtin")
    assert cost_of(rates, usage).total == pytest.approx(expected_cost(per_million, usage), rel=1e-9, abs=1e-15)


def test_builtin_price_history_is_chosen_by_the_span_start(builtin_book):
    # deepseek/deepseek-r1 on OpenRouter: 0.45/2.15 per million until 2026-10-18, 0.70/2.50 from
    # 2026-10-19 (OpenRouter listing as recorded in genai-prices 0.2.3).
    usage = Usage(input=1_000, output=2_000, reasoning=1_500)
    change = to_ns(datetime(2026, 10, 19, tzinfo=UTC))
    before = builtin_book.rates(["deepseek/deepseek-r1"], None, change - 1)
    at = builtin_book.rates(["deepseek/deepseek-r1"], None, change)
    assert cost_of(before, usage).total == pytest.approx(expected_cost({"input": 0.45, "output": 2.15}, usage))
    assert cost_of(at, usage).total == pytest.approx(expected_cost({"input": 0.7, "output": 2.5}, usage))
    # Asked again in the old period after the new one was cached: still the old price.
    assert builtin_book.rates(["deepseek/deepseek-r1"], None, change - 10**12) == before


def test_builtin_long_context_tier(builtin_book):
    # Gemini 2.5 Pro (Google pricing page, 2025): above 200k prompt tokens every token costs
    # 2.50 in / 15.00 out / 0.25 cached per million instead of 1.25 / 10.00 / 0.125.
    rates = builtin_book.rates(["google/gemini-2.5-pro"], None, AT)
    at_limit = Usage(input=200_000, output=1_000, cache_read=50_000)
    above = Usage(input=200_001, output=1_000, cache_read=50_000)
    assert cost_of(rates, at_limit).total == pytest.approx(
        expected_cost({"input": 1.25, "output": 10.0, "cache_read": 0.125}, at_limit))
    assert cost_of(rates, above).total == pytest.approx(
        expected_cost({"input": 2.5, "output": 15.0, "cache_read": 0.25}, above))


def test_catalogue_index_answers_like_genai_prices():
    from genai_prices.data import providers
    from genai_prices.types import ClauseEquals, ClauseOr

    openrouter = next(p for p in providers if p.id == "openrouter")
    catalogue = builtin._Catalogue(openrouter)
    asked = {"acme/unknown", "OPENAI/GPT-4O", "openai/gpt-5.6-sol-20260101", "openai/gpt-5.6-sol-x"}
    for model in openrouter.models:
        clauses = model.match.or_ if isinstance(model.match, ClauseOr) else [model.match]
        asked |= {c.equals for c in clauses if isinstance(c, ClauseEquals)}
    assert all(catalogue.find_model(name) is openrouter.find_model(name) for name in asked)


def test_pricing_makes_no_network_request(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pricing tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    before = {t.name for t in threading.enumerate()}
    book = build(PricingConfig())
    book.start()
    assert book.rates(["openai/gpt-4o"], None, AT) is not None
    book.close()
    assert {t.name for t in threading.enumerate()} == before


# --- sources and precedence -------------------------------------------------------------------

def models_file(tmp_path, entries, name="models.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"data": entries}))
    return str(path)


def entry(model: str, **pricing) -> dict:
    """An entry shaped like OpenRouter's GET /api/v1/models (fields trimmed)."""
    return {"id": model, "canonical_slug": pricing.pop("slug", model), "name": model, "created": 1715558400,
            "context_length": 128000,
            "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"],
                             "tokenizer": "Other", "instruct_type": None},
            "pricing": {"request": "0", "image": "0", "web_search": "0", "internal_reasoning": "0", **pricing},
            "top_provider": {"context_length": 128000, "max_completion_tokens": 16384, "is_moderated": False},
            "per_request_limits": None, "supported_parameters": ["max_tokens", "temperature"]}


def override(model: str, input: float, output: float, **extra) -> OverrideConfig:
    return OverrideConfig(model=model, input=input, output=output, **extra)


def test_override_beats_models_file_beats_builtin(tmp_path):
    path = models_file(tmp_path, [entry("openai/gpt-4o", prompt="0.000003", completion="0.000012")])
    only_builtin = build(PricingConfig())
    with_file = build(PricingConfig(openrouter_models_file=path))
    with_both = build(PricingConfig(openrouter_models_file=path, overrides=[override("openai/gpt-4o", 2.0, 8.0)]))

    assert only_builtin.rates(["openai/gpt-4o"], None, AT).source == "builtin"
    from_file = with_file.rates(["openai/gpt-4o"], None, AT)
    assert (from_file.source, from_file.detail, from_file.input, from_file.output) == \
        ("models_file", path, pytest.approx(3 / M), pytest.approx(12 / M))
    from_override = with_both.rates(["openai/gpt-4o"], None, AT)
    assert (from_override.source, from_override.input, from_override.output) == \
        ("override", pytest.approx(2 / M), pytest.approx(8 / M))
    # The file still prices what the overrides do not name.
    assert with_both.rates(["openai/gpt-4o-mini"], None, AT).source == "builtin"


PERIODS = [
    override("openai/gpt-4o", 2.0, 8.0, effective_from="2025-01-01", effective_until="2025-07-01"),
    override("openai/gpt-4o", 1.5, 6.0, effective_from="2025-07-01T00:00:00Z"),
]


@pytest.mark.parametrize("at, expected", [
    ("2024-12-31T23:59:59.999999Z", "builtin"),  # before the first range: the database
    ("2025-01-01", 2.0),                         # from is inclusive
    ("2025-06-30T23:59:59.999999Z", 2.0),
    ("2025-07-01", 1.5),                         # until is exclusive; the next range starts
    ("2025-07-01T02:00:00+02:00", 1.5),          # the same instant written with an offset
    ("2030-01-01", 1.5),                         # an open end
])
def test_effective_dates_choose_the_rate(at, expected):
    book = build(PricingConfig(overrides=PERIODS))
    rates = book.rates(["openai/gpt-4o"], None, parse_instant(at))
    if expected == "builtin":
        assert rates.source == "builtin"
    else:
        assert (rates.source, rates.input) == ("override", pytest.approx(expected / M))


def test_cached_periods_never_leak_across_a_boundary():
    book = build(PricingConfig(overrides=PERIODS))
    boundary = parse_instant("2025-07-01")
    order = [boundary, boundary - 1, boundary + 1, boundary - 1, parse_instant("2024-06-01"), boundary]
    got = [book.rates(["openai/gpt-4o"], None, at) for at in order]
    assert [r.input * M if r.source == "override" else "builtin" for r in got] == \
        [pytest.approx(1.5), pytest.approx(2.0), pytest.approx(1.5), pytest.approx(2.0), "builtin",
         pytest.approx(1.5)]


def test_regex_override_keys():
    book = build(PricingConfig(overrides=[
        override(r"regex:^anthropic/claude-3\.5-sonnet(:beta)?$", 2.7, 13.5),
        override("anthropic/claude-3.5-sonnet", 2.4, 12.0, effective_from="2026-01-01"),
    ]))
    before = datetime(2025, 12, 31, tzinfo=UTC)
    rates = book.rates(["Anthropic/Claude-3.5-Sonnet:beta"], None, before)
    assert (rates.source, rates.model, rates.input) == \
        ("override", "anthropic/claude-3.5-sonnet:beta", pytest.approx(2.7 / M))
    assert rates.detail.startswith("regex:")
    # An exact key is tried before any regex, whatever the written order.
    assert book.rates(["anthropic/claude-3.5-sonnet"], None, AT).input == pytest.approx(2.4 / M)
    assert book.rates(["anthropic/claude-3.5-haiku"], None, AT).source == "builtin"


def test_unknown_model_is_unpriced_unless_a_fallback_is_configured():
    unknown = ["acme/secret-model-7"]
    assert build(PricingConfig()).rates(unknown, None, AT) is None
    book = build(PricingConfig(fallback=FallbackConfig(input=5.0, output=15.0)))
    rates = book.rates(unknown, "acme", AT)
    assert (rates.source, rates.model, rates.input, rates.output) == \
        ("fallback", "acme/secret-model-7", pytest.approx(5 / M), pytest.approx(15 / M))
    assert book.rates(["openai/gpt-4o"], None, AT).source == "builtin"
    assert book.rates([], None, AT) is None


def test_response_model_is_priced_before_the_request_model():
    book = build(PricingConfig(overrides=[override("openai/gpt-4o", 1.0, 1.0)]))
    # [response model, request model]: OpenRouter bills the model that answered.
    assert book.rates(["openai/gpt-4o-mini", "openai/gpt-4o"], None, AT).model == "openai/gpt-4o-mini"
    # The response model is priced by the database even though an override names the request model.
    assert book.rates(["openai/gpt-4o-mini", "openai/gpt-4o"], None, AT).source == "builtin"
    # An unknown response model falls back to the request model.
    assert book.rates(["acme/unknown", "openai/gpt-4o"], None, AT).model == "openai/gpt-4o"


@pytest.mark.parametrize("name, provider, first_forms", [
    (" OpenAI/GPT-4o ", None, ["OpenAI/GPT-4o", "openai/gpt-4o"]),
    ("gpt-4o", "openai", ["gpt-4o", "openai/gpt-4o"]),
    ("gemini-2.5-pro", "gcp.gemini", ["gemini-2.5-pro", "google/gemini-2.5-pro"]),
    ("claude-3-5-sonnet-20240620", None, ["claude-3-5-sonnet-20240620", "anthropic/claude-3-5-sonnet-20240620",
                                          "claude-3-5-sonnet", "anthropic/claude-3-5-sonnet"]),
    ("anthropic/claude-3.5-sonnet:beta", None, ["anthropic/claude-3.5-sonnet:beta",
                                                "anthropic/claude-3.5-sonnet"]),
    ("openai/gpt-4o-2024-08-06:nitro", None, ["openai/gpt-4o-2024-08-06:nitro", "openai/gpt-4o-2024-08-06",
                                              "openai/gpt-4o"]),
    ("openrouter/anthropic/claude-3-opus", None, ["openrouter/anthropic/claude-3-opus",
                                                  "anthropic/claude-3-opus"]),
    ("openai/gpt-3.5-turbo-0125", None, ["openai/gpt-3.5-turbo-0125", "openai/gpt-3.5-turbo"]),
    # Never stripped: a free variant is not the paid model, a batch variant has its own price,
    # and "-2407" is a year-month release name, not a snapshot of a base model.
    ("meta-llama/llama-3.3-70b-instruct:free", None, ["meta-llama/llama-3.3-70b-instruct:free"]),
    ("anthropic/claude-haiku-5.5:batch", None, ["anthropic/claude-haiku-5.5:batch"]),
    ("openai/gpt-4o:extended", None, ["openai/gpt-4o:extended"]),
    ("mistralai/mistral-large-2407", None, ["mistralai/mistral-large-2407"]),
    ("   ", None, []),
])
def test_name_forms(name, provider, first_forms):
    assert names.forms(name, provider) == first_forms


@pytest.mark.parametrize("asked, provider, canonical", [
    ("OpenAI/GPT-4o-2024-08-06 ", None, "openai/gpt-4o"),
    ("anthropic/claude-3.5-sonnet:beta", None, "anthropic/claude-3.5-sonnet"),
    ("gpt-4o", "openai", "openai/gpt-4o"),
    ("gpt-4o", None, "openai/gpt-4o"),
    ("openrouter/anthropic/claude-3-opus", None, "anthropic/claude-3-opus"),
    ("claude-3-5-sonnet-20240620", "anthropic", "anthropic/claude-3-5-sonnet"),
])
def test_normalised_names_reach_the_database(builtin_book, asked, provider, canonical):
    assert builtin_book.rates([asked], provider, AT).model == canonical


def test_overrides_apply_to_normalised_names():
    book = build(PricingConfig(overrides=[override("openai/gpt-4o", 2.0, 8.0)]))
    asked_as = [("gpt-4o", "openai"), ("OPENAI/gpt-4o:beta", None), ("openai/gpt-4o-2099-01-01", None)]
    for asked, provider in asked_as:
        rates = book.rates([asked], provider, AT)
        assert (rates.source, rates.model) == ("override", "openai/gpt-4o"), asked


def test_exact_snapshot_and_free_variant_win_over_their_base(tmp_path):
    path = models_file(tmp_path, [
        entry("openai/gpt-4o", prompt="0.0000025", completion="0.00001"),
        entry("openai/gpt-4o-2024-05-13", prompt="0.000005", completion="0.000015"),
        entry("meta-llama/llama-3.3-70b-instruct", prompt="0.00000013", completion="0.0000004"),
        entry("meta-llama/llama-3.3-70b-instruct:free", prompt="0", completion="0"),
        entry("acme/chat-1", prompt="0.00000012", completion="0.00000039"),
    ])
    book = build(PricingConfig(openrouter_models_file=path))
    assert book.rates(["openai/gpt-4o-2024-05-13"], None, AT).input == pytest.approx(5 / M)
    assert book.rates(["openai/gpt-4o-2024-11-20"], None, AT).model == "openai/gpt-4o"
    free = book.rates(["meta-llama/llama-3.3-70b-instruct:free"], None, AT)
    assert (free.source, free.input, free.output) == ("models_file", 0.0, 0.0)
    # A :free id no source lists is not priced as the paid model.
    assert book.rates(["acme/chat-1:free"], None, AT) is None
    assert book.rates(["acme/chat-1:beta"], None, AT).model == "acme/chat-1"


# --- the models file --------------------------------------------------------------------------

REALISTIC = [
    entry("openai/gpt-4o", slug="openai/gpt-4o", prompt="0.0000025", completion="0.00001",
          image="0.003613", input_cache_read="0.00000125"),
    entry("anthropic/claude-3.5-sonnet", slug="anthropic/claude-3.5-sonnet-20240620", prompt="0.000003",
          completion="0.000015", input_cache_read="0.0000003", input_cache_write="0.00000375"),
    entry("deepseek/deepseek-r1", prompt="0.0000007", completion="0.0000025", internal_reasoning="0"),
    entry("perplexity/sonar-pro", prompt="0.000003", completion="0.000015", request="0.005",
          web_search="0.005"),
    entry("openrouter/auto", prompt="-1", completion="-1", request="-1"),
    entry("meta-llama/llama-3.3-70b-instruct:free", prompt="0", completion="0", input_cache_read="0"),
    entry("acme/reasoner", prompt="0.000001", completion="0.000004", internal_reasoning="0.000002"),
]


@pytest.fixture
def file_book(tmp_path) -> PriceBook:
    return build(PricingConfig(openrouter_models_file=models_file(tmp_path, REALISTIC)))


def test_models_file_reads_the_api_shape(file_book):
    gpt = file_book.rates(["openai/gpt-4o"], None, AT)
    assert (gpt.model, gpt.source) == ("openai/gpt-4o", "models_file")
    assert (gpt.input, gpt.output, gpt.cache_read, gpt.cache_write, gpt.reasoning, gpt.request) == \
        (pytest.approx(2.5 / M), pytest.approx(10 / M), pytest.approx(1.25 / M), None, None, 0.0)
    claude = file_book.rates(["anthropic/claude-3.5-sonnet"], None, AT)
    assert (claude.cache_read, claude.cache_write) == (pytest.approx(0.3 / M), pytest.approx(3.75 / M))
    # The canonical slug finds the entry too.
    assert file_book.rates(["anthropic/claude-3.5-sonnet-20240620"], None, AT).source == "models_file"
    assert file_book.rates(["perplexity/sonar-pro"], None, AT).request == pytest.approx(0.005)
    assert file_book.rates(["acme/reasoner"], None, AT).reasoning == pytest.approx(2 / M)


def test_models_file_zero_separate_rates_mean_none(file_book):
    # internal_reasoning "0": reasoning tokens are billed as completion tokens, not free.
    r1 = file_book.rates(["deepseek/deepseek-r1"], None, AT)
    usage = Usage(input=1_000, output=3_000, reasoning=2_500)
    assert r1.reasoning is None
    assert cost_of(r1, usage).total == pytest.approx(expected_cost({"input": 0.7, "output": 2.5}, usage))
    free = file_book.rates(["meta-llama/llama-3.3-70b-instruct:free"], None, AT)
    assert cost_of(free, Usage(input=5_000, output=500, cache_read=4_000)).total == 0.0


def test_models_file_variable_pricing_is_unpriceable(tmp_path):
    assert build(PricingConfig(openrouter_models_file=models_file(tmp_path, REALISTIC))) \
        .rates(["openrouter/auto"], None, AT) is None
    # "-1" also keeps lower sources from pricing the id: the database would be wrong for it.
    path = models_file(tmp_path, [entry("openai/gpt-4o", prompt="-1", completion="-1")], "variable.json")
    book = build(PricingConfig(openrouter_models_file=path))
    assert book.rates(["openai/gpt-4o"], None, AT) is None
    # The next candidate (the request model) is still tried.
    assert book.rates(["openai/gpt-4o", "openai/gpt-4o-mini"], None, AT).model == "openai/gpt-4o-mini"


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"models": []}', 'expected an object with a "data" list'),
    (json.dumps({"data": [entry("openai/gpt-4o", prompt="abc", completion="0.00001")]}),
     'data[0] ("openai/gpt-4o"): pricing.prompt "abc" is not a decimal number'),
    (json.dumps({"data": [{"id": "x/y"}]}), 'data[0] ("x/y") has no pricing object'),
    (json.dumps({"data": [entry("ok/one", prompt="0", completion="0"), {"pricing": {}}]}),
     "data[1] has no string id"),
    (json.dumps({"data": [{"id": "x/y", "pricing": {"prompt": "0.000001"}}]}),
     'data[0] ("x/y"): pricing.completion is missing'),
    (json.dumps({"data": [entry("x/y", prompt="-0.5", completion="0")]}), "is not a price"),
])
def test_malformed_models_file_is_a_problem_naming_file_and_entry(tmp_path, content, message):
    path = tmp_path / "broken.json"
    path.write_text(content)
    config = PricingConfig(openrouter_models_file=str(path))
    problems = config.validate()
    assert len(problems) == 1
    assert problems[0].path == ("openrouter_models_file",)
    assert str(path) in problems[0].message and message in problems[0].message
    with pytest.raises(ConfigError) as raised:
        build(config)
    assert message in str(raised.value)


def test_missing_models_file_is_a_problem(tmp_path):
    problems = PricingConfig(openrouter_models_file=str(tmp_path / "absent.json")).validate()
    assert [p.path for p in problems] == [("openrouter_models_file",)]
    assert "absent.json" in problems[0].message and "cannot read" in problems[0].message


# --- arithmetic -------------------------------------------------------------------------------

RATES = Rates(model="m", source="override", input=3 / M, output=15 / M, cache_read=0.3 / M, cache_write=3.75 / M,
              reasoning=10 / M, request=0.001)


def test_cost_parts_count_every_token_once():
    cost = cost_of(RATES, Usage(input=10_000, output=2_000, cache_read=6_000, cache_write=1_000, reasoning=500))
    assert cost.parts == {
        "input": pytest.approx(3_000 * 3 / M),
        "cache_read": pytest.approx(6_000 * 0.3 / M),
        "cache_write": pytest.approx(1_000 * 3.75 / M),
        "output": pytest.approx(1_500 * 15 / M),
        "reasoning": pytest.approx(500 * 10 / M),
        "request": pytest.approx(0.001),
    }
    assert cost.total == pytest.approx(sum(cost.parts.values()))
    assert cost.total == pytest.approx(0.009 + 0.0018 + 0.00375 + 0.0225 + 0.005 + 0.001)


def test_missing_separate_rates_fall_back_to_input_and_output():
    rates = Rates(model="m", source="override", input=2 / M, output=8 / M)
    usage = Usage(input=1_000, output=1_000, cache_read=400, cache_write=100, reasoning=300)
    # Without separate rates, splitting changes nothing: same as uncached, non-reasoning tokens.
    assert cost_of(rates, usage).total == pytest.approx(1_000 * 2 / M + 1_000 * 8 / M)


def test_inconsistent_counts_never_go_negative():
    # Cache counts above the input total (exclusive counts sent under inclusive names):
    # cache tokens at their rates, no uncached tokens, nothing negative.
    cost = cost_of(RATES, Usage(input=50, output=100, cache_read=10_000, reasoning=400))
    assert cost.parts["input"] == 0 and cost.parts["output"] == 0
    assert cost.parts["cache_read"] == pytest.approx(10_000 * 0.3 / M)
    assert cost.parts["reasoning"] == pytest.approx(400 * 10 / M)
    negative = cost_of(RATES, Usage(input=-5, output=-5, cache_read=-5, cache_write=-5, reasoning=-5))
    assert negative.total == pytest.approx(0.001)


def test_tiers_apply_above_their_threshold():
    rates = Rates(model="m", source="builtin", input=1 / M, output=10 / M, cache_read=0.1 / M,
                  tiers=(RateTier(above=1_000, input=2 / M, output=20 / M),))
    assert cost_of(rates, Usage(input=1_000, output=10)).total == pytest.approx((1_000 * 1 + 10 * 10) / M)
    above = cost_of(rates, Usage(input=1_001, output=10, cache_read=1))
    assert above.total == pytest.approx((1_000 * 2 + 1 * 0.1 + 10 * 20) / M)
    assert above.rates.input == pytest.approx(2 / M)


# --- the cache --------------------------------------------------------------------------------

class CountingSource:
    """A test source that knows names "known/<n>" and counts every lookup."""

    name = "override"

    def __init__(self, change_at: int | None = None):
        self.calls = 0
        self.change_at = change_at

    def lookup(self, form, provider, at):
        self.calls += 1
        if not form.startswith("known/"):
            return Answer()
        if self.change_at is None:
            return Answer(Rates(model=form, source=self.name, input=1e-6, output=2e-6))
        if at < self.change_at:
            return Answer(Rates(model=form, source=self.name, input=1e-6, output=2e-6), until=self.change_at)
        return Answer(Rates(model=form, source=self.name, input=3e-6, output=4e-6), since=self.change_at)

    def known_names(self):
        return ["known/one"]


def test_a_cached_lookup_touches_no_source():
    source = CountingSource()
    book = PriceBook([source])
    first = book.rates(["known/one"], "p", 1_000)
    calls = source.calls
    assert calls >= 1
    for at in (1_000, 2_000, 10**18):
        assert book.rates(["known/one"], "p", at) is first
    assert source.calls == calls


def test_the_real_database_is_not_asked_again_for_a_cached_key():
    class Counted:
        def __init__(self, inner):
            self.inner, self.name, self.calls = inner, inner.name, 0

        def lookup(self, form, provider, at):
            self.calls += 1
            return self.inner.lookup(form, provider, at)

        def known_names(self):
            return self.inner.known_names()

    source = Counted(builtin.BuiltinSource())
    book = PriceBook([source])
    first = book.rates(["gpt-4o-2024-08-06"], "openai", AT)
    calls = source.calls
    for offset in range(100):
        assert book.rates(["gpt-4o-2024-08-06"], "openai", to_ns(AT) + offset * 10**9) is first
    assert source.calls == calls


def test_misses_are_cached_too():
    source = CountingSource()
    book = PriceBook([source])
    assert book.rates(["nobody/knows"], None, 1) is None
    calls = source.calls
    assert book.rates(["nobody/knows"], None, 2) is None
    assert source.calls == calls


def test_the_cache_is_bounded():
    source = CountingSource()
    book = PriceBook([source], cache_size=3)
    for n in range(10):
        book.rates([f"known/{n}"], None, 1)
    calls = source.calls
    book.rates(["known/9"], None, 1)   # recent: still cached
    assert source.calls == calls
    book.rates(["known/0"], None, 1)   # evicted by the flood: asked again
    assert source.calls > calls


def test_absurdly_long_names_are_never_priced_or_cached():
    source = CountingSource()
    book = PriceBook([source], fallback=(1e-6, 1e-6))
    assert book.rates(["known/" + "x" * 10_000], None, 1) is None
    assert source.calls == 0


def test_a_cached_price_is_used_only_within_its_period():
    source = CountingSource(change_at=1_000)
    book = PriceBook([source])
    assert book.rates(["known/a"], None, 999).input == 1e-6
    assert book.rates(["known/a"], None, 1_000).input == 3e-6
    calls = source.calls
    assert book.rates(["known/a"], None, 500).input == 1e-6
    assert book.rates(["known/a"], None, 5_000).input == 3e-6
    assert source.calls == calls


def test_a_data_update_drops_the_cache():
    class Live(CountingSource):
        version = object()

        def generation(self):
            return self.version

    source = Live()
    book = PriceBook([source], live=source)
    book.rates(["known/one"], None, 1)
    calls = source.calls
    book.rates(["known/one"], None, 1)
    assert source.calls == calls
    source.version = object()
    book.rates(["known/one"], None, 1)
    assert source.calls > calls


# --- configuration ----------------------------------------------------------------------------

def test_auto_update_is_off_by_default_and_wired_only_when_on():
    assert PricingConfig().auto_update is False

    class Updater:
        def __init__(self):
            self.events = []

        def start(self):
            self.events.append("start")

        def stop(self):
            self.events.append("stop")

    updater = Updater()
    book = PriceBook([CountingSource()], updater=updater)
    book.start()
    book.close()
    assert updater.events == ["start", "stop"]
    # genai-prices' own updater, configured but not started (starting it would fetch).
    made = builtin.make_updater(600.0)
    assert made.update_interval == 600.0 and not made._started


def test_auto_update_follows_genai_prices_updates_only_when_on():
    from genai_prices import data_snapshot
    from genai_prices.data import providers
    from genai_prices.types import ClauseEquals, ModelInfo, ModelPrice, Provider

    live = build(PricingConfig(auto_update=True))
    pinned = build(PricingConfig())
    assert live.rates(["openai/gpt-4o"], None, AT).input == pytest.approx(2.5 / M)
    # What a fetched snapshot would install: OpenRouter's gpt-4o at a new price.
    updated = [p for p in providers if p.id != "openrouter"] + [Provider(
        id="openrouter", name="OpenRouter", api_pattern="", models=[ModelInfo(
            id="openai/gpt-4o", match=ClauseEquals(equals="openai/gpt-4o"),
            prices=ModelPrice(input_mtok=Decimal(2), output_mtok=Decimal(8)))])]
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=updated, from_auto_update=True))
    try:
        assert live.rates(["openai/gpt-4o"], None, AT).input == pytest.approx(2 / M)
        assert pinned.rates(["openai/gpt-4o"], None, AT).input == pytest.approx(2.5 / M)
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert live.rates(["openai/gpt-4o"], None, AT).input == pytest.approx(2.5 / M)


def test_only_usd_is_supported():
    problems = PricingConfig(currency="EUR").validate()
    assert [(p.path, p.message) for p in problems] == \
        [(("currency",), '"EUR": only USD is supported until conversion exists')]
    assert PricingConfig(currency="usd").validate() == []


@pytest.mark.parametrize("raw, path, message", [
    ({"model": "", "input": 1, "output": 1}, ("model",), "must be a model name"),
    ({"model": "regex:(", "input": 1, "output": 1}, ("model",), "invalid regex"),
    ({"model": "a/b", "input": -1, "output": 1}, ("input",), "must be a finite number >= 0"),
    ({"model": "a/b", "input": 1, "output": 1, "cache_read": float("nan")}, ("cache_read",), ">= 0"),
    ({"model": "a/b", "input": 1}, ("output",), "required key is missing"),
    ({"model": "a/b", "input": 1, "output": 1, "effective_from": "soon"}, ("effective_from",), "is not a date"),
    ({"model": "a/b", "input": 1, "output": 1, "effective_from": "2025-02-01", "effective_until": "2025-01-01"},
     ("effective_until",), "must be later than effective_from"),
])
def test_invalid_overrides(raw, path, message):
    _, problems = decode(PricingConfig, {"overrides": [raw]}, ("pricing",))
    assert len(problems) == 1, problems
    assert problems[0].path == ("pricing", "overrides", "0") + path
    assert message in problems[0].message


def test_overlapping_overrides_for_one_model_are_rejected():
    config = PricingConfig(overrides=[
        override("openai/gpt-4o", 2, 8, effective_from="2025-01-01", effective_until="2025-07-01"),
        override("OpenAI/GPT-4o", 1, 4, effective_from="2025-06-01"),
    ])
    problems = config.validate()
    assert [p.path for p in problems] == [("overrides", "1")]
    assert "in force from 2025-06-01 in both overrides 0 and 1" in problems[0].message


def test_yaml_with_unquoted_dates_decodes():
    raw = yaml.safe_load("""
        overrides:
          - model: openai/gpt-4o
            input: 2
            output: 8
            cache_read: 1
            effective_from: 2025-01-01
            effective_until: 2026-01-01
          - model: 'regex:^anthropic/claude-3\\.5-sonnet(:beta)?$'
            input: 2.7
            output: 13.5
        fallback: {input: 5, output: 15}
        auto_update_interval: 6h
    """)
    config, problems = decode(PricingConfig, raw, ("pricing",))
    assert problems == []
    book = build(config)
    assert book.rates(["openai/gpt-4o"], None, datetime(2025, 3, 1, tzinfo=UTC)).input == pytest.approx(2 / M)
    assert book.rates(["openai/gpt-4o"], None, datetime(2026, 3, 1, tzinfo=UTC)).source == "builtin"
    assert config.auto_update_interval == 6 * 3600


def test_suggest_offers_close_known_names(builtin_book):
    assert "openai/gpt-4o" in builtin_book.suggest("openai/gpt4o")
    assert "anthropic/claude-3-opus" in builtin_book.suggest("anthropic/claude-3-opuss", n=3)
    assert len(builtin_book.suggest("claude", n=2)) <= 2


def test_a_validated_models_file_is_read_once(tmp_path, monkeypatch):
    from relay.pricing import models_file

    path = tmp_path / "models.json"
    path.write_text(json.dumps({"data": [entry("openai/gpt-4o", prompt="0.0000025", completion="0.00001")]}))
    reads = []
    real = models_file.load
    monkeypatch.setattr(models_file, "load", lambda p: reads.append(p) or real(p))
    config, problems = decode(PricingConfig, {"openrouter_models_file": str(path)})
    assert problems == []
    book = build(config)
    assert reads == [str(path)]
    assert book.rates(["openai/gpt-4o"], None, AT).input == pytest.approx(2.5e-6)
