"""The attribute keys the genops processor reads, first match wins (DESIGN.md's table).

Old and current GenAI semantic-convention names both appear in real traffic,
so each concept lists every spelling in precedence order.
"""

ATTRIBUTION = ("team", "project", "customer_id", "environment", "feature", "cost_center")
ENVIRONMENT_FALLBACK = ("deployment.environment.name", "deployment.environment")

# The response model first: OpenRouter bills the model that actually answered.
MODEL = ("genops.cost.model", "gen_ai.response.model", "genops.model", "gen_ai.request.model",
         "llm.response.model", "llm.request.model")
INPUT_TOKENS = ("genops.tokens.input", "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                "llm.usage.prompt_tokens")
OUTPUT_TOKENS = ("genops.tokens.output", "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                 "llm.usage.completion_tokens")
CACHE_READ_TOKENS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
CACHE_WRITE_TOKENS = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens")
REASONING_TOKENS = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens")
REPORTED_COST = ("genops.cost.total", "genops.cost.amount", "gen_ai.usage.cost", "llm.cost.total")
PROVIDER = ("genops.provider", "gen_ai.provider.name", "gen_ai.system")

# A span is an LLM call when it names a model or reports tokens.
LLM_MARKERS = frozenset(MODEL + INPUT_TOKENS + OUTPUT_TOKENS)

COST_TOTAL = "genops.cost.total"
COST_CURRENCY = "genops.cost.currency"
COST_SOURCE = "genops.cost.source"
OUT_MODEL = "genops.model"
OUT_PROVIDER = "genops.provider"
OUT_INPUT = "genops.tokens.input"
OUT_OUTPUT = "genops.tokens.output"
