"""From a span the genops processor has enriched to what the ledger and the failover log need.

Only LLM spans count: those the genops processor priced or marked (``genops.cost.total`` or
``genops.model`` present). Everything else passes by unread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from opentelemetry.proto.trace.v1 import trace_pb2

from relay.ledger.facts import SpanFacts
from relay.genai import keys
from relay.genai.numbers import number, token_count

# A client clock ahead of ours cannot book spend into a period that has not begun.
MAX_CLOCK_SKEW_NS = 5 * 60 * 10**9
UNKNOWN = "unknown"
ERROR = trace_pb2.Status.STATUS_CODE_ERROR

_WANTED = frozenset({
    "genops.team", "genops.project", "genops.customer_id", keys.OUT_MODEL, keys.OUT_PROVIDER, keys.COST_TOTAL,
    keys.OUT_INPUT, keys.OUT_OUTPUT, "genops.openrouter.actual_provider", "genops.openrouter.predicted_provider",
    "genops.openrouter.fallback_used", *keys.CACHE_READ_TOKENS, *keys.CACHE_WRITE_TOKENS, *keys.REASONING_TOKENS,
    *keys.MODEL,
})


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
            count = token_count(found[name])
            if count is not None:
                return count
    return 0


def facts_of(span, found: dict, now_ns: int | None = None) -> SpanFacts | None:
    if keys.COST_TOTAL not in found and keys.OUT_MODEL not in found:
        return None
    now_ns = time.time_ns() if now_ns is None else now_ns
    when = span.end_time_unix_nano or span.start_time_unix_nano or now_ns
    when = min(when, now_ns + MAX_CLOCK_SKEW_NS)
    provider = found.get("genops.openrouter.actual_provider") or found.get(keys.OUT_PROVIDER) or UNKNOWN
    return SpanFacts(
        time_ns=when,
        team=str(found.get("genops.team") or UNKNOWN),
        project=str(found.get("genops.project") or UNKNOWN),
        model=_model(found),
        provider=str(provider),
        customer=str(found.get("genops.customer_id") or ""),
        cost=number(found.get(keys.COST_TOTAL)) or 0.0,
        tokens={"input": _first_count(found, (keys.OUT_INPUT,)),
                "output": _first_count(found, (keys.OUT_OUTPUT,)),
                "cache_read": _first_count(found, keys.CACHE_READ_TOKENS),
                "cache_write": _first_count(found, keys.CACHE_WRITE_TOKENS),
                "reasoning": _first_count(found, keys.REASONING_TOKENS)},
        error=span.status.code == ERROR,
    )


def failover_of(found: dict) -> Failover | None:
    """A call OpenRouter routed away from the provider it predicted, or that used a fallback."""
    predicted = found.get("genops.openrouter.predicted_provider")
    actual = found.get("genops.openrouter.actual_provider")
    fallback = found.get("genops.openrouter.fallback_used") in (True, "true", "True", 1)
    model = _model(found)
    if fallback:
        return Failover(str(predicted or UNKNOWN), str(actual or UNKNOWN), model, "fallback_used")
    if predicted and actual and predicted != actual:
        return Failover(str(predicted), str(actual), model, "provider_mismatch")
    return None
