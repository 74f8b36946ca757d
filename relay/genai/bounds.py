"""Length caps for values that become metric labels, cache keys or ledger keys.

A client controls attribute values; one that sends 1 MiB model or team names must not grow
the relay's memory or its /metrics page by the size of what it sent. Every such value passes
through ``cap``: longer values keep their first bytes (on a UTF-8 boundary) and end in
``MARKER``, so a truncated label is recognisable and never collides with a real short one.
"""

from __future__ import annotations

MARKER = "...[truncated]"
DEFAULT_LIMIT = 256


def cap(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else its head plus MARKER, within ``limit`` bytes."""
    if len(text) * 4 <= limit:  # the common case, decided without encoding
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    head = data[:max(0, limit - len(MARKER))].decode("utf-8", "ignore")
    return head + MARKER

