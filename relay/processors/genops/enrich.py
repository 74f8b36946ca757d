"""The genops processor's pure function: attribute and price every LLM span in a request.

Cost precedence: a cost the span reports is kept exactly as sent
(``reported``); otherwise it is priced here (``computed``); a model no source
can price gets no cost at all (``unpriced``). Non-LLM spans are untouched.
Keys it writes are never duplicated: a key the span already has is updated in
place; the others are appended in one encoded merge (``wire``).

This runs for every span. Spans of one service mostly differ only in their
token counts and costs, so the work is split in two: a ``Plan`` of everything
that follows from the span's other attributes (attribution, models, provider,
which keys exist, the encoded entries that follow), made once per distinct
signature and resource, and ``Plan.apply``: the per-span arithmetic on
tokens and cost.

A concept (input tokens, reported cost, ...) is read from the first of its
keys the span carries; if that value is not a number the concept counts as
missing.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable

from relay import received
from relay.attrs import fill, find, to_python
from relay.pricing import total_of
from relay.processors.genops import attribution, wire
from relay.genai.keys import (
    CACHE_READ_TOKENS,
    CACHE_WRITE_TOKENS,
    COST_CURRENCY,
    COST_SOURCE,
    COST_TOTAL,
    ENVIRONMENT_FALLBACK,
    INPUT_TOKENS,
    LLM_MARKERS,
    MODEL,
    OUT_INPUT,
    OUT_MODEL,
    OUT_OUTPUT,
    OUT_PROVIDER,
    OUTPUT_TOKENS,
    PROVIDER,
    REASONING_TOKENS,
    REPORTED_COST,
)
from relay.genai.numbers import number, token_count
from relay.genai.scan import Reader, splice, static_values, wire_form

PRICE_SOURCE = "genops.cost.price_source"
# Keys whose values vary span by span; everything else goes into the plan's signature.
DYNAMIC = INPUT_TOKENS + OUTPUT_TOKENS + CACHE_READ_TOKENS + CACHE_WRITE_TOKENS + REASONING_TOKENS + REPORTED_COST
WRITTEN = (OUT_MODEL, OUT_PROVIDER, OUT_INPUT, OUT_OUTPUT, COST_TOTAL, COST_CURRENCY, COST_SOURCE, PRICE_SOURCE)
_PLANS_PER_RESOURCE = 256
_RESOURCES_CACHED = 1024  # distinct (resource, client context) pairs; then the cache starts over
_SKIP = object()  # the plan of a span that is no LLM call


def _text(value) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


class Plan:
    """Everything about a span but its numbers; ``apply`` adds the numbers."""

    def __init__(self, entries: bytes, models: tuple, provider: str | None, present: frozenset,
                 slots: dict, inclusive: bool, in_force, total_slot: int):
        self.entries = entries
        self.models = models
        self.provider = provider
        self.present = present
        self.input, self.output = slots["input"], slots["output"]
        self.cache_read, self.cache_write = slots["cache_read"], slots["cache_write"]
        self.reasoning, self.reported = slots["reasoning"], slots["reported"]
        self.has_usage = self.input is not None or self.output is not None
        self.inclusive = inclusive
        self.in_force = in_force
        self.reported_elsewhere = self.reported is not None and self.reported != total_slot
        self.rates: tuple | None = None  # (rates, since, until) of the last lookup
        self._tails: dict = {}

    def _tail(self, source: str, price_source: str | None) -> bytes:
        """Encoded currency/source entries for an outcome; the same for every span of the plan."""
        key = (source, price_source)
        tail = self._tails.get(key)
        if tail is None:
            parts = []
            if price_source is not None and PRICE_SOURCE not in self.present:
                parts.append(wire.attribute(PRICE_SOURCE, price_source))
            if source != "unpriced" and COST_CURRENCY not in self.present:
                parts.append(wire.attribute(COST_CURRENCY, "USD"))
            if COST_SOURCE not in self.present:
                parts.append(wire.attribute(COST_SOURCE, source))
            tail = self._tails[key] = b"".join(parts)
        return tail

    def usage(self, values) -> tuple[int, int, int, int, int] | None:
        """(input, output, cache_read, cache_write, reasoning) in the inclusive convention."""
        if not self.has_usage:
            return None
        slot = self.input
        usage_in = None if slot is None else token_count(values[slot])
        slot = self.output
        usage_out = None if slot is None else token_count(values[slot])
        if usage_in is None and usage_out is None:
            return None
        slot = self.cache_read
        cache_read = 0 if slot is None else (token_count(values[slot]) or 0)
        slot = self.cache_write
        cache_write = 0 if slot is None else (token_count(values[slot]) or 0)
        slot = self.reasoning
        reasoning = 0 if slot is None else (token_count(values[slot]) or 0)
        usage_in, usage_out = usage_in or 0, usage_out or 0
        if not self.inclusive:
            usage_in += cache_read + cache_write
            usage_out += reasoning
        return usage_in, usage_out, cache_read, cache_write, reasoning

    def apply(self, span, values, sources: Counter, unpriced: Counter) -> tuple[bytes, bool]:
        """Writes the span's numbers; (the encoded entries appended, whether any key was updated in place)."""
        present = self.present
        parts = [self.entries]
        updates = []
        usage = self.usage(values)
        if usage is not None:
            if OUT_INPUT not in present:
                parts.append(wire.int_attribute(OUT_INPUT, usage[0]))
            if OUT_OUTPUT not in present:
                parts.append(wire.int_attribute(OUT_OUTPUT, usage[1]))
        reported = number(values[self.reported]) if self.reported is not None else None
        price_source = None
        cost = None
        if reported is not None:
            source = "reported"
            if self.reported_elsewhere:
                cost = float(reported)
        else:
            rates = None
            if usage is not None and self.models:
                at = span.start_time_unix_nano or time.time_ns()
                cached = self.rates
                if cached is None or not cached[1] <= at < cached[2]:
                    cached = self.rates = self.in_force(self.models, self.provider, at)
                rates = cached[0]
            if rates is not None:
                source, price_source = "computed", rates.source
                cost = float(total_of(rates, *usage))
            else:
                source = "unpriced"
                unpriced[(self.models[0] if self.models else "",
                          "unknown_model" if usage is not None else "no_usage")] += 1
        if cost is not None:
            if COST_TOTAL in present:
                updates.append((COST_TOTAL, cost))
            else:
                parts.append(wire.double_attribute(COST_TOTAL, cost))
        if price_source is not None and PRICE_SOURCE in present:
            updates.append((PRICE_SOURCE, price_source))
        if COST_SOURCE in present:
            updates.append((COST_SOURCE, source))
        parts.append(self._tails.get((source, price_source)) or self._tail(source, price_source))
        sources[source] += 1
        for key, value in updates:
            fill(find(span.attributes, key), value)
        appended = b"".join(parts)
        span.MergeFromString(appended)
        return appended, bool(updates)


