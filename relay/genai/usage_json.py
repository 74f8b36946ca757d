"""A provider's usage object carried as JSON text (Logfire's ``gen_ai.usage.raw``).

Through OpenRouter it holds the billed ``cost`` and the cache and reasoning details that the
span's own keys may lack. It is parsed only up to ``MAX_BYTES``: a usage object is a few
hundred bytes, and a client must not make the relay parse megabytes per span.
"""

from __future__ import annotations

import json

MAX_BYTES = 16 * 1024
# Where the OpenAI-shaped usage object keeps each token count.
_PATHS = (("cache_read", ("prompt_tokens_details", "cached_tokens")),
          ("cache_write", ("prompt_tokens_details", "cache_write_tokens")),
          ("reasoning", ("completion_tokens_details", "reasoning_tokens")),
          ("input", ("prompt_tokens",)), ("output", ("completion_tokens",)),
          ("cost", ("cost",)))


def read(text) -> dict:
    """{role or "cost": value as sent} from the JSON text; {} when absent, too large or not an object."""
    if type(text) is not str or len(text) > MAX_BYTES:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {role: _dig(value, path) for role, path in _PATHS}


def _dig(obj: dict, path: tuple):
    for step in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)
    return obj
