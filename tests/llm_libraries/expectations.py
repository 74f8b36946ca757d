"""What the genops processor must make of each library's LLM spans: the tables both tests share.

A library's table row says where its span keeps the token counts (to find its LLM call
spans and tell which of the three calls each one is) and which pricing rule applies,
decided from what the library was seen to send (proto_fixtures/libraries/README.md):

- ``LIST``: the span has no cache detail, so every input token is priced at the input rate;
- ``CACHE``: the span carries the cached-token count, so those are priced at cache_read and
  the rest of the input at the input rate;
- ``REPORTED``: the span carries the provider's billed cost, which the relay keeps as sent.

Expected costs come from the rates below and the stand-in's token counts, never from the
code under test.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay import attrs
from tests.llm_libraries import standin
from tests.llm_libraries.libraries import BY_NAME, LIBRARIES

# USD per million tokens, written here so expected costs never come from the relay's tables.
# Unlike both the stand-in's billed rates and any list price of gpt-4o-mini, so a cost from
# the wrong source cannot pass.
RATES = {"input": 0.21, "output": 0.83, "cache_read": 0.04}
GENOPS_SETTINGS = {
    "defaults": {"team": "unassigned", "project": "unassigned"},
    "pricing": {"overrides": [{"model": standin.MODEL, **RATES}]},
}

LIST, CACHE, REPORTED = "list", "cache", "reported"
CALL_KINDS = tuple(standin.USAGE)


@dataclass(frozen=True)
class Expectation:
    rule: str
    rule_key: str | None           # the attribute that makes the rule so (none for LIST)
    input_tokens_key: str          # present on, and only on, the spans of an LLM call
    response_id_key: str | None    # where the span names the provider's generation id, if anywhere


EXPECTATIONS = {
    # No cache key at all: for chat completions this release sets only gen_ai.usage.input_tokens
    # and output_tokens (gen_ai.usage.cache_read.input_tokens only for the Responses API).
    "otel-openai-v2": Expectation(LIST, None, "gen_ai.usage.input_tokens", "gen_ai.response.id"),
    # gen_ai.usage.cache_read.input_tokens, on every call (0 when nothing was cached).
    "openllmetry": Expectation(CACHE, "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.input_tokens",
                               "gen_ai.response.id"),
    # llm.token_count.prompt_details.cache_read, OpenInference's own dialect. OpenRouter's cost is
    # only inside output.value, the captured response body: message content, hidden by
    # OPENINFERENCE_HIDE_OUTPUTS, so not a cost attribute. No response id attribute either.
    "openinference": Expectation(CACHE, "llm.token_count.prompt_details.cache_read", "llm.token_count.prompt",
                                 None),
    # gen_ai.usage.cache_read.input_tokens; its gen_ai.usage.cost is an int 0 because openlit has
    # no price for the model, and 0 is not a reported cost.
    "openlit": Expectation(CACHE, "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.input_tokens",
                           "gen_ai.response.id"),
    # gen_ai.usage.raw holds OpenRouter's usage JSON, its billed "cost" included.
    "logfire": Expectation(REPORTED, "gen_ai.usage.raw", "gen_ai.usage.input_tokens", "gen_ai.response.id"),
}
assert set(EXPECTATIONS) == set(BY_NAME), "every library needs an expectation row"
assert [library.name for library in LIBRARIES] == list(EXPECTATIONS)


def per_million(rate: float, tokens: int) -> float:
    return rate * tokens / 1_000_000


def expected_cost(rule: str, usage: standin.Usage) -> float:
    if rule == REPORTED:
        return usage.cost
    cached = usage.cached_tokens if rule == CACHE else 0
    return (per_million(RATES["input"], usage.prompt_tokens - cached)
            + per_million(RATES["cache_read"], cached)
            + per_million(RATES["output"], usage.completion_tokens))


def expected_source(rule: str) -> str:
    return "reported" if rule == REPORTED else "computed"


@dataclass
class LlmSpan:
    name: str
    kind: str | None       # which of the stand-in's calls, from the input-token count it reports
    resource: dict
    attributes: dict


def spans(requests) -> list[tuple[dict, dict, str]]:
    """(resource attributes, span attributes, span name) of every span, in order."""
    out = []
    for request in requests:
        for rs in request.resource_spans:
            resource = {kv.key: attrs.to_python(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out.append((resource, {kv.key: attrs.to_python(kv.value) for kv in span.attributes},
                                span.name))
    return out


def llm_spans(library: str, requests) -> list[LlmSpan]:
    key = EXPECTATIONS[library].input_tokens_key
    by_tokens = {usage.prompt_tokens: kind for kind, usage in standin.USAGE.items()}
    return [LlmSpan(name, by_tokens.get(span[key]), resource, span)
            for resource, span, name in spans(requests) if key in span]


def problems(library: str, requests) -> list[str]:
    """Every way the processed spans of one library run miss the expectations, as sentences."""
    expectation = EXPECTATIONS[library]
    team = BY_NAME[library].team
    found = llm_spans(library, requests)
    out = []
    kinds = sorted(span.kind or "?" for span in found)
    if kinds != sorted(CALL_KINDS):
        out.append(f"LLM call spans of calls {kinds}, expected one each of {sorted(CALL_KINDS)}")
    for span in found:
        where = f"{span.kind or '?'} call span {span.name!r}"
        if span.kind is None:
            out.append(f"{where}: {expectation.input_tokens_key}={span.attributes[expectation.input_tokens_key]} "
                       "is no call the stand-in answered")
            continue
        got_team = span.attributes.get("genops.team")
        if got_team != team:
            out.append(f"{where}: genops.team={got_team!r}, expected {team!r} (resource: "
                       f"genops.team={span.resource.get('genops.team')!r})")
        want = expected_cost(expectation.rule, standin.USAGE[span.kind])
        got = span.attributes.get("genops.cost.total")
        if not isinstance(got, float) or abs(got - want) > 1e-12 * abs(want):
            out.append(f"{where}: genops.cost.total={got!r}, expected {want!r} ({expectation.rule} rule; "
                       f"genops.cost.source={span.attributes.get('genops.cost.source')!r})")
        source = span.attributes.get("genops.cost.source")
        if source != expected_source(expectation.rule):
            out.append(f"{where}: genops.cost.source={source!r}, expected {expected_source(expectation.rule)!r}")
    # A second span of the same call (Logfire's streamed request span, say) must not book it again.
    total = sum(span.get("genops.cost.total", 0.0) for _, span, _ in spans(requests))
    want_total = sum(expected_cost(expectation.rule, standin.USAGE[kind]) for kind in CALL_KINDS)
    if abs(total - want_total) > 1e-12 * want_total:
        out.append(f"genops.cost.total over all spans is {total!r}, expected {want_total!r} (the three calls)")
    return out
