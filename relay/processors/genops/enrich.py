"""The genops processor's pure function: attribute and price every LLM span in a request.

Cost precedence: a cost the span reports is kept exactly as sent
(``reported``); otherwise it is priced here (``computed``); a model no source
can price gets no cost at all (``unpriced``). Non-LLM spans are untouched.
Keys it writes are never duplicated: a key the span already has is updated in
place; the others are appended in one encoded merge (``wire``).

This runs for every span. Spans of one service mostly differ only in their
token counts and costs, so the work is split in two: a ``Plan`` of everything
that follows from the span's other attributes (attribution, models, provider,
which keys exist), made once per distinct combination and resource, and the
per-span arithmetic on tokens and cost.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from relay.attrs import fill, find, to_python
from relay.pricing import total_of
from relay.processors.genops import attribution, wire
from relay.processors.genops.keys import (
    CACHE_READ_TOKENS, CACHE_WRITE_TOKENS, COST_CURRENCY, COST_SOURCE, COST_TOTAL, ENVIRONMENT_FALLBACK,
    INPUT_TOKENS, LLM_MARKERS, MODEL, OUT_INPUT, OUT_MODEL, OUT_OUTPUT, OUT_PROVIDER, OUTPUT_TOKENS, PROVIDER,
    REASONING_TOKENS, REPORTED_COST,
)
from relay.processors.genops.read import Reader

PRICE_SOURCE = "genops.cost.price_source"
# Keys whose values vary span by span; everything else goes into the plan's signature.
DYNAMIC = INPUT_TOKENS + OUTPUT_TOKENS + CACHE_READ_TOKENS + CACHE_WRITE_TOKENS + REASONING_TOKENS + REPORTED_COST
_PLANS_PER_RESOURCE = 256


def number(value) -> float | None:
    if value is None or value is ... or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except ValueError:
        return None


def _first_text(values, slots) -> str | None:
    for slot in slots:
        value = values[slot]
        if isinstance(value, str):
            value = value.strip()
            if value:
                return value
    return None


@dataclass
class Plan:
    """What follows for a span from everything but its token counts and costs."""

    llm: bool
    entries: bytes = b""            # encoded attributes to append whatever the tokens say
    models: tuple[str, ...] = ()
    provider: str | None = None
    present: frozenset = frozenset()  # which written keys the span already has
    rates: tuple | None = None      # (rates, since, until) of the last lookup
    # The slot each concept is read from: the first of its keys the span carries. That
    # key is authoritative; if its value is not a number the concept counts as missing.
    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    reported: int | None = None


def make(config, price_book, on_unpriced: Callable[[str, str, int], None],
         on_sources: Callable[[Counter], None]) -> Callable:
    rules, context_sources = attribution.compile_rules(config.rules)
    defaults = dict(config.defaults)
    inclusive = config.token_counting == "inclusive"
    rule_keys = tuple(dict.fromkeys(rule.attribute for rule in config.rules if rule.attribute))
    attribution_keys = (tuple(attribution.GENOPS_KEYS.values()) + ENVIRONMENT_FALLBACK + rule_keys)
    static = tuple(dict.fromkeys(MODEL + PROVIDER + attribution_keys + (COST_CURRENCY, COST_SOURCE, PRICE_SOURCE)))
    static = tuple(k for k in static if k not in DYNAMIC)
    reader = Reader(static + tuple(dict.fromkeys(DYNAMIC)))
    slot = reader.index
    n_static = len(static)

    def slots(keys) -> tuple[int, ...]:
        return tuple(slot[k] for k in keys)

    def bits(keys) -> int:
        return sum(1 << slot[k] for k in dict.fromkeys(keys))

    model_slots, provider_slots = slots(MODEL), slots(PROVIDER)
    input_slots, output_slots = slots(INPUT_TOKENS), slots(OUTPUT_TOKENS)
    cache_read_slots, cache_write_slots = slots(CACHE_READ_TOKENS), slots(CACHE_WRITE_TOKENS)
    reasoning_slots, reported_slots = slots(REASONING_TOKENS), slots(REPORTED_COST)
    llm_bits = bits(LLM_MARKERS)
    total_slot = slot[COST_TOTAL]
    written = (OUT_MODEL, OUT_PROVIDER, OUT_INPUT, OUT_OUTPUT, COST_TOTAL, COST_CURRENCY, COST_SOURCE, PRICE_SOURCE)
    encode = wire.attribute
    int_attribute = wire.int_attribute
    in_force = price_book.rates_in_force

    def plan_for(mask: int, values: tuple, resource: dict, from_resource: dict, context: dict) -> Plan:
        if not mask & llm_bits:
            return Plan(llm=False)
        span_view = {key: values[slot[key]] for key in attribution_keys if mask >> slot[key] & 1}
        fields = attribution.resolve(span_view, resource, from_resource, rules, context, defaults)
        entries = [encode(f"genops.{name}", value) for name, value in sorted(fields.items())]
        models = tuple(dict.fromkeys(m for m in (_first_text(values, (s,)) for s in model_slots) if m))
        provider = _first_text(values, provider_slots)
        if provider is None:
            provider = _first_text_plain(resource, PROVIDER)
        present = frozenset(key for key in written if mask >> slot[key] & 1)
        if models and OUT_MODEL not in present:
            entries.append(encode(OUT_MODEL, models[0]))
        if provider and OUT_PROVIDER not in present:
            entries.append(encode(OUT_PROVIDER, provider))
        def first_present(slots_) -> int | None:
            return next((s for s in slots_ if mask >> s & 1), None)

        return Plan(True, b"".join(entries), models, provider, present,
                    input=first_present(input_slots), output=first_present(output_slots),
                    cache_read=first_present(cache_read_slots), cache_write=first_present(cache_write_slots),
                    reasoning=first_present(reasoning_slots), reported=first_present(reported_slots))

    def tokens(values, slot_: int | None) -> int | None:
        if slot_ is None:
            return None
        value = values[slot_]
        if type(value) is not int:
            value = number(value)
            if value is None:
                return None
        return value if value > 0 else 0

    def usage_of(plan: Plan, values) -> tuple[int, int, int, int, int] | None:
        """(input, output, cache_read, cache_write, reasoning) in the inclusive convention."""
        input_tokens, output_tokens = tokens(values, plan.input), tokens(values, plan.output)
        if input_tokens is None and output_tokens is None:
            return None
        cache_read = int(tokens(values, plan.cache_read) or 0)
        cache_write = int(tokens(values, plan.cache_write) or 0)
        reasoning = int(tokens(values, plan.reasoning) or 0)
        usage_in, usage_out = int(input_tokens or 0), int(output_tokens or 0)
        if not inclusive:
            usage_in += cache_read + cache_write
            usage_out += reasoning
        return usage_in, usage_out, cache_read, cache_write, reasoning

    def rates_at(plan: Plan, at: int):
        cached = plan.rates
        if cached is None or not cached[1] <= at < cached[2]:
            cached = plan.rates = in_force(plan.models, plan.provider, at)
        return cached[0]

    def enrich_span(span, plans: dict, resource: dict, from_resource: dict, context: dict,
                    sources: Counter, unpriced: Counter) -> None:
        mask, values = reader.read(span)
        signature = (mask, values[:n_static])
        plan = plans.get(signature)
        if plan is None:
            plan = plan_for(mask, values, resource, from_resource, context)
            if len(plans) < _PLANS_PER_RESOURCE:
                plans[signature] = plan
        if not plan.llm:
            return
        present = plan.present
        appended = [plan.entries]
        updates = []

        def write(key: str, value) -> None:
            if key in present:
                updates.append((key, value))
            else:
                appended.append(encode(key, value))

        usage = usage_of(plan, values)
        if usage is not None:
            if OUT_INPUT not in present:
                appended.append(int_attribute(OUT_INPUT, usage[0]))
            if OUT_OUTPUT not in present:
                appended.append(int_attribute(OUT_OUTPUT, usage[1]))
        reported = number(values[plan.reported]) if plan.reported is not None else None
        if reported is not None:
            source = "reported"
            if plan.reported != total_slot:
                write(COST_TOTAL, float(reported))
        else:
            rates = None
            if plan.models and usage is not None:
                rates = rates_at(plan, span.start_time_unix_nano or time.time_ns())
            if rates is not None:
                source = "computed"
                write(COST_TOTAL, float(total_of(rates, *usage)))
                write(PRICE_SOURCE, rates.source)
            else:
                source = "unpriced"
                unpriced[(plan.models[0] if plan.models else "",
                          "unknown_model" if usage is not None else "no_usage")] += 1
        if source != "unpriced" and COST_CURRENCY not in present:
            appended.append(encode(COST_CURRENCY, "USD"))
        write(COST_SOURCE, source)
        sources[source] += 1

        for key, value in updates:
            fill(find(span.attributes, key), value)
        span.MergeFromString(b"".join(appended))

    def process(request):
        context = attribution.context_values(context_sources) if context_sources else {}
        sources: Counter = Counter()
        unpriced: Counter = Counter()
        for rs in request.resource_spans:
            resource = {kv.key: to_python(kv.value) for kv in rs.resource.attributes}
            from_resource = attribution.resource_fields(resource)
            plans: dict = {}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    enrich_span(span, plans, resource, from_resource, context, sources, unpriced)
        if sources:
            on_sources(sources)
        for (model, reason), count in unpriced.items():
            on_unpriced(model, reason, count)
        return request

    return process


def _first_text_plain(attributes: dict, keys) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
