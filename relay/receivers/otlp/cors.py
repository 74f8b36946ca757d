"""CORS for the OTLP/HTTP receiver, so that browsers may export to it.

As the collector's ``cors`` settings: origins may contain ``*`` wildcards
(``https://*.example.com``, or ``*`` for any); Accept, Accept-Language,
Content-Type and Content-Language are always allowed request headers, and
``*`` in ``allowed_headers`` allows any; credentials are allowed. A preflight
that is not allowed is answered 204 without CORS headers, which the browser
reads as a refusal.
"""

from __future__ import annotations

import re

_ALWAYS_ALLOWED_HEADERS = frozenset({"accept", "accept-language", "content-type", "content-language"})
_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class Cors:
    def __init__(self, allowed_origins: list[str], allowed_headers: list[str], max_age: int):
        patterns = ("|".join(re.escape(o.lower()).replace(r"\*", ".*") for o in allowed_origins))
        self._origin = re.compile(patterns, re.DOTALL)
        self._any_header = "*" in allowed_headers
        self._headers = _ALWAYS_ALLOWED_HEADERS | {h.strip().lower() for h in allowed_headers}
        self._max_age = str(max_age) if max_age > 0 else None

    def allows_origin(self, origin: str) -> bool:
        return self._origin.fullmatch(origin.lower()) is not None

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """Headers for an actual (non-preflight) response to a request from ``origin``."""
        if origin is None or not self.allows_origin(origin):
            return {"Vary": "Origin"}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                "Vary": "Origin"}

    def preflight_headers(self, origin: str, method: str, requested_headers: str) -> dict[str, str]:
        """Headers answering a preflight; without any Access-Control-* when it is not allowed."""
        refused = {"Vary": _PREFLIGHT_VARY}
        if not self.allows_origin(origin) or method.strip().upper() != "POST":
            return refused
        requested = [h.strip() for h in requested_headers.split(",") if h.strip()]
        if not self._any_header and any(h.lower() not in self._headers for h in requested):
            return refused
        headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                   "Access-Control-Allow-Methods": "POST", "Vary": _PREFLIGHT_VARY}
        if requested:
            headers["Access-Control-Allow-Headers"] = ", ".join(requested)
        if self._max_age is not None:
            headers["Access-Control-Max-Age"] = self._max_age
        return headers
