"""One kind of LLM span: everything about it but its numbers, and ``apply``, the per-span arithmetic.

Cost precedence for a span:
1. a reported cost (the first cost key of the dialect table, else a usage JSON's ``cost``)
   that is a finite number within the cap is kept as sent: ``reported``. A reported 0 for a
   model that has a non-zero price, with tokens above zero, is no price at all (OpenLIT
   writes 0 when its table lacks the model); a ``:free`` model's 0 is kept;
2. else the relay's price: ``computed``;
3. else no cost at all: ``unpriced``, with a reason (``unknown_model``, ``no_usage``,
   ``invalid_usage``: a token count that is not a finite count within the cap).
A reported cost that is not used is kept under ``genops.cost.reported``; where a reported
cost is used and the relay can price the span too, ``genops.cost.computed`` shows its price.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from relay.attrs import fill, find
from relay.genai import keys
from relay.genai.numbers import INVALID, cost_reason, number, usage_count
from relay.pricing import total_of
from relay.processors.genops import wire

# A usage JSON larger than this is not parsed: a provider's usage object is a few hundred bytes.
MAX_USAGE_JSON = 16 * 1024
_JSON_TOKENS = (("cache_read", ("prompt_tokens_details", "cached_tokens")),
                ("cache_write", ("prompt_tokens_details", "cache_write_tokens")),
                ("reasoning", ("completion_tokens_details", "reasoning_tokens")),
                ("input", ("prompt_tokens",)), ("output", ("completion_tokens",)))


@dataclass
class Tally:
    """What one request's spans came to, for the processor's self-metrics."""

    sources: Counter = field(default_factory=Counter)
    unpriced: Counter = field(default_factory=Counter)  # (model label, reason)
    rejected: Counter = field(default_factory=Counter)  # reason a reported cost was not used
    drift: list = field(default_factory=list)  # (model label, (reported - computed) / computed)
    duplicates: int = 0
    overbooked: float = 0.0
    truncated: int = 0  # label values cut to the length cap


def usage_json(text) -> dict:
    """The provider's usage object from a JSON attribute; {} when absent, too large or not an object."""
    if type(text) is not str or len(text) > MAX_USAGE_JSON:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _dig(obj: dict, path: tuple):
    for step in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)
    return obj


