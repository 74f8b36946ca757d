"""Who spent it: team, project, customer, environment, feature and cost center.

Each field resolves in order: the span's ``genops.<field>``, the span's
``trace.metadata.<field>`` (the request metadata OpenRouter Broadcast exports), the
``api_keys`` entry of the span's OpenRouter key name, the resource's ``genops.<field>``
(for environment: ``deployment.environment[.name]`` on span, then resource), then the
configured rules in order, then the configured defaults. What the call itself says comes
before what its service says.
"""

from __future__ import annotations

import re
from typing import Callable

from relay import client
from relay.genai.keys import API_KEY_NAME, ATTRIBUTION, ENVIRONMENT_FALLBACK, METADATA_PREFIX

GENOPS_KEYS = {name: f"genops.{name}" for name in ATTRIBUTION}
METADATA_KEYS = {name: METADATA_PREFIX + name for name in ATTRIBUTION}

# A rule looks at (span attributes, resource attributes, per-request context values)
# and gives {field: value} for the fields it decides.
Rule = Callable[[dict, dict, dict], dict]

_MATCH_CACHE_LIMIT = 4096
RESOURCES_CACHED = 1024  # distinct (resource, client context) pairs; then the cache starts over
CACHEABLE = 8 * 1024  # bytes of a resource (or signature) that may be a cache key


def _text(value) -> str | None:
    """Attribute values arrive as plain Python scalars (see ``read``)."""
    if value is None or isinstance(value, (list, dict, bytes)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compile_rules(rules) -> tuple[list[Rule], dict[str, str]]:
    """(rules as functions, {target field: from_context source}) in config order."""
    compiled: list[Rule] = []
    context_sources: dict[str, str] = {}
    for index, rule in enumerate(rules):
        if rule.from_context:
            context_key = f"rule{index}"
            context_sources[context_key] = rule.from_context
            compiled.append(_context_rule(context_key, rule.target))
        else:
            compiled.append(_attribute_rule(rule.attribute, rule.value, rule.pattern, dict(rule.set)))
    return compiled, context_sources


def _context_rule(context_key: str, target: str) -> Rule:
    def rule(span: dict, resource: dict, context: dict) -> dict:
        value = context.get(context_key)
        return {target: value} if value else {}
    return rule


def _attribute_rule(attribute: str, exact: str, pattern: str, assign: dict) -> Rule:
    if exact:
        def matches(text: str) -> bool:
            return text == exact
    else:
        regex = re.compile(pattern)
        seen: dict[str, bool] = {}

        def matches(text: str) -> bool:
            hit = seen.get(text)
            if hit is None:
                hit = regex.search(text) is not None
                if len(seen) < _MATCH_CACHE_LIMIT:
                    seen[text] = hit
            return hit

    def rule(span: dict, resource: dict, context: dict) -> dict:
        text = _text(span.get(attribute))
        if text is None:
            text = _text(resource.get(attribute))
        return assign if text is not None and matches(text) else {}
    return rule


def per_resource(cache: dict, resource_bytes: bytes, context_key: tuple) -> dict:
    """The table of what was decided for spans or points of a resource (its serialized form)
    in this client context.

    Decisions outlive the request, since the same services send the same attributes request
    after request; a resource too large to be a key gets a table for this request only."""
    if len(resource_bytes) > CACHEABLE:
        return {}
    table = cache.get((resource_bytes, context_key))
    if table is None:
        if len(cache) >= RESOURCES_CACHED:
            cache.clear()
        table = cache[(resource_bytes, context_key)] = {}
    return table


def context_values(sources: dict[str, str]) -> dict[str, str]:
    """The from_context values of the request being processed, read once per request."""
    values = {}
    for key, source in sources.items():
        value = client.from_context(source)
        if value:
            values[key] = value
    return values


def resource_fields(resource: dict) -> dict[str, str]:
    """The fields a resource decides by itself (its genops.* keys)."""
    found = {}
    for name, key in GENOPS_KEYS.items():
        text = _text(resource.get(key))
        if text:
            found[name] = text
    return found


def resolve(span: dict, resource: dict, from_resource: dict, rules: list[Rule], context: dict,
            defaults: dict, api_keys: dict | None = None) -> dict[str, str]:
    """The fields to write on a span: every field the span does not already carry."""
    out: dict[str, str] = {}
    missing = []
    by_key = (api_keys or {}).get(_text(span.get(API_KEY_NAME)) or "", {})
    for name, key in GENOPS_KEYS.items():
        if key in span:
            continue
        value = _text(span.get(METADATA_KEYS[name])) or by_key.get(name) or from_resource.get(name)
        if value is None and name == "environment":
            value = _environment(span, resource)
        if value is not None:
            out[name] = value
        else:
            missing.append(name)
    if missing and rules:
        for rule in rules:
            for name, value in rule(span, resource, context).items():
                if name in missing and name not in out:
                    out[name] = value
    for name in missing:
        if name not in out and name in defaults:
            out[name] = defaults[name]
    return out


def _environment(span: dict, resource: dict) -> str | None:
    for attributes in (span, resource):
        for key in ENVIRONMENT_FALLBACK:
            text = _text(attributes.get(key))
            if text:
                return text
    return None
