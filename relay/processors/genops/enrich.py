"""The genops processor's pure function: attribute and price every LLM span in a request.

Spans are read through the dialect table (``relay.genai.dialects``), so every
instrumentation's names for model, tokens, cost and provider are understood; what the
processor writes is one vocabulary (``relay.genai.keys``). See ``plan`` for the cost
precedence. Non-LLM spans are untouched. Keys it writes are never duplicated: a key the
span already has is updated in place; the others are appended in one encoded merge (``wire``).

This runs for every span. Spans of one service mostly differ only in their token counts
and costs, so the work is split in two: a ``Plan`` of everything that follows from the
span's other attributes (attribution, models, provider, which keys exist, the encoded
entries that follow), made once per distinct signature and resource, and ``Plan.apply``:
the per-span arithmetic on tokens and cost. Plans are cached only for signatures and
resources of bounded size, so values of any length cannot grow the caches.
"""

from __future__ import annotations

import time
from typing import Callable

from relay import received
from relay.attrs import to_python
from relay.genai import dialects, keys, provider
from relay.genai.bounds import cap
from relay.genai.scan import Reader, splice, wire_form
from relay.processors.genops import attribution, calls, wire
from relay.processors.genops.drift import Drift
from relay.processors.genops.plan import Plan, Tally
from relay.signals import Signal
from relay.signatures import values as signature_values

# Keys whose values vary span by span; everything else goes into the plan's signature.
DYNAMIC = tuple(dict.fromkeys(dialects.INPUT_TOKENS + dialects.OUTPUT_TOKENS + dialects.CACHE_READ_TOKENS
                              + dialects.CACHE_WRITE_TOKENS + dialects.REASONING_TOKENS + dialects.REPORTED_COST
                              + dialects.USAGE_JSON + (keys.RESPONSE_ID,)))
WRITTEN = (keys.OUT_MODEL, keys.OUT_PROVIDER, keys.PROVIDER_SOURCE, keys.ACTUAL_PROVIDER, *keys.OUT_TOKENS.values(),
           keys.COST_TOTAL, keys.COST_CURRENCY, keys.COST_SOURCE, keys.PRICE_SOURCE, keys.COST_REPORTED,
           keys.COST_COMPUTED, keys.DUPLICATE, keys.BOOKED)
# What ``attributes: minimal`` writes: the team, the cost, and the marks of a repeated call
# (without them a connector downstream would count the call twice).
MINIMAL_FIELDS = ("team",)
METADATA_KEYS = tuple(keys.METADATA_PREFIX + name for name in keys.ATTRIBUTION)
_PLANS_PER_RESOURCE = 256
_SKIP = object()  # the plan of a span that is no LLM call