class Plan:
    """Made once per distinct (present keys, static values, resource); see ``enrich``."""

    def __init__(self, entries: bytes, models: tuple, label: str, provider: str | None, present: frozenset,
                 slots: dict, inclusive: bool, in_force, bounds: tuple, window):
        self.entries = entries
        self.models = models
        self.label = label  # the model as a metric label: length-capped
        self.provider = provider
        self.present = present
        self.token_slots = tuple(slots[role] for role in ("input", "output", "cache_read", "cache_write",
                                                           "reasoning"))
        self.has_usage = any(slot is not None for slot in self.token_slots[:2])
        self.cost_slot, self.cost_key = slots["cost"]
        self.json_slot, self.id_slot = slots["json"], slots["id"]
        self.inclusive = inclusive
        self.in_force = in_force
        self.max_tokens, self.max_cost = bounds
        self.free = any(m.lower().endswith(":free") for m in models)
        self.window = window
        self.rates: tuple | None = None  # (rates, since, until) of the last lookup
        self._tails: dict = {}

    def _tail(self, source: str, price_source: str | None) -> bytes:
        """Encoded currency/source entries for an outcome; the same for every span of the plan."""
        key = (source, price_source)
        tail = self._tails.get(key)
        if tail is None:
            parts = []
            if price_source is not None and keys.PRICE_SOURCE not in self.present:
                parts.append(wire.attribute(keys.PRICE_SOURCE, price_source))
            if source != "unpriced" and keys.COST_CURRENCY not in self.present:
                parts.append(wire.attribute(keys.COST_CURRENCY, "USD"))
            if keys.COST_SOURCE not in self.present:
                parts.append(wire.attribute(keys.COST_SOURCE, source))
            tail = self._tails[key] = b"".join(parts)
        return tail

    def usage(self, values, extra: dict):
        """(input, output, cache_read, cache_write, reasoning) in the inclusive convention;
        None without usage, INVALID when a count the span sent cannot be believed."""
        counts = []
        for role, slot in zip(("input", "output", "cache_read", "cache_write", "reasoning"), self.token_slots):
            count = usage_count(values[slot], self.max_tokens) if slot is not None else None
            if count is None and extra:
                count = usage_count(extra.get(role), self.max_tokens)
            if count is INVALID:
                return INVALID
            counts.append(count)
        usage_in, usage_out, cache_read, cache_write, reasoning = counts
        if usage_in is None and usage_out is None:
            return None
        usage_in, usage_out = usage_in or 0, usage_out or 0
        cache_read, cache_write, reasoning = cache_read or 0, cache_write or 0, reasoning or 0
        # Exclusive counts, or ones that cannot be inclusive (more cached than input in all).
        if not self.inclusive or cache_read + cache_write > usage_in:
            usage_in += cache_read + cache_write
        if not self.inclusive or reasoning > usage_out:
            usage_out += reasoning
        return usage_in, usage_out, cache_read, cache_write, reasoning

    def _computed(self, span, usage) -> tuple[float | None, str | None]:
        if not (usage and usage is not INVALID and self.models):
            return None, None
        at = span.start_time_unix_nano or time.time_ns()
        cached = self.rates
        if cached is None or not cached[1] <= at < cached[2]:
            cached = self.rates = self.in_force(self.models, self.provider, at)
        rates = cached[0]
        return (None, None) if rates is None else (float(total_of(rates, *usage)), rates.source)

    def apply(self, span, values, tally: Tally, now_ns: int) -> tuple[bytes, bool]:
        """Writes the span's numbers; (the encoded entries appended, whether any key was updated in place)."""
        present = self.present
        parts = [self.entries]
        updates = []
        extra = usage_json(values[self.json_slot]) if self.json_slot is not None else {}
        if extra:
            extra = {role: _dig(extra, path) for role, path in _JSON_TOKENS} | {"cost": extra.get("cost")}
        usage = self.usage(values, extra)
        if usage and usage is not INVALID:
            for role, count in zip(("input", "output", "cache_read", "cache_write", "reasoning"), usage):
                key = keys.OUT_TOKENS[role]
                if (count or role in ("input", "output")) and key not in present:
                    parts.append(wire.int_attribute(key, count))
        raw = values[self.cost_slot] if self.cost_slot is not None else extra.get("cost") if extra else None
        computed, price_source = self._computed(span, usage)
        rejected = None if raw is None else cost_reason(raw, self.max_cost)
        if raw is not None and rejected is None and computed and not self.free and number(raw) == 0:
            rejected = "zero_for_priced_model"
        if raw is not None and rejected is None:
            source, cost, price_source = "reported", float(number(raw)), None
            if computed is not None:
                parts.append(wire.double_attribute(keys.COST_COMPUTED, computed))
                if computed > 0:
                    tally.drift.append((self.label, (cost - computed) / computed))
        elif computed is not None:
            source, cost = "computed", computed
        else:
            source, cost = "unpriced", None
            reason = "invalid_usage" if usage is INVALID else "unknown_model" if usage else "no_usage"
            tally.unpriced[(self.label, reason)] += 1
        if rejected is not None:
            tally.rejected[rejected] += 1
            if keys.COST_REPORTED in present:
                updates.append((keys.COST_REPORTED, raw))
            else:
                parts.append(wire.attribute(keys.COST_REPORTED, "(not a scalar)" if raw is ... else raw))
        if keys.COST_TOTAL in present:
            if not (self.cost_key == keys.COST_TOTAL and type(raw) is float and raw == cost):
                updates.append((keys.COST_TOTAL, cost))  # None: the span's own bad total goes
        elif cost is not None:
            parts.append(wire.double_attribute(keys.COST_TOTAL, cost))
        if price_source is not None and keys.PRICE_SOURCE in present:
            updates.append((keys.PRICE_SOURCE, price_source))
        if keys.COST_SOURCE in present:
            updates.append((keys.COST_SOURCE, source))
        parts.append(self._tails.get((source, price_source)) or self._tail(source, price_source))
        call_id = values[self.id_slot] if self.id_slot is not None else None
        if type(call_id) is str and call_id and self.window.enabled:
            duplicate, booked, overbooked = self.window.see(call_id, cost, source == "reported", now_ns)
            if duplicate:
                tally.duplicates += 1
                tally.overbooked += overbooked
                parts.append(wire.attribute(keys.DUPLICATE, True))
                parts.append(wire.double_attribute(keys.BOOKED, booked))
        tally.sources[source] += 1
        for key, value in updates:
            _update(span, key, value)
        appended = b"".join(parts)
        span.MergeFromString(appended)
        return appended, bool(updates)


def _update(span, key: str, value) -> None:
    if value is None:
        for index, kv in enumerate(span.attributes):
            if kv.key == key:
                del span.attributes[index]
                return
    else:
        fill(find(span.attributes, key), value)
