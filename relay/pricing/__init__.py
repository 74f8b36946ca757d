"""LLM prices: rates per model and time from overrides, an OpenRouter models file and genai-prices.

``build(config)`` makes a ``PriceBook``; ``book.rates(models, provider, at)``
finds the rates in force at a span's start and ``cost_of(rates, usage)`` does
the arithmetic. Precedence: config overrides, then the models file, then the
built-in database, then the optional fallback rate. See ``book`` for the search
order and cache, ``names`` for normalisation, ``cost`` for the arithmetic and
``builtin`` for why genai-prices. Currency: USD only. No network unless
``auto_update`` is on and the book is started.
"""

from relay.pricing.book import PriceBook, build
from relay.pricing.config import FallbackConfig, OverrideConfig, PricingConfig
from relay.pricing.cost import Cost, Rates, RateTier, Usage, cost_of, total_of

__all__ = ["Cost", "FallbackConfig", "OverrideConfig", "PriceBook", "PricingConfig", "RateTier", "Rates", "Usage",
           "build", "cost_of", "total_of"]
