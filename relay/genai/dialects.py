"""Where each instrumentation writes a call's model, tokens, cost and provider: one row per dialect.

A row is data only. The concept key lists the readers use (``MODEL``, ``INPUT_TOKENS``, ...)
are derived from the rows in table order, so a new dialect is a new row (and a fixture of
what its library really sends); nothing else changes.

How a span is read:
- model: the first present of every row's response-model keys, then every row's
  request-model keys. The response model wins because OpenRouter bills the model that
  actually answered (fallbacks).
- tokens: from one row, the first row in table order that has an input or output key on the
  span (``token_row``). Its keys are read first, the other rows' only for what it lacks
  (OpenLIT's reasoning key next to the semantic conventions' input key, say). The row's
  ``counting`` says whether its input and output counts include cache and reasoning tokens;
  every row here is ``inclusive``, as the providers these libraries wrap report usage
  (OpenAI and OpenRouter's prompt_tokens include cached_tokens, completion_tokens include
  reasoning_tokens). The genops processor's ``token_counting`` setting overrides that for
  sources that send exclusive counts.
- reported cost: the first present cost key in table order, then a usage JSON's ``cost``.
- provider: the first present provider key; see ``relay.genai.provider`` for OpenRouter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    response_model: tuple[str, ...] = ()
    request_model: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    input: tuple[str, ...] = ()
    output: tuple[str, ...] = ()
    total: tuple[str, ...] = ()
    cache_read: tuple[str, ...] = ()
    cache_write: tuple[str, ...] = ()
    reasoning: tuple[str, ...] = ()
    cost: tuple[str, ...] = ()
    # A string attribute holding the provider's usage object as JSON (OpenAI/OpenRouter shape).
    usage_json: tuple[str, ...] = ()
    counting: str = "inclusive"
    # Keys that say a span comes from this dialect, and whether such a span is a call only
    # when it carries usage (Logfire puts a streamed call's usage on a second span).
    marker: tuple[str, ...] = ()
    needs_usage: bool = False


DIALECTS: tuple[Dialect, ...] = (
    # What the GenOps SDK writes, and what this relay writes: it always wins.
    Dialect("genops", response_model=("genops.cost.model",), request_model=("genops.model",),
            provider=("genops.provider",), input=("genops.tokens.input",), output=("genops.tokens.output",),
            cache_read=("genops.tokens.cache_read",), cache_write=("genops.tokens.cache_write",),
            reasoning=("genops.tokens.reasoning",), cost=("genops.cost.total", "genops.cost.amount")),
    # OpenRouter Broadcast: semantic-convention usage (input includes cached and cache-write
    # tokens, output includes reasoning), its own detail keys, and OpenRouter's billed cost.
    Dialect("openrouter_broadcast", cost=("gen_ai.usage.total_cost",),
            cache_read=("gen_ai.usage.input_tokens.cached",),
            cache_write=("gen_ai.usage.input_tokens.cache_write",),
            reasoning=("gen_ai.usage.output_tokens.reasoning",)),
    # OpenTelemetry GenAI semantic conventions, current names then the older ones
    # (cache_write replaced cache_creation in 2026; prompt/completion predate input/output).
    Dialect("otel_genai", response_model=("gen_ai.response.model",), request_model=("gen_ai.request.model",),
            provider=("gen_ai.provider.name", "gen_ai.system"),
            input=("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
            output=("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
            total=("gen_ai.usage.total_tokens",),
            cache_read=("gen_ai.usage.cache_read.input_tokens",),
            cache_write=("gen_ai.usage.cache_write.input_tokens", "gen_ai.usage.cache_creation.input_tokens"),
            reasoning=("gen_ai.usage.reasoning.output_tokens",)),
    # OpenLLMetry (traceloop): underscore spellings and its llm.* keys.
    Dialect("openllmetry", response_model=("llm.response.model",), request_model=("llm.request.model",),
            input=("llm.usage.prompt_tokens",), output=("llm.usage.completion_tokens",),
            total=("llm.usage.total_tokens",),
            cache_read=("gen_ai.usage.cache_read_input_tokens",),
            cache_write=("gen_ai.usage.cache_creation_input_tokens",),
            reasoning=("gen_ai.usage.reasoning_tokens",)),
    # OpenInference (Arize; LlamaIndex, DSPy, CrewAI, smolagents, Phoenix). llm.model_name is
    # the model the response named.
    Dialect("openinference", response_model=("llm.model_name",), provider=("llm.provider", "llm.system"),
            input=("llm.token_count.prompt",), output=("llm.token_count.completion",),
            total=("llm.token_count.total",),
            cache_read=("llm.token_count.prompt_details.cache_read",),
            cache_write=("llm.token_count.prompt_details.cache_write",),
            reasoning=("llm.token_count.completion_details.reasoning",),
            cost=("llm.cost.total",)),
    # LiteLLM's OpenTelemetry callback: semantic-convention usage plus its own price.
    Dialect("litellm", cost=("gen_ai.cost.total_cost", "litellm.cost.total")),
    # OpenLIT: semantic-convention usage plus the price from its own table (0 when it has none).
    Dialect("openlit", cost=("gen_ai.usage.cost",)),
    # Pydantic Logfire: semantic-convention usage plus the provider's usage object as JSON,
    # which through OpenRouter carries the billed cost and the cache and reasoning details.
    # Its span for a streamed request has the model but no usage; the usage, response id and
    # JSON go on a log span "streaming response from ...", which is the call.
    Dialect("logfire", usage_json=("gen_ai.usage.raw",), marker=("logfire.msg_template", "logfire.span_type"),
            needs_usage=True),
    # Vercel AI SDK (ai.* keys; v4 promptTokens, v5 inputTokens).
    Dialect("vercel_ai", response_model=("ai.response.model",), request_model=("ai.model.id",),
            provider=("ai.model.provider",),
            input=("ai.usage.inputTokens", "ai.usage.promptTokens"),
            output=("ai.usage.outputTokens", "ai.usage.completionTokens"),
            total=("ai.usage.totalTokens",),
            cache_read=("ai.usage.cachedInputTokens",), reasoning=("ai.usage.reasoningTokens",)),
)

ROLES = ("input", "output", "cache_read", "cache_write", "reasoning")


def _all(field: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(key for row in DIALECTS for key in getattr(row, field)))


MODEL = tuple(dict.fromkeys(_all("response_model") + _all("request_model")))
PROVIDER = _all("provider")
INPUT_TOKENS = _all("input")
OUTPUT_TOKENS = _all("output")
TOTAL_TOKENS = _all("total")
CACHE_READ_TOKENS = _all("cache_read")
CACHE_WRITE_TOKENS = _all("cache_write")
REASONING_TOKENS = _all("reasoning")
REPORTED_COST = _all("cost")
USAGE_JSON = _all("usage_json")
TOKEN_KEYS = {role: _all(role) for role in ROLES}

# A span is an LLM call when it names a model or reports tokens (but see ``is_call``).
LLM_MARKERS = frozenset(MODEL + INPUT_TOKENS + OUTPUT_TOKENS + TOTAL_TOKENS)
MARKERS = tuple(dict.fromkeys(key for row in DIALECTS for key in row.marker))
_USAGE = frozenset(INPUT_TOKENS + OUTPUT_TOKENS + TOTAL_TOKENS + REPORTED_COST + USAGE_JSON)
_NEEDS_USAGE = tuple(row.marker for row in DIALECTS if row.needs_usage)


def is_call(present) -> bool:
    """Whether a span whose keys are ``present`` is an LLM call to book."""
    if not any(key in present for key in LLM_MARKERS):
        return False
    if any(key in present for key in _USAGE):
        return True
    return not any(key in present for marker in _NEEDS_USAGE for key in marker)


def token_row(present) -> Dialect | None:
    """The row a span's token counts are read from: the first with an input or output key present."""
    for row in DIALECTS:
        if any(key in present for key in row.input + row.output):
            return row
    return None


def token_keys(row: Dialect | None) -> dict[str, tuple[str, ...]]:
    """Per role, the keys to read in order: the chosen row's, then every other row's."""
    if row is None:
        return dict(TOKEN_KEYS)
    return {role: tuple(dict.fromkeys(getattr(row, role) + TOKEN_KEYS[role])) for role in ROLES}