def _text(value) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def make(config, price_book, report: Callable[[Tally], None], drift: Drift,
         clock: Callable[[], int] = time.time_ns) -> Callable:
    rules, context_sources = attribution.compile_rules(config.rules)
    defaults = dict(config.defaults)
    api_keys = {name: dict(fields) for name, fields in config.api_keys.items()}
    inclusive = config.token_counting == "inclusive"
    limit = config.label_max_length
    bounds = (config.max_tokens_per_span, config.max_cost_per_span)
    window = calls.window(config.duplicates.max_calls, int(config.duplicates.window * 1e9))
    rule_keys = tuple(dict.fromkeys(rule.attribute for rule in config.rules if rule.attribute))
    attribution_keys = (tuple(attribution.GENOPS_KEYS.values()) + METADATA_KEYS + (keys.API_KEY_NAME,)
                        + keys.ENVIRONMENT_FALLBACK + rule_keys)
    static = tuple(dict.fromkeys(dialects.MODEL + dialects.PROVIDER + dialects.TOTAL_TOKENS + dialects.MARKERS
                                 + provider.ADDRESS + provider.BROADCAST_MARKERS + attribution_keys + WRITTEN))
    static = tuple(k for k in static if k not in DYNAMIC)
    reader = Reader(static, DYNAMIC)
    slot = reader.index
    n_static = reader.n_static
    llm_bits = sum(1 << slot[k] for k in dialects.LLM_MARKERS)
    encode = wire.attribute
    minimal = config.attributes == "minimal"

    def plan_for(mask: int, signature: bytes, resource: dict, from_resource: dict, context: dict, tally: Tally):
        if not mask & llm_bits:
            return _SKIP
        values = signature_values(signature)
        span = {key: values[i] for key, i in slot.items() if i < n_static and mask >> i & 1}
        span.update((key, ...) for key, i in slot.items() if i >= n_static and mask >> i & 1)
        if not dialects.is_call(span):
            return _SKIP
        def label(value: str) -> str:
            capped = cap(value, limit)
            if capped is not value:
                tally.truncated += 1
            return capped

        fields = attribution.resolve(span, resource, from_resource, rules, context, defaults, api_keys)
        entries = [encode(f"genops.{name}", label(value)) for name, value in sorted(fields.items())
                   if not minimal or name in MINIMAL_FIELDS]
        models = tuple(dict.fromkeys(m for m in (_text(span.get(k)) for k in dialects.MODEL) if m))
        served_by, upstream, inferred = provider.resolve(span, resource, models)
        present = frozenset(key for key in WRITTEN if key in span)
        model = label(models[0]) if models else ""
        if not minimal:
            if models and keys.OUT_MODEL not in present:
                entries.append(encode(keys.OUT_MODEL, model))
            if served_by and keys.OUT_PROVIDER not in present:
                entries.append(encode(keys.OUT_PROVIDER, label(served_by)))
                if inferred and keys.PROVIDER_SOURCE not in present:
                    entries.append(encode(keys.PROVIDER_SOURCE, "inferred"))
            if upstream and keys.ACTUAL_PROVIDER not in present:
                entries.append(encode(keys.ACTUAL_PROVIDER, label(upstream)))
        row = dialects.token_row(span)
        order = dialects.token_keys(row)
        slots = {role: next((slot[k] - n_static for k in order[role] if k in span), None) for role in order}
        cost_key = next((k for k in dialects.REPORTED_COST if k in span), None)
        slots["cost"] = (None if cost_key is None else slot[cost_key] - n_static, cost_key)
        json_key = next((k for k in dialects.USAGE_JSON if k in span), None)
        slots["json"] = None if json_key is None else slot[json_key] - n_static
        slots["id"] = slot[keys.RESPONSE_ID] - n_static if keys.RESPONSE_ID in span else None
        counting = inclusive and (row is None or row.counting == "inclusive")
        return Plan(b"".join(entries), models, model, served_by, present, slots, counting,
                    price_book.rates_in_force, bounds, window, drift, minimal)

    plans_by_resource: dict[tuple, dict] = {}
    seen_version = [price_book.data_version()]

    def process(request):
        version = price_book.data_version()
        if version is not seen_version[0]:  # new price data: plans remember rates, start over
            plans_by_resource.clear()
            seen_version[0] = version
        context = attribution.context_values(context_sources) if context_sources else {}
        tally = Tally()
        now = clock()
        if window.enabled:
            window.expire(now)
        spans = Signal.TRACES.count(request)
        data = wire_form(request) if reader.native else None
        try:
            scanned = reader.scan(data) if data is not None else reader.read_python(request)
        except ValueError:  # the parser took what the scanner would not: the parsed message decides
            data, scanned = None, reader.read_python(request)
        if len(scanned) != spans:
            data, scanned = None, reader.read_python(request)  # the wire form disagreed with the parse
        # What each span gets appended, so the new wire form can be spliced instead of serialized.
        additions: list[bytes] | None = [] if data is not None else None
        context_key = tuple(sorted(context.items()))
        position = 0
        for rs in request.resource_spans:
            # Plans depend on the resource and the client context too.
            plans = attribution.per_resource(plans_by_resource, rs.resource.SerializeToString(), context_key)
            resource = from_resource = None
            for ss in rs.scope_spans:
                for span in ss.spans:
                    mask, signature, values, _, _, _ = scanned[position]
                    position += 1
                    plan = plans.get((mask, signature))
                    if plan is None:
                        if resource is None:
                            resource = {kv.key: to_python(kv.value) for kv in rs.resource.attributes}
                            from_resource = attribution.resource_fields(resource)
                        plan = plan_for(mask, signature, resource, from_resource, context, tally)
                        if len(plans) < _PLANS_PER_RESOURCE and len(signature) <= attribution.CACHEABLE:
                            plans[(mask, signature)] = plan
                    if plan is _SKIP:
                        if additions is not None:
                            additions.append(b"")
                        continue
                    appended, updated = plan.apply(span, values, tally)
                    if additions is not None:
                        additions.append(appended)
                        if updated:
                            additions = None  # an in-place update has no spliceable encoding
        if additions is not None:
            # Spliced, or as it was when no span was an LLM call: either way it describes the request.
            received.rebind(request, splice(data, additions) if tally.sources else data)
        if tally.sources or tally.truncated:
            report(tally)
        return request

    return process
