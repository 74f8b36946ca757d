"""Model-name normalisation: the forms under which one reported model name is looked up.

Forms are tried in order, the exact name first, so that a source listing the
exact id (``openai/gpt-4o-2024-05-13``, ``meta-llama/llama-3.3-70b-instruct:free``)
wins over a looser form of it. After the exact name come:

1. lower case, surrounding whitespace removed, a LiteLLM-style ``openrouter/``
   prefix dropped;
2. a bare name (``gpt-4o``) prefixed with its vendor as OpenRouter spells it
   (``openai/gpt-4o``): the vendor comes from the span's provider
   (``gen_ai.system``-style values such as ``gcp.gemini``), else from the
   model family's well-known prefix;
3. OpenRouter's variants that keep the model's per-token list price
   (``:beta``, ``:nitro``, ``:floor``, ``:online``, ``:thinking``, ``:exacto``)
   removed. ``:free`` is never removed: a free variant is billed 0, and pricing
   it as the paid model would invent a cost. ``:extended`` (longer context),
   ``:batch`` and unknown suffixes are kept: they have prices of their own;
4. a snapshot date suffix (``-2024-08-06``, ``-20240806``, ``@20240806``,
   ``-0613``) removed, so that an unknown snapshot is priced as its base model.
"""

from __future__ import annotations

import re
from datetime import date

ROUTING_VARIANTS = frozenset({"beta", "nitro", "floor", "online", "thinking", "exacto"})

# Span provider values (gen_ai.system / gen_ai.provider.name and common spellings)
# mapped to OpenRouter's vendor prefix. Hosts of other vendors' models (groq,
# bedrock, openrouter itself) say nothing about the vendor and are absent.
_PROVIDER_VENDOR = {
    "openai": "openai", "azure.ai.openai": "openai", "az.ai.openai": "openai", "azure_openai": "openai",
    "anthropic": "anthropic",
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google", "google": "google",
    "gemini": "google", "vertex_ai": "google", "vertexai": "google",
    "mistral_ai": "mistralai", "mistral": "mistralai", "mistralai": "mistralai",
    "xai": "x-ai", "x-ai": "x-ai", "x_ai": "x-ai",
    "deepseek": "deepseek", "cohere": "cohere", "perplexity": "perplexity",
    "meta": "meta-llama", "meta-llama": "meta-llama", "qwen": "qwen", "moonshotai": "moonshotai",
}

VENDORS = frozenset(_PROVIDER_VENDOR.values())

# Model-family prefixes whose vendor is unambiguous, for bare names without a provider.
_FAMILY_VENDOR = (
    (re.compile(r"^(gpt-|chatgpt-|o[134](-|$)|text-embedding-)"), "openai"),
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^(gemini-|gemma-)"), "google"),
    (re.compile(r"^(mistral-|mixtral-|codestral-|ministral-|pixtral-|magistral-|devstral-)"), "mistralai"),
    (re.compile(r"^grok-"), "x-ai"),
    (re.compile(r"^deepseek-"), "deepseek"),
    (re.compile(r"^command-"), "cohere"),
    (re.compile(r"^(llama-|meta-llama-)"), "meta-llama"),
    (re.compile(r"^qwen"), "qwen"),
)

_DATE_SUFFIX = re.compile(r"[-@](\d{4})-?(\d{2})-?(\d{2})$")
_MMDD_SUFFIX = re.compile(r"-(\d{2})(\d{2})$")


def vendor_of(model: str, provider: str | None) -> str | None:
    """OpenRouter's vendor prefix for a bare model name, or None when unknown."""
    if provider:
        vendor = _PROVIDER_VENDOR.get(provider.strip().lower())
        if vendor:
            return vendor
    for pattern, vendor in _FAMILY_VENDOR:
        if pattern.match(model):
            return vendor
    return None


def strip_variant(name: str) -> str:
    base, sep, variant = name.rpartition(":")
    return base if sep and base and variant in ROUTING_VARIANTS else name


def strip_date(name: str) -> str:
    match = _DATE_SUFFIX.search(name)
    if match and _is_date(int(match.group(1)), int(match.group(2)), int(match.group(3))):
        return name[:match.start()]
    match = _MMDD_SUFFIX.search(name)
    # Only month-day pairs: "-2407"-style year-month tags name distinct models.
    if match and _is_date(2000, int(match.group(1)), int(match.group(2))):
        return name[:match.start()]
    return name


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return 1990 < year < 2100


def canonical(name: str) -> str:
    """The case- and whitespace-normalised name, without a LiteLLM ``openrouter/`` prefix."""
    low = name.strip().lower()
    if low.startswith("openrouter/") and low.count("/") >= 2:
        low = low[len("openrouter/"):]
    return low


def forms(name: str, provider: str | None = None) -> list[str]:
    """The names to try for one reported model name, most exact first; no duplicates."""
    exact = name.strip()
    if not exact:
        return []
    low = canonical(exact)
    bases = [low]
    if "/" not in low:
        vendor = vendor_of(low, provider)
        if vendor:
            bases.append(f"{vendor}/{low}")
    found = [exact]
    for step in (lambda n: n, strip_variant, lambda n: strip_date(strip_variant(n))):
        for base in bases:
            form = step(base)
            if form and form not in found:
                found.append(form)
    return found
