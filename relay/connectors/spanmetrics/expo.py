"""A base-2 exponential histogram of non-negative values, as OTLP's ExponentialHistogram holds it.

Bucket ``i`` at scale ``s`` holds the values in ``(2**(i / 2**s), 2**((i + 1) / 2**s)]``.
It starts at the finest scale (20) and halves its resolution whenever the populated
range of indexes would need more than ``max_size`` buckets, so memory stays bounded
however widely the values spread. Zero goes into the zero bucket.
"""

from __future__ import annotations

import math

MAX_SCALE = 20
DEFAULT_MAX_SIZE = 160


def index_of(value: float, scale: int) -> int:
    """The bucket of ``value`` (> 0) at ``scale``; exact powers of two fall in the lower bucket."""
    fraction, exponent = math.frexp(value)  # value = fraction * 2**exponent, 0.5 <= fraction < 1
    if scale <= 0:
        index = exponent - 1 - (1 if fraction == 0.5 else 0)
        return index >> -scale
    if fraction == 0.5:
        return ((exponent - 1) << scale) - 1
    return math.ceil(math.log2(value) * (1 << scale)) - 1


class ExponentialHistogram:
    def __init__(self, max_size: int = DEFAULT_MAX_SIZE):
        self.max_size = max_size or DEFAULT_MAX_SIZE
        self.scale = MAX_SCALE
        self.counts: dict[int, int] = {}
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if value <= 0:
            self.zero_count += 1
            return
        index = index_of(value, self.scale)
        if index not in self.counts and self.counts:
            low, high = min(min(self.counts), index), max(max(self.counts), index)
            change = 0
            while (high >> change) - (low >> change) + 1 > self.max_size:
                change += 1
            if change:
                self._downscale(change)
                index = index_of(value, self.scale)
        self.counts[index] = self.counts.get(index, 0) + 1

    def _downscale(self, change: int) -> None:
        merged: dict[int, int] = {}
        for index, count in self.counts.items():
            merged[index >> change] = merged.get(index >> change, 0) + count
        self.counts = merged
        self.scale -= change

    def buckets(self) -> tuple[int, list[int]]:
        """(offset, counts from the offset on) of the positive range."""
        if not self.counts:
            return 0, []
        low, high = min(self.counts), max(self.counts)
        return low, [self.counts.get(i, 0) for i in range(low, high + 1)]
