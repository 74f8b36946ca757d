"""The built-in price database: the ``genai-prices`` package (pydantic, MIT licence).

Why this database (evaluated on genai-prices 0.2.3):

- **Offline.** The data ships inside the package as Python (47 providers, 923
  OpenRouter ids). Importing it and pricing open no socket (checked with an
  audit hook, and in the tests). The only network code is ``UpdatePrices``, a
  background thread that fetches a newer snapshot from the project's repository
  every ``update_interval`` once started; it runs here only with
  ``auto_update: true``, between ``PriceBook.start()`` and ``close()``.
- **API.** ``calc_price()`` returns totals, not rates. Rates for a model at a
  time come from ``Provider.find_model(ref)`` -> ``ModelInfo.get_prices(when)``
  -> ``ModelPrice`` (Decimal USD per million tokens: ``input_mtok``,
  ``output_mtok``, ``cache_read_mtok``, ``cache_write_mtok``,
  ``output_reasoning_mtok``; ``requests_kcount`` per thousand calls). That path
  is used here rather than the snapshot's ``find_provider_model``, whose caches
  are unbounded dicts keyed by any name asked for.
- **Coverage.** The ``openrouter`` provider lists OpenRouter ids as OpenRouter
  spells them (``openai/gpt-4o``, ``anthropic/claude-3.5-sonnet``,
  ``meta-llama/llama-3.1-405b-instruct``, ``:free``/``:beta`` variants, some
  dated aliases). The vendors' own providers (openai, anthropic, google, ...)
  price bare API names (``gpt-4o``, ``claude-3-5-sonnet-20240620``).
- **History.** Prices change on UTC days (``StartDateConstraint``); DeepSeek's
  native off-peak prices change by time of day. Both are honoured, and a cached
  price is only reused inside the period where it holds. OpenRouter history
  starts in 2026-08: earlier spans get the earliest recorded price.
- **Cache and reasoning rates.** Cache-read rates on 468 of the OpenRouter ids,
  cache-write on 140, a separate reasoning rate on 1; a missing one means those
  tokens cost the input (output) rate, as genai-prices itself computes.
- **Tiers.** Long-context "cliff" prices (``TieredPrices``: past N input tokens
  every token costs the tier rate; e.g. Gemini 2.5 Pro, Claude Sonnet 4.5
  above 200k) on 72 OpenRouter ids, carried as ``Rates.tiers``.
- **Gaps.** No per-call fees on OpenRouter ids; 1-hour cache writes, audio,
  image and web-search units have no place in ``Rates`` and are not priced;
  older OpenRouter entries lack cache rates the vendor charges (claude-3-opus);
  batch/fast ``price_variants`` are never chosen, as a span does not say which
  applied. LiteLLM's map, the other candidate, has no OpenRouter ids and no
  effective dates, so it would be no better.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relay.pricing.cost import Rates, RateTier
from relay.pricing.names import VENDORS, vendor_of
from relay.pricing.source import MISS, Answer, window
from relay.pricing.times import day_start, from_ns, to_ns

_PRICE_KEYS = {"input": "input_mtok", "output": "output_mtok", "cache_read": "cache_read_mtok",
               "cache_write": "cache_write_mtok", "reasoning": "output_reasoning_mtok"}
# genai-prices provider ids whose models OpenRouter files under another vendor prefix.
_VENDOR = {"mistral": "mistralai"}
_MILLION = 1_000_000


def make_updater(interval: float):
    """genai-prices' background updater, not yet started."""
    from genai_prices import UpdatePrices

    return UpdatePrices(update_interval=interval)


class BuiltinSource:
    name = "builtin"

    def __init__(self, live: bool = False):
        import genai_prices
        from genai_prices import data_snapshot
        from genai_prices.data import providers

        self._version = genai_prices.__version__
        self._snapshot = data_snapshot.get_snapshot
        # Pinned to the shipped data unless this book asked for updates: another
        # component's updater must not change this one's prices.
        self._pinned = None if live else providers
        self._catalogue: tuple[object, _Catalogue | None] = (None, None)

    def generation(self) -> object:
        """The provider list in use; a new object after an automatic update."""
        return self._pinned if self._pinned is not None else self._snapshot().providers

    def lookup(self, form: str, provider: str | None, at: int) -> Answer:
        providers = self.generation()
        if self._catalogue[0] is not providers:
            openrouter = next((p for p in providers if p.id == "openrouter"), None)
            self._catalogue = (providers, _Catalogue(openrouter) if openrouter is not None else None)
        found = _find(providers, self._catalogue[1], form, provider)
        if found is None:
            return MISS
        host, model, name = found
        moment = from_ns(at)
        rates = _rates(model.get_prices(moment), name, f"genai-prices {self._version} {host.id}:{model.id}")
        if rates is None:
            return MISS
        since, until = window(_boundaries(model, moment), at)
        return Answer(rates, since, until)

    def known_names(self) -> list[str]:
        names = []
        for host in self.generation():
            if host.id == "openrouter":
                names += [model.id for model in host.models if "/" in model.id]
            elif _VENDOR.get(host.id, host.id) in VENDORS:
                names += [f"{_VENDOR.get(host.id, host.id)}/{model.id}" for model in host.models]
        return names


