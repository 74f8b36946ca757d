"""The genops processor's pure function: attribute and price every LLM span in a request.

Cost precedence: a cost the span reports is kept exactly as sent
(``reported``); otherwise it is priced here (``computed``); a model no source
can price gets no cost at all (``unpriced``). Non-LLM spans are untouched.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable

from relay.attrs import fill
from relay.pricing import Usage, cost_of
from relay.processors.genops import attribution
from relay.processors.genops.keys import (
    CACHE_READ_TOKENS, CACHE_WRITE_TOKENS, COST_CURRENCY, COST_SOURCE, COST_TOTAL, INPUT_TOKENS, LLM_MARKERS,
    MODEL, OUT_INPUT, OUT_MODEL, OUT_OUTPUT, OUT_PROVIDER, OUTPUT_TOKENS, PROVIDER, REASONING_TOKENS,
    REPORTED_COST,
)

PRICE_SOURCE = "genops.cost.price_source"


def _number(value) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "string_value":
        try:
            return float(value.string_value)
        except ValueError:
            return None
    return None


def _first_number(attributes: dict, keys) -> float | None:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            number = _number(value)
            if number is not None:
                return number
    return None


def _first_text(attributes: dict, keys) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value.WhichOneof("value") == "string_value" and value.string_value:
            return value.string_value
    return None


def _models(attributes: dict) -> list[str]:
    seen: list[str] = []
    for key in MODEL:
        value = attributes.get(key)
        if value is not None and value.WhichOneof("value") == "string_value":
            name = value.string_value.strip()
            if name and name not in seen:
                seen.append(name)
    return seen


def _tokens(attributes: dict, keys) -> int:
    number = _first_number(attributes, keys)
    return max(0, int(number)) if number is not None else 0


def usage_of(attributes: dict, inclusive: bool) -> Usage | None:
    """Token usage in the inclusive convention, or None when the span reports no tokens."""
    if _first_number(attributes, INPUT_TOKENS) is None and _first_number(attributes, OUTPUT_TOKENS) is None:
        return None
    usage = Usage(input=_tokens(attributes, INPUT_TOKENS), output=_tokens(attributes, OUTPUT_TOKENS),
                  cache_read=_tokens(attributes, CACHE_READ_TOKENS),
                  cache_write=_tokens(attributes, CACHE_WRITE_TOKENS),
                  reasoning=_tokens(attributes, REASONING_TOKENS))
    if not inclusive:
        usage = Usage(input=usage.input + usage.cache_read + usage.cache_write,
                      output=usage.output + usage.reasoning, cache_read=usage.cache_read,
                      cache_write=usage.cache_write, reasoning=usage.reasoning)
    return usage


def make(config, price_book, on_unpriced: Callable[[str, str], None],
         on_sources: Callable[[Counter], None]) -> Callable:
    rules, context_sources = attribution.compile_rules(config.rules)
    defaults = dict(config.defaults)
    inclusive = config.token_counting == "inclusive"

    def enrich_span(span, resource: dict, from_resource: dict, context: dict, sources: Counter) -> None:
        attributes = {kv.key: kv.value for kv in span.attributes}
        if LLM_MARKERS.isdisjoint(attributes):
            return
        writes: dict = {f"genops.{k}": v
                        for k, v in attribution.resolve(attributes, resource, from_resource, rules, context,
                                                        defaults).items()}
        models = _models(attributes)
        provider = _first_text(attributes, PROVIDER) or _first_text(resource, PROVIDER)
        if models and OUT_MODEL not in attributes:
            writes[OUT_MODEL] = models[0]
        if provider and OUT_PROVIDER not in attributes:
            writes[OUT_PROVIDER] = provider
        usage = usage_of(attributes, inclusive)
        if usage is not None:
            if OUT_INPUT not in attributes:
                writes[OUT_INPUT] = usage.input
            if OUT_OUTPUT not in attributes:
                writes[OUT_OUTPUT] = usage.output

        reported_key = next((k for k in REPORTED_COST if k in attributes
                             and _number(attributes[k]) is not None), None)
        if reported_key is not None:
            source = "reported"
            if reported_key != COST_TOTAL:
                writes[COST_TOTAL] = float(_number(attributes[reported_key]))
        else:
            rates = None
            if models and usage is not None:
                at = span.start_time_unix_nano or time.time_ns()
                rates = price_book.rates(models, provider, at)
            if rates is not None:
                source = "computed"
                writes[COST_TOTAL] = cost_of(rates, usage).total
                writes[PRICE_SOURCE] = rates.source
            else:
                source = "unpriced"
                on_unpriced(models[0] if models else "", "unknown_model" if usage is not None else "no_usage")
        if source != "unpriced" and COST_CURRENCY not in attributes:
            writes[COST_CURRENCY] = "USD"
        writes[COST_SOURCE] = source
        sources[source] += 1

        for key, value in writes.items():
            existing = attributes.get(key)
            if existing is None:
                kv = span.attributes.add()
                kv.key = key
                existing = kv.value
            fill(existing, value)

    def process(request):
        context = attribution.context_values(context_sources) if context_sources else {}
        sources: Counter = Counter()
        for rs in request.resource_spans:
            resource = {kv.key: kv.value for kv in rs.resource.attributes}
            from_resource = attribution.resource_fields(resource)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    enrich_span(span, resource, from_resource, context, sources)
        if sources:
            on_sources(sources)
        return request

    return process

