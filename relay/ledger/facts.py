"""What the ledger keeps of one LLM span, read from the attributes the genops processor wrote."""

from __future__ import annotations

from dataclasses import dataclass

TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")


@dataclass(slots=True)
class SpanFacts:
    time_ns: int
    team: str
    project: str
    model: str
    provider: str
    customer: str
    cost: float
    tokens: dict[str, int]
    error: bool
    # 0 for a second copy of a call already booked: it adds only its booked cost.
    calls: int = 1
