"""The price book: which source prices a span's model, cached so a span costs arithmetic only.

Search order for ``rates(models, provider, at)``: each candidate model in the
order given (the response model first: OpenRouter bills the model that
answered), then each source by precedence (overrides, models file, built-in),
then each normalised form of the name (``names.forms``, exact first). The first
answer wins. Only when no candidate is known anywhere does the optional
fallback rate apply.

Answers, misses included, are cached per (candidates, provider) together with
the period in which they hold (sources report where their prices change), so a
repeated lookup inside that period touches no source. The cache is an LRU of
``cache_size`` keys with at most ``_PERIODS_PER_KEY`` periods each: a flood of
distinct model names evicts old entries instead of growing memory. Names longer
than ``MAX_NAME`` characters are never priced (no real model id comes close), so
one key's size is bounded too.

A variable-priced id (``-1`` in the models file) ends the search for that
candidate; the next candidate, then the fallback, are still tried.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from relay.pricing import names
from relay.pricing.config import PricingConfig
from relay.pricing.cost import Rates
from relay.pricing.source import MISS, Answer, Source
from relay.pricing.times import EARLIEST, LATEST, to_ns

_PERIODS_PER_KEY = 4
MAX_NAME = 256


class PriceBook:
    def __init__(self, sources: Sequence[Source], fallback: tuple[float, float] | None = None,
                 cache_size: int = 4096, updater=None, live=None):
        """``fallback`` is (input, output) USD per token. ``live`` is a source whose
        ``generation()`` changes when its data is replaced (automatic updates); the
        cache is dropped when it does. ``updater`` has start()/stop()."""
        self._sources = list(sources)
        self._fallback = fallback
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple, list[tuple[int, int, Rates | None]]] = OrderedDict()
        self._updater = updater
        self._live = live
        self._generation = live.generation() if live is not None else None
        self._known: list[str] | None = None

    def start(self) -> None:
        """Begin automatic price updates, if configured; the only network activity."""
        if self._updater is not None:
            self._updater.start()

    def close(self) -> None:
        if self._updater is not None:
            self._updater.stop()

    def data_version(self) -> object:
        """Changes (by identity) whenever an automatic update replaces the price data, so callers
        that keep answers of their own know to drop them."""
        return self._live.generation() if self._live is not None else None

    def rates(self, models: Sequence[str], provider: str | None, at_unix_nano: int | datetime) -> Rates | None:
        """First candidate model that any source can price, at that time; cached."""
        return self.rates_in_force(models, provider, at_unix_nano)[0]

    def rates_in_force(self, models: Sequence[str], provider: str | None,
                       at_unix_nano: int | datetime) -> tuple[Rates | None, int, int]:
        """``rates()`` with the period [since, until) in unix nanoseconds in which the answer holds,
        so a caller may reuse it for other times in that period without asking again."""
        at = to_ns(at_unix_nano) if isinstance(at_unix_nano, datetime) else int(at_unix_nano)
        if self._live is not None:
            generation = self._live.generation()
            if generation is not self._generation:
                self._cache.clear()
                self._known = None
                self._generation = generation
        key = (tuple(m for m in models if len(m) <= MAX_NAME), (provider or "")[:MAX_NAME] or None)
        periods = self._cache.get(key)
        if periods is not None:
            for since, until, rates in periods:
                if since <= at < until:
                    self._cache.move_to_end(key)
                    return rates, since, until
        rates, since, until = self._resolve(key[0], key[1], at)
        if periods is None:
            periods = self._cache[key] = []
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
            if len(periods) >= _PERIODS_PER_KEY:
                periods.pop(0)
        periods.append((since, until, rates))
        return rates, since, until

    def _resolve(self, models: tuple[str, ...], provider: str | None, at: int) -> tuple[Rates | None, int, int]:
        since, until = EARLIEST, LATEST
        for model in models:
            answer, model_since, model_until = self._ask(model, provider, at)
            since, until = max(since, model_since), min(until, model_until)
            if answer.rates is not None:
                return answer.rates, since, until
        first = next((names.canonical(m) for m in models if m.strip()), None)
        if self._fallback is None or first is None:
            return None, since, until
        return Rates(model=first, source="fallback", input=self._fallback[0], output=self._fallback[1],
                     detail="fallback rate for models no source knows"), since, until

    def _ask(self, model: str, provider: str | None, at: int) -> tuple[Answer, int, int]:
        """One candidate's first priced (or variable) answer, and the period that holds it."""
        since, until = EARLIEST, LATEST
        forms = names.forms(model, provider)
        for source in self._sources:
            for form in forms:
                answer = source.lookup(form, provider, at)
                since, until = max(since, answer.since), min(until, answer.until)
                if answer.rates is not None or answer.variable:
                    return answer, since, until
        return MISS, since, until

    def suggest(self, model: str, n: int = 5) -> list[str]:
        """Known model names closest to ``model`` (whole id, or the part after the vendor), best first."""
        if self._known is None:
            self._known = sorted({name for source in self._sources for name in source.known_names()})
        query = names.canonical(model)
        bare = query.rpartition("/")[2]
        scored = []
        for name in self._known:
            score = max(_similarity(query, name), _similarity(bare, name.rpartition("/")[2]) - 0.05)
            if score >= 0.6:
                scored.append((-score, name))
        return [name for _, name in sorted(scored)[:n]]


def _similarity(a: str, b: str) -> float:
    matcher = difflib.SequenceMatcher(None, a, b)
    if matcher.real_quick_ratio() < 0.6 or matcher.quick_ratio() < 0.6:
        return 0.0
    return matcher.ratio()


def build(config: PricingConfig) -> PriceBook:
    """A price book from a decoded (so validated) config; a models file that validation did not
    read is read here, and a bad one raises ConfigError."""
    from relay.pricing.builtin import BuiltinSource, make_updater
    from relay.pricing.models_file import ModelsFileSource
    from relay.pricing.overrides import OverrideSource

    builtin = BuiltinSource(live=config.auto_update)
    sources: list[Source] = [OverrideSource(config.overrides)]
    if config.openrouter_models_file:
        sources.append(ModelsFileSource(config.openrouter_models_file, config.models))
    sources.append(builtin)
    fallback = None
    if config.fallback is not None:
        fallback = (config.fallback.input / 1_000_000, config.fallback.output / 1_000_000)
    return PriceBook(sources, fallback, cache_size=config.cache_size,
                     updater=make_updater(float(config.auto_update_interval)) if config.auto_update else None,
                     live=builtin if config.auto_update else None)
