"""Who served an LLM call: the provider the relay books it under, and OpenRouter's upstream.

- A call to an OpenRouter host (``server.address``, ``url.full`` or ``http.url``), or a span
  OpenRouter Broadcast sent, is booked under ``openrouter``. For Broadcast the upstream that
  served it ("Azure", "Amazon Bedrock", ...) is the actual provider: from
  ``trace.metadata.openrouter.provider_name``, as recorded deliveries carry it, else from
  ``gen_ai.provider.name`` unless that only names the model's vendor (recorded deliveries
  write the vendor there; some descriptions of Broadcast say the upstream).
- Elsewhere: the span's provider or system key (then the resource's).
- Else the model's ``vendor/`` prefix ("anthropic/claude-sonnet-4" -> "anthropic"), marked
  ``inferred``: it is a guess from the name, not something the span said.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from relay.genai.dialects import PROVIDER

OPENROUTER = "openrouter"
ADDRESS = ("server.address", "url.full", "http.url")
# Broadcast's own keys: a span carrying one came from OpenRouter itself.
UPSTREAM = "trace.metadata.openrouter.provider_name"
BROADCAST_MARKERS = ("gen_ai.usage.total_cost", "trace.metadata.openrouter.api_key_name",
                     "trace.metadata.openrouter.provider_slug", UPSTREAM)
BROADCAST_SERVICE = "openrouter"
# Vercel's ai.model.provider reads "openai.chat": the provider is the part before the dot.
_HEAD_ONLY = frozenset(("ai.model.provider",))


def is_openrouter_host(text: str) -> bool:
    text = text.strip().lower()
    if "://" in text:
        host = urlsplit(text).hostname or ""
    else:
        host = text.split("/", 1)[0].rsplit(":", 1)[0] if text.count(":") <= 1 else text
    return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def _text(value) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def declared(attributes: dict) -> str | None:
    """The provider the attributes name, first key wins."""
    for key in PROVIDER:
        text = _text(attributes.get(key))
        if text:
            return text.split(".", 1)[0] if key in _HEAD_ONLY else text
    return None


def from_broadcast(span: dict, resource: dict) -> bool:
    return (any(key in span for key in BROADCAST_MARKERS)
            or _text(resource.get("service.name")) == BROADCAST_SERVICE)


def resolve(span: dict, resource: dict, models: tuple) -> tuple[str | None, str | None, bool]:
    """(provider, OpenRouter's upstream or None, whether the provider was inferred)."""
    own = _text(span.get(PROVIDER[0]))
    if own:  # genops.provider as the application set it
        return own, None, False
    if from_broadcast(span, resource):
        upstream = _text(span.get(UPSTREAM))
        if upstream is None:
            named = _text(span.get("gen_ai.provider.name"))
            vendors = {OPENROUTER, (_text(span.get("gen_ai.system")) or "").lower()}
            vendors.update(m.partition("/")[0].lower() for m in models if "/" in m)
            upstream = named if named and named.lower() not in vendors else None
        return OPENROUTER, upstream, False
    if any(is_openrouter_host(text) for text in (_text(span.get(k)) for k in ADDRESS) if text):
        return OPENROUTER, None, False
    named = declared(span) or declared(resource)
    if named:
        return named, None, False
    for model in models:
        vendor, slash, rest = model.partition("/")
        if slash and vendor and rest:
            return vendor.lower(), None, True
    return None, None, False
