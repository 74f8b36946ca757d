"""Cumulative series per metric, with a cardinality limit and one overflow series.

A series created since the last flush is ``fresh``: its first flush reports it
at zero, as the collector's spanmetrics does, so that Prometheus' rate() and
increase() see its first increment (they ignore a counter's first sample).

A series is keyed by its attributes as a tuple of (key, value) pairs. Once a
metric holds ``limit`` series, data for a new key goes into the one series
whose only attribute is ``otel.metric.overflow=true`` (the collector's
convention), so memory stays bounded however many label values arrive.
"""

from __future__ import annotations

OVERFLOW_KEY = (("otel.metric.overflow", True),)


class Sums:
    """Monotonic running totals: ``cell(key)`` is a one-item list to add to."""

    def __init__(self, limit: int, zero: int | float = 0):
        self.limit = limit
        self.zero = zero
        self.cells: dict[tuple, list] = {}
        self.fresh: set[tuple] = set()

    def cell(self, key: tuple) -> tuple[list, bool]:
        """(the cell for ``key``, whether it is the overflow cell)."""
        cell = self.cells.get(key)
        if cell is not None:
            return cell, key == OVERFLOW_KEY
        if len(self.cells) >= self.limit and key != OVERFLOW_KEY:
            overflow = self.cells.get(OVERFLOW_KEY)
            if overflow is None:
                overflow = self.cells[OVERFLOW_KEY] = [self.zero]
                self.fresh.add(OVERFLOW_KEY)
            return overflow, True
        cell = self.cells[key] = [self.zero]
        self.fresh.add(key)
        return cell, False


class Histograms:
    """Explicit-bucket histograms: a cell is [bucket counts, sum, count]."""

    def __init__(self, limit: int, bounds: list[float]):
        self.limit = limit
        self.bounds = list(bounds)
        self.cells: dict[tuple, list] = {}
        self.fresh: set[tuple] = set()

    def _new(self) -> list:
        return [[0] * (len(self.bounds) + 1), 0.0, 0]

    def cell(self, key: tuple) -> tuple[list, bool]:
        cell = self.cells.get(key)
        if cell is not None:
            return cell, key == OVERFLOW_KEY
        if len(self.cells) >= self.limit and key != OVERFLOW_KEY:
            overflow = self.cells.get(OVERFLOW_KEY)
            if overflow is None:
                overflow = self.cells[OVERFLOW_KEY] = self._new()
                self.fresh.add(OVERFLOW_KEY)
            return overflow, True
        cell = self.cells[key] = self._new()
        self.fresh.add(key)
        return cell, False
