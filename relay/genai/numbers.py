"""Numbers from span attributes, which senders write as ints, doubles or strings.

A cost or token count the relay books must be finite, non-negative and sane: one span
must not be able to push a counter to infinity, backwards, or by trillions of dollars.
``INVALID`` marks a value that is present but unusable, as distinct from absent (None).
"""

from __future__ import annotations

import math

INT64_MAX = 2**63 - 1
# Defaults of the genops processor's bounds (documented in the README).
MAX_TOKENS = 10**9
MAX_COST_USD = 100_000.0


class _Invalid:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"


INVALID = _Invalid()


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


def usage_count(value, cap: int = MAX_TOKENS):
    """A token count fit to price: None when absent, INVALID when not a finite count within ``cap``."""
    if type(value) is int:
        return value if 0 <= value <= cap else INVALID
    if value is None:
        return None
    value = number(value)
    if value is None or not math.isfinite(value) or value < 0 or value > cap:
        return INVALID
    return int(value)


def cost_reason(value, cap: float = MAX_COST_USD) -> str | None:
    """Why a reported cost cannot be used (None when it can): it is booked as sent otherwise."""
    if type(value) is bool:
        return "not_a_number"
    parsed = number(value)
    if parsed is None:
        return "not_a_number"
    if not math.isfinite(parsed):
        return "not_finite"
    if parsed < 0:
        return "negative"
    if parsed > cap:
        return "too_large"
    return None
