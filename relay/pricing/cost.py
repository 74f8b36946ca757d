"""Rates, usage and the cost arithmetic: pure functions, no lookups.

Token counts follow the GenAI convention: ``input`` includes the cache-read and
cache-write tokens and ``output`` includes the reasoning tokens. Each token is
priced exactly once::

    (input - cache_read - cache_write) * input_rate
  + cache_read  * (cache_read_rate  or input_rate)
  + cache_write * (cache_write_rate or input_rate)
  + (output - reasoning) * output_rate
  + reasoning   * (reasoning_rate   or output_rate)
  + request_fee

Inconsistent spans, whose cache counts exceed ``input`` (or reasoning exceeds
``output``), usually come from a provider reporting exclusive counts under the
inclusive names. They are priced as if the total were the sum of the parts: the
cache (reasoning) tokens at their own rates and no uncached tokens, so the
cost never goes negative and no token is counted twice. Negative counts are 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

PARTS = ("input", "cache_read", "cache_write", "output", "reasoning", "request")


@dataclass(frozen=True)
class RateTier:
    """Rates that replace the base ones when a call's input tokens exceed ``above``.

    Providers' long-context prices are "cliffs": past the threshold every token of
    the call is priced at the tier's rate. ``None`` keeps the base rate.
    """

    above: int
    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None


@dataclass(frozen=True)
class Rates:
    """USD per token (``request``: USD per call) for one model at one time."""

    model: str
    source: str
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    request: float = 0.0
    detail: str = ""
    tiers: tuple[RateTier, ...] = ()

    def for_input(self, input_tokens: int) -> Rates:
        """These rates with the long-context tier that ``input_tokens`` reaches applied."""
        tier = None
        for candidate in self.tiers:
            if input_tokens > candidate.above:
                tier = candidate
        if tier is None:
            return self
        changed = {name: getattr(tier, name) for name in ("input", "output", "cache_read", "cache_write",
                                                           "reasoning") if getattr(tier, name) is not None}
        return replace(self, tiers=(), **changed)


@dataclass(frozen=True)
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0


@dataclass(frozen=True)
class Cost:
    total: float
    parts: dict[str, float]
    rates: Rates


def cost_of(rates: Rates, usage: Usage) -> Cost:
    input_tokens = max(usage.input, 0)
    cache_read = max(usage.cache_read, 0)
    cache_write = max(usage.cache_write, 0)
    reasoning = max(usage.reasoning, 0)
    effective = rates.for_input(input_tokens)
    parts = {
        "input": max(input_tokens - cache_read - cache_write, 0) * effective.input,
        "cache_read": cache_read * _or(effective.cache_read, effective.input),
        "cache_write": cache_write * _or(effective.cache_write, effective.input),
        "output": max(max(usage.output, 0) - reasoning, 0) * effective.output,
        "reasoning": reasoning * _or(effective.reasoning, effective.output),
        "request": effective.request,
    }
    return Cost(total=sum(parts.values()), parts=parts, rates=effective)


def total_of(rates: Rates, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0,
             reasoning: int = 0) -> float:
    """``cost_of(...).total`` from plain counts, without the breakdown: the per-span path."""
    if rates.tiers:
        return cost_of(rates, Usage(input_tokens, output_tokens, cache_read, cache_write, reasoning)).total
    input_tokens, output_tokens = max(input_tokens, 0), max(output_tokens, 0)
    cache_read, cache_write, reasoning = max(cache_read, 0), max(cache_write, 0), max(reasoning, 0)
    return (max(input_tokens - cache_read - cache_write, 0) * rates.input
            + cache_read * (rates.input if rates.cache_read is None else rates.cache_read)
            + cache_write * (rates.input if rates.cache_write is None else rates.cache_write)
            + max(output_tokens - reasoning, 0) * rates.output
            + reasoning * (rates.output if rates.reasoning is None else rates.reasoning)
            + rates.request)


def _or(rate: float | None, default: float) -> float:
    return default if rate is None else rate
