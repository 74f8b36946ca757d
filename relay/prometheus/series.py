"""One stored series per kind, and how a new data point updates it.

Each update returns None when the point was taken, or the reason it was not (the
store counts it). Times are OTLP nanoseconds; ``updated`` is the store's clock.
"""

from __future__ import annotations

import itertools

OUT_OF_ORDER = "out_of_order"
DELTA_OVERLAP = "delta_overlap"
INVALID_POINT = "invalid_point"


def number_value(point):
    """A NumberDataPoint's value, whichever field holds it."""
    return point.as_int if point.WhichOneof("value") == "as_int" else point.as_double


class Number:
    """A counter or gauge value."""

    __slots__ = ("value", "start", "time", "updated", "resource")

    def __init__(self, point, resource):
        self.value = number_value(point)
        self.start = point.start_time_unix_nano
        self.time = point.time_unix_nano
        self.resource = resource

    def replace(self, point, resource) -> str | None:
        if point.time_unix_nano < self.time:
            return OUT_OF_ORDER
        self.value = number_value(point)
        self.start = point.start_time_unix_nano
        self.time = point.time_unix_nano
        self.resource = resource
        return None

    def add(self, point, resource) -> str | None:
        reason = _delta_problem(self, point)
        if reason is None:
            self.value += number_value(point)
            self.time = point.time_unix_nano
            self.resource = resource
        return reason


def _delta_problem(series, point) -> str | None:
    """Why a delta point cannot be added to the running total, if it cannot.

    The collector adds a delta only when it starts exactly where the last one ended and
    otherwise starts the total over (sums) or drops it (histograms). A producer that
    skips idle intervals leaves gaps, and starting over there would make the exposed
    counter fall back to one interval's delta: so a delta starting at or after the last
    end is added. One starting before it overlaps what was counted already (a resent
    request, or a second writer) and is dropped. A delta without a start time cannot be
    checked and is trusted.
    """
    if point.time_unix_nano < series.time:
        return OUT_OF_ORDER
    if point.start_time_unix_nano and point.start_time_unix_nano < series.time:
        return DELTA_OVERLAP
    return None


def explicit_buckets(point) -> tuple[tuple[float, ...], list[int]] | None:
    """(bounds, per-bucket counts) of a HistogramDataPoint, or None when they do not fit together."""
    counts = list(point.bucket_counts)
    if not counts:
        return (), []
    bounds = tuple(point.explicit_bounds)
    if len(counts) != len(bounds) + 1 or any(a >= b for a, b in itertools.pairwise(bounds)):
        return None
    return bounds, counts


class Histogram:
    """Explicit-bucket histogram; ``counts`` are per bucket, as in OTLP."""

    __slots__ = ("bounds", "counts", "sum", "count", "start", "time", "updated", "resource")

    @classmethod
    def create(cls, point, resource) -> Histogram | None:
        buckets = explicit_buckets(point)
        if buckets is None:
            return None
        series = cls()
        series._set(point, buckets, resource)
        return series

    def _set(self, point, buckets, resource) -> None:
        self.bounds, self.counts = buckets
        self.sum = point.sum if point.HasField("sum") else 0.0
        self.count = point.count
        self.start = point.start_time_unix_nano
        self.time = point.time_unix_nano
        self.resource = resource

    def replace(self, point, resource) -> str | None:
        if point.time_unix_nano < self.time:
            return OUT_OF_ORDER
        buckets = explicit_buckets(point)
        if buckets is None:
            return INVALID_POINT
        self._set(point, buckets, resource)
        return None

    def add(self, point, resource) -> str | None:
        reason = _delta_problem(self, point)
        if reason is not None:
            return reason
        buckets = explicit_buckets(point)
        if buckets is None:
            return INVALID_POINT
        bounds, counts = buckets
        if bounds != self.bounds:
            # Totals over different buckets cannot be added: the new layout starts over.
            self._set(point, buckets, resource)
            return None
        self.counts = [a + b for a, b in zip(self.counts, counts)]
        self.sum += point.sum if point.HasField("sum") else 0.0
        self.count += point.count
        self.time = point.time_unix_nano
        self.resource = resource
        return None


class Summary:
    __slots__ = ("quantiles", "sum", "count", "start", "time", "updated", "resource")

    def __init__(self, point, resource):
        self._set(point, resource)

    def _set(self, point, resource) -> None:
        self.quantiles = tuple((q.quantile, q.value) for q in point.quantile_values)
        self.sum = point.sum
        self.count = point.count
        self.start = point.start_time_unix_nano
        self.time = point.time_unix_nano
        self.resource = resource

    def replace(self, point, resource) -> str | None:
        if point.time_unix_nano < self.time:
            return OUT_OF_ORDER
        self._set(point, resource)
        return None
