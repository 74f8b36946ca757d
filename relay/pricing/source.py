"""What a price source answers, and the protocol every source implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from relay.pricing.cost import Rates
from relay.pricing.times import EARLIEST, LATEST


@dataclass(frozen=True)
class Answer:
    """A source's answer for one name at one instant, and how long it holds.

    ``since``/``until`` (unix nanos, half-open) bound the period in which the same
    question gets the same answer, misses included: the price book caches by it.
    ``variable`` means the source knows the name but it has no per-token price
    (OpenRouter's "-1", e.g. ``openrouter/auto``), so no lower source may price it.
    """

    rates: Rates | None = None
    since: int = EARLIEST
    until: int = LATEST
    variable: bool = False


MISS = Answer()


class Source(Protocol):
    name: str

    def lookup(self, form: str, provider: str | None, at: int) -> Answer:
        """Price one normalised name (see ``names.forms``) at ``at`` (unix nanos)."""

    def known_names(self) -> list[str]:
        """Every name this source can price, for suggestions."""


def window(boundaries, at: int) -> tuple[int, int]:
    """The half-open period around ``at`` that no boundary (unix nanos) splits."""
    since, until = EARLIEST, LATEST
    for boundary in boundaries:
        if boundary <= at:
            since = max(since, boundary)
        else:
            until = min(until, boundary)
    return since, until
