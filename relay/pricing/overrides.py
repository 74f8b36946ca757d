"""Config overrides as a price source: the highest precedence."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from relay.pricing.config import REGEX_PREFIX, OverrideConfig
from relay.pricing.cost import Rates
from relay.pricing.names import canonical
from relay.pricing.source import MISS, Answer, window
from relay.pricing.times import describe

_MILLION = 1_000_000


@dataclass(frozen=True)
class _Entry:
    key: str
    pattern: re.Pattern | None
    since: int
    until: int
    rates: Rates

    def names(self, form: str) -> bool:
        return self.pattern.search(form) is not None if self.pattern else self.key == form


def _per_token(value: float | None) -> float | None:
    return None if value is None else value / _MILLION


def _entry(override: OverrideConfig) -> _Entry:
    since, until = override.period()
    key = override.model if override.is_regex else override.model.strip().lower()
    pattern = re.compile(override.model[len(REGEX_PREFIX):]) if override.is_regex else None
    span = "" if (override.effective_from in (None, "") and override.effective_until in (None, "")) \
        else f" [{describe(since)}, {describe(until)})"
    rates = Rates(model=key, source="override", input=override.input / _MILLION,
                  output=override.output / _MILLION, cache_read=_per_token(override.cache_read),
                  cache_write=_per_token(override.cache_write), reasoning=_per_token(override.reasoning),
                  request=override.request, detail=f"{override.model}{span}")
    return _Entry(key, pattern, since, until, rates)


class OverrideSource:
    name = "override"

    def __init__(self, overrides: list[OverrideConfig]):
        entries = [_entry(o) for o in overrides]
        # Exact entries first, then regex entries, each in the order written.
        self._entries = [e for e in entries if e.pattern is None] + [e for e in entries if e.pattern]

    def lookup(self, form: str, provider: str | None, at: int) -> Answer:
        matching = [e for e in self._entries if e.names(form)]
        if not matching:
            return MISS
        since, until = window([b for e in matching for b in (e.since, e.until)], at)
        for entry in matching:
            if entry.since <= at < entry.until:
                # A regex entry prices the name it matched, not its pattern.
                rates = entry.rates if entry.pattern is None else replace(entry.rates, model=canonical(form))
                return Answer(rates, since, until)
        return Answer(None, since, until)

    def known_names(self) -> list[str]:
        return [e.key for e in self._entries if e.pattern is None]