class _Catalogue:
    """OpenRouter's ~900 ids indexed by their exact names. It answers as
    ``Provider.find_model`` (the first model in list order whose clause matches)
    without testing every model, so that a flood of unknown names stays cheap; the
    few pattern clauses are still tested in order. Compact dates (``-20251211``)
    are left to ``names.forms``, which drops them."""

    def __init__(self, provider):
        from genai_prices.types import ClauseEquals, ClauseOr

        self.provider = provider
        self._exact: dict[str, tuple[int, object]] = {}
        self._loose: list[tuple[int, object]] = []
        for position, model in enumerate(provider.models):
            clauses = model.match.or_ if isinstance(model.match, ClauseOr) else [model.match]
            if all(isinstance(clause, ClauseEquals) for clause in clauses):
                for clause in clauses:
                    self._exact.setdefault(clause.equals.lower(), (position, model))
            else:
                self._loose.append((position, model))

    def find_model(self, ref: str):
        ref = ref.lower()
        position, model = self._exact.get(ref, (len(self.provider.models), None))
        for loose_position, loose in self._loose:
            if loose_position > position:
                break
            if loose.is_match(ref):
                return loose
        return model


def _find(providers, catalogue: _Catalogue | None, form: str, hint: str | None):
    """(provider, model, canonical name) for one normalised name, or None.

    A ``vendor/model`` name is looked up in OpenRouter's catalogue, then with the
    vendor's own provider, then in the catalogue without the vendor (genai-prices
    files some OpenRouter ids that way). A bare name goes to the span's provider,
    else to the provider whose model names it looks like.
    """
    from genai_prices.data_snapshot import find_provider_by_id

    openrouter = catalogue.provider if catalogue is not None else None
    if "/" in form:
        vendor, _, bare = form.lower().partition("/")
        if catalogue is not None and (model := catalogue.find_model(form)) is not None:
            return openrouter, model, model.id
        host = find_provider_by_id(providers, vendor)
        if host is not None and host is not openrouter and \
                (model := host.find_model(bare, all_providers=providers)) is not None:
            return host, model, f"{vendor}/{model.id}"
        if catalogue is not None and (model := catalogue.find_model(bare)) is not None:
            return openrouter, model, model.id if "/" in model.id else f"{vendor}/{model.id}"
        return None
    host = find_provider_by_id(providers, hint) if hint else None
    if host is None:
        host = next((p for p in providers if p.model_match is not None and p.model_match.is_match(form)), None)
    if host is not None and host is openrouter:
        model = catalogue.find_model(form)
    else:
        model = host.find_model(form, all_providers=providers) if host is not None else None
    if model is None:
        return None
    if "/" in model.id:
        return host, model, model.id
    vendor = vendor_of(form, hint) if host is openrouter else _VENDOR.get(host.id, host.id)
    return host, model, f"{vendor}/{model.id}" if vendor else model.id


def _rates(prices, model: str, detail: str) -> Rates | None:
    from genai_prices.types import TieredPrices

    values = {key: getattr(prices, price_key) for key, price_key in _PRICE_KEYS.items()}
    charged = any(v is not None for k, v in vars(prices).items() if not k.startswith("_"))
    if values["input"] is None and values["output"] is None and charged:
        return None  # priced in other units (audio hours, pages): not a per-token model
    base = {key: None if v is None else float((v.base if isinstance(v, TieredPrices) else v) / _MILLION)
            for key, v in values.items()}
    tiered = {key: v for key, v in values.items() if isinstance(v, TieredPrices)}
    tiers = []
    for threshold in sorted({tier.start for v in tiered.values() for tier in v.tiers}):
        # For inputs just above this threshold each key's price is its last tier starting at or below it.
        at_threshold = {key: float(next((t.price for t in reversed(v.tiers) if t.start <= threshold), v.base)
                                   / _MILLION) for key, v in tiered.items()}
        tiers.append(RateTier(above=threshold, **at_threshold))
    per_thousand_calls = prices.requests_kcount
    return Rates(model=model, source="builtin", input=base["input"] or 0.0, output=base["output"] or 0.0,
                 cache_read=base["cache_read"], cache_write=base["cache_write"], reasoning=base["reasoning"],
                 request=float(per_thousand_calls) / 1000 if per_thousand_calls is not None else 0.0,
                 detail=detail, tiers=tuple(tiers))


def _boundaries(model, moment: datetime) -> list[int]:
    from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

    if not isinstance(model.prices, list):
        return []
    found = []
    for conditional in model.prices:
        constraint = conditional.constraint
        if isinstance(constraint, StartDateConstraint):
            found.append(day_start(constraint.start_date))
        elif isinstance(constraint, TimeOfDateConstraint):
            for offset in (-1, 0, 1):
                day = moment.astimezone(UTC).date() + timedelta(days=offset)
                for edge in (constraint.start_time, constraint.end_time):
                    found.append(to_ns(datetime.combine(day, edge if edge.tzinfo else edge.replace(tzinfo=UTC))))
    return found
