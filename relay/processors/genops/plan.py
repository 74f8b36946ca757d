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

import time
from collections import Counter
from dataclasses import dataclass, field

from relay.attrs import fill, find
from relay.genai import keys, usage_json
from relay.genai.dialects import ROLES
from relay.genai.numbers import INVALID, cost_reason, number, usage_count
from relay.pricing import total_of
from relay.processors.genops import wire

try:
    from relay.genai import _usage
except ImportError:  # no compiler at install time: the Python path prices every span
    _usage = None



@dataclass
class Tally:
    """What one request's spans came to, for the processor's self-metrics."""

    sources: Counter = field(default_factory=Counter)
    unpriced: Counter = field(default_factory=Counter)  # (model label, reason)
    rejected: Counter = field(default_factory=Counter)  # reason a reported cost was not used
    duplicates: int = 0
    overbooked: float = 0.0
    truncated: int = 0  # label values cut to the length cap


_DUPLICATE = wire.attribute(keys.DUPLICATE, True)
_SOURCES = ("reported", "computed")


class Plan:
    """Made once per distinct (present keys, static values, resource); see ``enrich``."""

    # Slots: apply runs per span and reads a dozen of these each time.
    __slots__ = ("entries", "models", "label", "provider", "present", "token_slots", "cost_slot", "cost_key",
                 "json_slot", "id_slot", "inclusive", "in_force", "max_tokens", "max_cost", "free", "window",
                 "drift", "has_total", "has_reported", "has_source", "has_price_source", "token_keys", "rates",
                 "_coefficients", "_tails", "spec", "native_window", "_native_tails", "_tails_for", "drift_cell",
                 "minimal")

    def __init__(self, entries: bytes, models: tuple, label: str, provider: str | None, present: frozenset,
                 slots: dict, inclusive: bool, in_force, bounds: tuple, window, drift, minimal: bool = False):
        self.entries = entries
        self.models = models
        self.label = label  # the model as a metric label: length-capped
        self.provider = provider
        self.present = present
        self.token_slots = tuple(slots[role] for role in ROLES)
        self.cost_slot, self.cost_key = slots["cost"]
        self.json_slot, self.id_slot = slots["json"], slots["id"]
        self.inclusive = inclusive
        self.in_force = in_force
        self.max_tokens, self.max_cost = bounds
        self.free = any(m.lower().endswith(":free") for m in models)
        self.window = window if slots["id"] is not None and window.enabled else None
        self.drift = drift
        self.has_total, self.has_reported = keys.COST_TOTAL in present, keys.COST_REPORTED in present
        self.has_source, self.has_price_source = keys.COST_SOURCE in present, keys.PRICE_SOURCE in present
        # Only the cost and the duplicate marks are written when minimal (see enrich.MINIMAL_FIELDS).
        self.minimal = minimal
        # The genops.tokens.* keys to append, None where the span has its own.
        self.token_keys = tuple(None if minimal or keys.OUT_TOKENS[role] in present else keys.OUT_TOKENS[role]
                                for role in ROLES)
        self.spec = self._spec() if _usage is not None else None
        self.native_window = None
        if self.spec is not None and self.window is not None:
            if isinstance(self.window, _usage.Window):
                self.native_window = (self.window, self.id_slot)
            else:
                self.spec = None  # the C path consults only the native window
        self.rates: tuple | None = None  # (rates, since, until) of the last lookup
        self._coefficients: tuple | None = None
        self._tails: dict = {}
        self._native_tails: tuple | None = None  # encoded outcome entries: reported, computed, unpriced
        self._tails_for: str | None = None  # the price source of the computed one
        # Where the C path counts drift: only plans that can report a cost have one.
        self.drift_cell = drift.cell(label) if self.cost_slot is not None else None

    def _spec(self) -> tuple | None:
        """What the C path needs to know of this plan; None where only the Python path applies."""
        present = self.present
        if (self.json_slot is not None or self.has_reported or self.has_source or self.has_price_source
                or keys.COST_COMPUTED in present or (self.has_total and self.cost_key != keys.COST_TOTAL)):
            return None
        slot_numbers = tuple(-1 if slot is None else slot for slot in self.token_slots + (self.cost_slot,))
        token_keys = tuple(None if key is None else wire.key_field(key) for key in self.token_keys)
        return slot_numbers + (self.max_tokens, float(self.max_cost), self.inclusive, self.has_total) + token_keys + (
            None if self.has_total else wire.key_field(keys.COST_TOTAL),
            None if self.minimal else wire.key_field(keys.COST_COMPUTED))

    def _tail(self, source: str, price_source: str | None) -> bytes:
        """Encoded currency/source entries for an outcome; the same for every span of the plan."""
        if self.minimal:
            return b""
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
        s_in, s_out, s_read, s_write, s_reason = self.token_slots
        usage_in = values[s_in] if s_in is not None else None
        usage_out = values[s_out] if s_out is not None else None
        cache_read = values[s_read] if s_read is not None else None
        cache_write = values[s_write] if s_write is not None else None
        reasoning = values[s_reason] if s_reason is not None else None
        cap = self.max_tokens
        # What nearly every span sends: ints in range (or nothing) where it has a key.
        if not (type(usage_in) is int and 0 <= usage_in <= cap and type(usage_out) is int and 0 <= usage_out <= cap
                and (cache_read is None or type(cache_read) is int and 0 <= cache_read <= cap)
                and cache_write is None and (reasoning is None or type(reasoning) is int and 0 <= reasoning <= cap)
                and not extra):
            counts = []
            for role, value in zip(ROLES, (usage_in, usage_out, cache_read, cache_write, reasoning)):
                count = usage_count(value, cap)
                if count is None and extra:
                    count = usage_count(extra.get(role), cap)
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

    def _rates(self, at: int):
        """The rates in force at ``at``, looked up once per validity period."""
        cached = self.rates
        if cached is None or not cached[1] <= at < cached[2]:
            cached = self.rates = self.in_force(self.models, self.provider, at)
            rates = cached[0]
            # Untiered rates as plain coefficients: usage() has already made the counts consistent.
            self._coefficients = None if rates is None or rates.tiers else (
                rates.input, rates.input if rates.cache_read is None else rates.cache_read,
                rates.input if rates.cache_write is None else rates.cache_write, rates.output,
                rates.output if rates.reasoning is None else rates.reasoning, rates.request)
        return cached[0]

    def _native(self, span, values, tally: Tally):
        """The C path for the common case: (all entries appended, source), or None."""
        rates = None
        if self.models:
            at, cached = span.start_time_unix_nano, self.rates
            in_period = cached is not None and cached[1] <= at < cached[2]
            rates = cached[0] if in_period else self._rates(at or time.time_ns())
        coefficients = self._coefficients
        if rates is not None and coefficients is None:
            return None  # tiered rates: the Python path
        tails = self._native_tails
        if tails is None or (rates is not None and self._tails_for != rates.source):
            self._tails_for = None if rates is None else rates.source
            tails = self._native_tails = (self._tail("reported", None), self._tail("computed", self._tails_for),
                                          self._tail("unpriced", None))
        result = _usage.price_span(values, self.spec, coefficients, self.native_window, self.entries, tails,
                                   self.drift_cell)
        if result is None:
            return None
        appended, code, cost, _, duplicate = result
        if duplicate is not None:
            appended += _duplicate(duplicate, tally)
        if code < 2:
            return appended, _SOURCES[code]
        tally.unpriced[(self.label, "unknown_model" if code == 2 else "no_usage")] += 1
        return appended, "unpriced"

    def _python(self, span, values, tally: Tally, parts: list, updates: list):
        """Every case, in Python; appends to ``parts`` and ``updates``, returns (source, price source)."""
        present = self.present
        extra = usage_json.read(values[self.json_slot]) if self.json_slot is not None else {}
        usage = self.usage(values, extra)
        if usage and usage is not INVALID:
            key_in, key_out, key_read, key_write, key_reason = self.token_keys
            usage_in, usage_out, cache_read, cache_write, reasoning = usage
            int_attribute = wire.int_attribute
            if key_in is not None:
                parts.append(int_attribute(key_in, usage_in))
            if key_out is not None:
                parts.append(int_attribute(key_out, usage_out))
            # The details only where there are some: most calls have none.
            if cache_read and key_read is not None:
                parts.append(int_attribute(key_read, cache_read))
            if cache_write and key_write is not None:
                parts.append(int_attribute(key_write, cache_write))
            if reasoning and key_reason is not None:
                parts.append(int_attribute(key_reason, reasoning))
        raw = values[self.cost_slot] if self.cost_slot is not None else extra.get("cost") if extra else None
        computed = price_source = None
        if usage and usage is not INVALID and self.models:
            rates = self._rates(span.start_time_unix_nano or time.time_ns())
            if rates is not None:
                price_source, c = rates.source, self._coefficients
                if c is None:
                    computed = float(total_of(rates, *usage))
                else:
                    computed = float((usage_in - cache_read - cache_write) * c[0] + cache_read * c[1]
                                     + cache_write * c[2] + (usage_out - reasoning) * c[3] + reasoning * c[4] + c[5])
        if raw is None:
            rejected = None
        elif type(raw) is float and 0.0 < raw <= self.max_cost:  # the common case, decided at once
            rejected = None
        else:
            rejected = cost_reason(raw, self.max_cost)
            if rejected is None and computed and not self.free and number(raw) == 0:
                rejected = "zero_for_priced_model"
        if raw is not None and rejected is None:
            source, cost, price_source = "reported", float(number(raw)), None
            if computed is not None:
                if keys.COST_COMPUTED in present:
                    updates.append((keys.COST_COMPUTED, computed))
                elif not self.minimal:
                    parts.append(wire.double_attribute(keys.COST_COMPUTED, computed))
                if computed > 0:
                    self.drift.add(self.label, (cost - computed) / computed)
        elif computed is not None:
            source, cost = "computed", computed
        else:
            source, cost = "unpriced", None
            reason = "invalid_usage" if usage is INVALID else "unknown_model" if usage else "no_usage"
            tally.unpriced[(self.label, reason)] += 1
        if rejected is not None:
            tally.rejected[rejected] += 1
            if self.has_reported:
                updates.append((keys.COST_REPORTED, raw))
            elif not self.minimal:
                parts.append(wire.attribute(keys.COST_REPORTED, "(not a scalar)" if raw is ... else raw))
        if self.has_total:
            if not (self.cost_key == keys.COST_TOTAL and type(raw) is float and raw == cost):
                updates.append((keys.COST_TOTAL, cost))  # None: the span's own bad total goes
        elif cost is not None:
            parts.append(wire.double_attribute(keys.COST_TOTAL, cost))
        if price_source is not None and self.has_price_source:
            updates.append((keys.PRICE_SOURCE, price_source))
        if self.has_source:
            updates.append((keys.COST_SOURCE, source))
        window = self.window
        if window is not None:
            call_id = values[self.id_slot]
            if type(call_id) is str and call_id:
                duplicate = window.see(call_id, cost, source == "reported")
                if duplicate is not None:
                    parts.append(_duplicate(duplicate, tally))
        return source, price_source

    def apply(self, span, values, tally: Tally) -> tuple[bytes, bool]:
        """Writes the span's numbers; (the encoded entries appended, whether any key was updated in place)."""
        native = self._native(span, values, tally) if self.spec is not None else None
        if native is not None:
            appended, source = native
            tally.sources[source] += 1
            span.MergeFromString(appended)
            return appended, False
        parts = [self.entries]
        updates = []
        source, price_source = self._python(span, values, tally, parts, updates)
        parts.append(self._tails.get((source, price_source)) or self._tail(source, price_source))
        tally.sources[source] += 1
        for key, value in updates:
            _update(span, key, value)
        appended = b"".join(parts)
        span.MergeFromString(appended)
        return appended, bool(updates)


def _duplicate(duplicate: tuple[float, float], tally: Tally) -> bytes:
    """The entries marking a later copy of a call, and its count: both paths share them."""
    booked, overbooked = duplicate
    tally.duplicates += 1
    tally.overbooked += overbooked
    return _DUPLICATE + wire.double_attribute(keys.BOOKED, booked)


def _update(span, key: str, value) -> None:
    if value is None:
        for index, kv in enumerate(span.attributes):
            if kv.key == key:
                del span.attributes[index]
                return
    else:
        fill(find(span.attributes, key), value)
