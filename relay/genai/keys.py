"""The attribute keys genops-relay writes, and the concept key lists it reads (from ``dialects``).

Readers downstream of the genops processor (the genops_metrics connector, the ledger) read
the ``genops.*`` keys below first: the processor has already resolved every dialect into them.
"""

from relay.genai.dialects import (  # noqa: F401 - the concept lists are part of this vocabulary
    CACHE_READ_TOKENS,
    CACHE_WRITE_TOKENS,
    INPUT_TOKENS,
    LLM_MARKERS,
    MODEL,
    OUTPUT_TOKENS,
    PROVIDER,
    REASONING_TOKENS,
    REPORTED_COST,
    TOTAL_TOKENS,
    USAGE_JSON,
)

ATTRIBUTION = ("team", "project", "customer_id", "environment", "feature", "cost_center")
ENVIRONMENT_FALLBACK = ("deployment.environment.name", "deployment.environment")
# OpenRouter Broadcast carries the request's ``trace`` metadata as trace.metadata.<key>;
# its own fields sit under trace.metadata.openrouter.
METADATA_PREFIX = "trace.metadata."
API_KEY_NAME = "trace.metadata.openrouter.api_key_name"
RESPONSE_ID = "gen_ai.response.id"

COST_TOTAL = "genops.cost.total"
COST_CURRENCY = "genops.cost.currency"
COST_SOURCE = "genops.cost.source"
PRICE_SOURCE = "genops.cost.price_source"
# A reported cost the relay would not use, kept as sent; and the relay's own price of a
# span that reported one, to show drift between the price table and the bill.
COST_REPORTED = "genops.cost.reported"
COST_COMPUTED = "genops.cost.computed"
OUT_MODEL = "genops.model"
OUT_PROVIDER = "genops.provider"
PROVIDER_SOURCE = "genops.provider.source"
ACTUAL_PROVIDER = "genops.openrouter.actual_provider"
PREDICTED_PROVIDER = "genops.openrouter.predicted_provider"
FALLBACK_USED = "genops.openrouter.fallback_used"
OUT_INPUT = "genops.tokens.input"
OUT_OUTPUT = "genops.tokens.output"
OUT_CACHE_READ = "genops.tokens.cache_read"
OUT_CACHE_WRITE = "genops.tokens.cache_write"
OUT_REASONING = "genops.tokens.reasoning"
OUT_TOKENS = {"input": OUT_INPUT, "output": OUT_OUTPUT, "cache_read": OUT_CACHE_READ,
              "cache_write": OUT_CACHE_WRITE, "reasoning": OUT_REASONING}
# A second copy of a call already seen (same gen_ai.response.id): forwarded as it is, but
# counters and the ledger book only genops.cost.booked for it (see the genops processor).
DUPLICATE = "genops.call.duplicate"
BOOKED = "genops.cost.booked"