def make(config, price_book, on_unpriced: Callable[[str, str, int], None],
         on_sources: Callable[[Counter], None]) -> Callable:
    rules, context_sources = attribution.compile_rules(config.rules)
    defaults = dict(config.defaults)
    inclusive = config.token_counting == "inclusive"
    rule_keys = tuple(dict.fromkeys(rule.attribute for rule in config.rules if rule.attribute))
    attribution_keys = tuple(attribution.GENOPS_KEYS.values()) + ENVIRONMENT_FALLBACK + rule_keys
    static = tuple(dict.fromkeys(MODEL + PROVIDER + attribution_keys + (COST_CURRENCY, COST_SOURCE, PRICE_SOURCE)))
    static = tuple(k for k in static if k not in DYNAMIC)
    reader = Reader(static, tuple(dict.fromkeys(DYNAMIC)))
    slot = reader.index
    n_static = reader.n_static
    llm_bits = sum(1 << slot[k] for k in LLM_MARKERS)
    total_slot = slot[COST_TOTAL] - n_static
    encode = wire.attribute
    roles = {"input": INPUT_TOKENS, "output": OUTPUT_TOKENS, "cache_read": CACHE_READ_TOKENS,
             "cache_write": CACHE_WRITE_TOKENS, "reasoning": REASONING_TOKENS, "reported": REPORTED_COST}

    def plan_for(mask: int, signature: bytes, resource: dict, from_resource: dict, context: dict):
        if not mask & llm_bits:
            return _SKIP
        values = static_values(signature)
        span_view = {key: values[slot[key]] for key in attribution_keys if mask >> slot[key] & 1}
        fields = attribution.resolve(span_view, resource, from_resource, rules, context, defaults)
        entries = [encode(f"genops.{name}", value) for name, value in sorted(fields.items())]
        models = tuple(dict.fromkeys(m for m in (_text(values.get(slot[k])) for k in MODEL) if m))
        provider = next((p for p in (_text(values.get(slot[k])) for k in PROVIDER) if p), None)
        if provider is None:
            provider = next((p for p in (_text(resource.get(k)) for k in PROVIDER) if p), None)
        present = frozenset(key for key in WRITTEN if mask >> slot[key] & 1)
        if models and OUT_MODEL not in present:
            entries.append(encode(OUT_MODEL, models[0]))
        if provider and OUT_PROVIDER not in present:
            entries.append(encode(OUT_PROVIDER, provider))
        # Each concept is read from the first of its keys the span carries.
        slots = {role: next((slot[k] - n_static for k in keys if mask >> slot[k] & 1), None)
                 for role, keys in roles.items()}
        return Plan(b"".join(entries), models, provider, present, slots, inclusive,
                    price_book.rates_in_force, total_slot)

    plans_by_resource: dict[tuple, dict] = {}
    seen_version = [price_book.data_version()]

    def process(request):
        version = price_book.data_version()
        if version is not seen_version[0]:  # new price data: plans remember rates, start over
            plans_by_resource.clear()
            seen_version[0] = version
        context = attribution.context_values(context_sources) if context_sources else {}
        sources: Counter = Counter()
        unpriced: Counter = Counter()
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        data = wire_form(request) if reader.native else None
        scanned = reader.scan(data) if data is not None else reader.read_python(request)
        if len(scanned) != spans:
            data, scanned = None, reader.read_python(request)  # the wire form disagreed with the parse
        # What each span gets appended, so the new wire form can be spliced instead of serialized.
        additions: list[bytes] | None = [] if data is not None else None
        context_key = tuple(sorted(context.items()))
        position = 0
        for rs in request.resource_spans:
            # Plans depend on the resource and the client context too, and outlive the request:
            # the same services send the same attributes request after request.
            plans = plans_by_resource.get((rs.resource.SerializeToString(), context_key))
            if plans is None:
                if len(plans_by_resource) >= _RESOURCES_CACHED:
                    plans_by_resource.clear()
                plans = plans_by_resource[(rs.resource.SerializeToString(), context_key)] = {}
            resource = from_resource = None
            for ss in rs.scope_spans:
                for span in ss.spans:
                    mask, signature, values, _, _ = scanned[position]
                    position += 1
                    plan = plans.get((mask, signature))
                    if plan is None:
                        if resource is None:
                            resource = {kv.key: to_python(kv.value) for kv in rs.resource.attributes}
                            from_resource = attribution.resource_fields(resource)
                        plan = plan_for(mask, signature, resource, from_resource, context)
                        if len(plans) < _PLANS_PER_RESOURCE:
                            plans[(mask, signature)] = plan
                    if plan is _SKIP:
                        if additions is not None:
                            additions.append(b"")
                        continue
                    appended, updated = plan.apply(span, values, sources, unpriced)
                    if additions is not None:
                        additions.append(appended)
                        if updated:
                            additions = None  # an in-place update has no spliceable encoding
        if additions is not None:
            # Spliced, or as it was when no span was an LLM call: either way it describes the request.
            received.rebind(request, splice(data, additions) if sources else data)
        if sources:
            on_sources(sources)
        for (model, reason), count in unpriced.items():
            on_unpriced(model, reason, count)
        return request

    return process
