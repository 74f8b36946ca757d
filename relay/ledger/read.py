"""From a span the genops processor has enriched to what the ledger and the failover log need.

Only LLM spans count: those the genops processor priced or marked (``genops.cost.total`` or
``genops.model`` present). Everything else passes by unread. A second copy of a call
(``genops.call.duplicate``) books only ``genops.cost.booked``, and no request or tokens.
Values that become ledger keys are length-capped like metric labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from opentelemetry.proto.trace.v1 import trace_pb2

from relay.genai import keys
from relay.genai.bounds import cap
from relay.genai.numbers import INVALID, MAX_COST_USD, number, usage_count
from relay.genai.sampling import adjusted_count
from relay.ledger.facts import TOKEN_TYPES, SpanFacts

# A client clock ahead of ours cannot book spend into a period that has not begun.
MAX_CLOCK_SKEW_NS = 5 * 60 * 10**9
UNKNOWN = "unknown"
ERROR = trace_pb2.Status.STATUS_CODE_ERROR

_WANTED = frozenset({
    "genops.team", "genops.project", "genops.customer_id", keys.OUT_MODEL, keys.OUT_PROVIDER, keys.COST_TOTAL,
    keys.ACTUAL_PROVIDER, keys.PREDICTED_PROVIDER, keys.FALLBACK_USED, keys.DUPLICATE, keys.BOOKED,
    *keys.OUT_TOKENS.values(), *keys.INPUT_TOKENS, *keys.OUTPUT_TOKENS, *keys.CACHE_READ_TOKENS,
    *keys.CACHE_WRITE_TOKENS, *keys.REASONING_TOKENS,
    *keys.MODEL,
})
# genops.tokens.* first; the span's own keys where the processor wrote none (``attributes: minimal``).
_TOKEN_KEYS = {"input": (keys.OUT_INPUT,) + keys.INPUT_TOKENS, "output": (keys.OUT_OUTPUT,) + keys.OUTPUT_TOKENS,
               "cache_read": keys.CACHE_READ_TOKENS,
               "cache_write": keys.CACHE_WRITE_TOKENS, "reasoning": keys.REASONING_TOKENS}


def _model(found: dict) -> str:
    # genops.model when the genops processor ran first; else the span's own model keys, in its order.
    for name in (keys.OUT_MODEL,) + keys.MODEL:
        if found.get(name):
            return str(found[name])
    return UNKNOWN


@dataclass(slots=True)
class Failover:
    original_provider: str
    fallback_provider: str
    model: str
    reason: str


def _plain(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("string_value", "int_value", "double_value", "bool_value") else None


def wanted(span) -> dict:
    """The attributes the ledger reads, in one pass over the span's list."""
    return {kv.key: _plain(kv.value) for kv in span.attributes if kv.key in _WANTED}


def _first_count(found: dict, names) -> int:
    for name in names:
        if name in found:
            count = usage_count(found[name])
            if count is not None:
                return 0 if count is INVALID else count
    return 0


def _cost(value) -> float:
    value = number(value)
    return value if value is not None and 0 <= value <= MAX_COST_USD else 0.0


def facts_of(span, found: dict, now_ns: int | None = None) -> SpanFacts | None:
    if keys.COST_TOTAL not in found and keys.OUT_MODEL not in found:
        return None
    now_ns = time.time_ns() if now_ns is None else now_ns
    when = span.end_time_unix_nano or span.start_time_unix_nano or now_ns
    when = min(when, now_ns + MAX_CLOCK_SKEW_NS)
    provider = found.get(keys.ACTUAL_PROVIDER) or found.get(keys.OUT_PROVIDER) or UNKNOWN
    duplicate = found.get(keys.DUPLICATE) is True
    # A sampled span books for the calls it stands for (relay.genai.sampling).
    weight = adjusted_count(span.trace_state) if span.trace_state else 1
    tokens = {} if duplicate else {role: _first_count(found, _TOKEN_KEYS[role]) * weight for role in TOKEN_TYPES}
    return SpanFacts(
        time_ns=when,
        team=cap(str(found.get("genops.team") or UNKNOWN)),
        project=cap(str(found.get("genops.project") or UNKNOWN)),
        model=cap(_model(found)),
        provider=cap(str(provider)),
        customer=cap(str(found.get("genops.customer_id") or "")),
        cost=_cost(found.get(keys.BOOKED if duplicate else keys.COST_TOTAL)) * weight,
        tokens=tokens,
        error=span.status.code == ERROR,
        calls=0 if duplicate else weight,
    )


def failover_of(found: dict) -> Failover | None:
    """A call OpenRouter routed away from the provider it predicted, or that used a fallback."""
    if found.get(keys.DUPLICATE) is True:
        return None
    predicted = found.get(keys.PREDICTED_PROVIDER)
    actual = found.get(keys.ACTUAL_PROVIDER)
    fallback = found.get(keys.FALLBACK_USED) in (True, "true", "True", 1)
    model = _model(found)
    if fallback:
        return Failover(str(predicted or UNKNOWN), str(actual or UNKNOWN), model, "fallback_used")
    if predicted and actual and predicted != actual:
        return Failover(str(predicted), str(actual), model, "provider_mismatch")
    return None
