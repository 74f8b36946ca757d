"""Numbers from span attributes, which senders write as ints, doubles or strings."""

from __future__ import annotations

INT64_MAX = 2**63 - 1


def number(value) -> float | None:
    """The value as a number, or None: bools, arrays and non-numeric text are not numbers."""
    kind = type(value)
    if kind is float or kind is int:
        return value
    if value is None or value is ... or kind is bool:
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def token_count(value) -> int | None:
    """A token count: a whole, non-negative int64 whatever number the span sent; None if no number."""
    if type(value) is int and 0 <= value <= INT64_MAX:
        return value
    value = number(value)
    if value is None or value != value:  # NaN
        return None
    if value <= 0:
        return 0
    return INT64_MAX if value >= INT64_MAX else int(value)
