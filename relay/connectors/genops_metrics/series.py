"""Cumulative series per metric, with a cardinality limit and one overflow series.

A series is keyed by its attributes as a tuple of (key, value) pairs. Once a
metric holds ``limit`` series, data for a new key goes into the one series
whose only attribute is ``otel.metric.overflow=true`` (the collector's
convention), so memory stays bounded however many label values arrive.

A series created since the last flush is ``fresh``: its first flush reports it
at zero, as the collector's spanmetrics does, so that Prometheus' rate() and
increase() see its first increment (they ignore a counter's first sample).
"""

from __future__ import annotations

from typing import Callable

OVERFLOW_KEY = (("otel.metric.overflow", True),)


class Series:
    """The series of one metric; a cell is a mutable list its users add to."""

    def __init__(self, limit: int, new_cell: Callable[[], list], zero: int | float = 0,
                 bounds: tuple[float, ...] = ()):
        self.limit = limit
        self.new_cell = new_cell
        self.zero = zero  # a sum's value as reported while fresh
        self.bounds = list(bounds)  # a histogram's explicit bounds
        self.cells: dict[tuple, list] = {}
        self.fresh: set[tuple] = set()

    def cell(self, key: tuple) -> tuple[list, bool]:
        """(the cell for ``key``, whether it is the overflow cell)."""
        cell = self.cells.get(key)
        if cell is not None:
            return cell, key == OVERFLOW_KEY
        overflow = len(self.cells) >= self.limit and key != OVERFLOW_KEY
        if overflow:
            key = OVERFLOW_KEY
            cell = self.cells.get(key)
            if cell is not None:
                return cell, True
        cell = self.cells[key] = self.new_cell()
        self.fresh.add(key)
        return cell, overflow


def sums(limit: int, zero: int | float = 0) -> Series:
    """Monotonic running totals: a cell is [total]."""
    return Series(limit, lambda: [zero], zero=zero)


def histograms(limit: int, bounds: list[float]) -> Series:
    """Explicit-bucket histograms: a cell is [bucket counts, sum, count]."""
    return Series(limit, lambda: [[0] * (len(bounds) + 1), 0.0, 0], bounds=tuple(bounds))
