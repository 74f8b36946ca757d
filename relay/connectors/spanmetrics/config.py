"""Configuration of the ``spanmetrics`` connector: the collector's keys, defaults and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from relay.config.decode import Duration, advisory
from relay.errors import Problem

CUMULATIVE = "AGGREGATION_TEMPORALITY_CUMULATIVE"
DELTA = "AGGREGATION_TEMPORALITY_DELTA"
DEFAULT_NAMESPACE = "traces.span.metrics"
# The collector's default explicit buckets, in milliseconds.
DEFAULT_BUCKETS_MS = [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000]
# The dimensions every metric has, unless excluded.
SERVICE_NAME, SPAN_NAME, SPAN_KIND, STATUS_CODE = "service.name", "span.name", "span.kind", "status.code"
FIXED_DIMENSIONS = (SERVICE_NAME, SPAN_NAME, SPAN_KIND, STATUS_CODE)


@dataclass
class Dimension:
    name: str
    # Used when neither the span nor its resource has the attribute; without one, the dimension is left out.
    default: str | None = None

    def validate(self) -> list[Problem]:
        return [] if self.name else [Problem(("name",), "must not be empty")]


@dataclass
class ExplicitConfig:
    buckets: list[Duration] | None = None

    def validate(self) -> list[Problem]:
        buckets = self.buckets or []
        if any(b < 0 for b in buckets) or any(b <= a for a, b in zip(buckets, buckets[1:])):
            return [Problem(("buckets",), "must be increasing durations")]
        return []


@dataclass
class ExponentialConfig:
    # The most buckets per range (positive durations); 0 means the default, 160.
    max_size: int = 0

    def validate(self) -> list[Problem]:
        return [] if self.max_size >= 0 else [Problem(("max_size",), "must not be negative")]


@dataclass
class HistogramConfig:
    disable: bool = False
    unit: Literal["ms", "s"] = "ms"
    explicit: ExplicitConfig | None = None
    exponential: ExponentialConfig | None = None
    # Dimensions added to the duration metric only.
    dimensions: list[Dimension] = field(default_factory=list)

    def validate(self) -> list[Problem]:
        if self.explicit is not None and self.exponential is not None:
            return [Problem((), "use either `explicit` or `exponential` buckets histogram")]
        return []


@dataclass
class ExemplarsConfig:
    enabled: bool = False
    max_per_data_point: int = 5

    def validate(self) -> list[Problem]:
        return [] if self.max_per_data_point > 0 else [Problem(("max_per_data_point",), "must be positive")]


@dataclass
class EventsConfig:
    enabled: bool = False
    # Span event attributes (e.g. exception.type) added to the events metric's dimensions.
    dimensions: list[Dimension] = field(default_factory=list)


@dataclass
class Config:
    dimensions: list[Dimension] = field(default_factory=list)
    # Dimensions added to the calls metric only.
    calls_dimensions: list[Dimension] = field(default_factory=list)
    exclude_dimensions: list[str] = field(default_factory=list)
    # Deprecated in the collector (a cache of dimension sets); accepted, memory is bounded by
    # aggregation_cardinality_limit and resource_metrics_cache_size here.
    dimensions_cache_size: int = advisory("memory is bounded by aggregation_cardinality_limit and "
                                          "resource_metrics_cache_size here", default=0)
    # Resources (services) whose series are kept; past it the least recently seen one is dropped.
    resource_metrics_cache_size: int = 1000
    # The resource attributes that tell resources apart (all of them when empty).
    resource_metrics_key_attributes: list[str] = field(default_factory=list)
    aggregation_temporality: Literal["AGGREGATION_TEMPORALITY_CUMULATIVE", "AGGREGATION_TEMPORALITY_DELTA"] = \
        CUMULATIVE
    histogram: HistogramConfig = field(default_factory=HistogramConfig)
    metrics_flush_interval: Duration = Duration(60.0)
    # Cumulative only: a resource without spans for this long is no longer reported (0: never).
    metrics_expiration: Duration = Duration(0.0)
    # Delta only: series whose last flush time is remembered, so the next point starts there.
    metric_timestamp_cache_size: int = 1000
    namespace: str = DEFAULT_NAMESPACE
    exemplars: ExemplarsConfig = field(default_factory=ExemplarsConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    # Instrumentation scopes whose name (and version) become span.instrumentation.scope.* dimensions.
    include_instrumentation_scope: list[str] = field(default_factory=list)
    # Series per metric and resource; past it, spans go into one otel.metric.overflow=true series (0: no limit).
    aggregation_cardinality_limit: int = 0

    def validate(self) -> list[Problem]:
        problems = _duplicates(("dimensions",), self.dimensions)
        if self.events.enabled:
            if not self.events.dimensions:
                problems.append(Problem(("events", "dimensions"), "no dimensions configured for events"))
            problems += _duplicates(("events", "dimensions"), self.events.dimensions)
        if self.metrics_flush_interval <= 0:
            problems.append(Problem(("metrics_flush_interval",), "must be positive"))
        if self.metrics_expiration < 0:
            problems.append(Problem(("metrics_expiration",), "must not be negative"))
        for key in ("dimensions_cache_size", "aggregation_cardinality_limit"):
            if getattr(self, key) < 0:
                problems.append(Problem((key,), "must not be negative"))
        for key in ("resource_metrics_cache_size", "metric_timestamp_cache_size"):
            if getattr(self, key) <= 0:
                problems.append(Problem((key,), "must be positive"))
        return problems

    @property
    def delta(self) -> bool:
        return self.aggregation_temporality == DELTA

    def metric_name(self, name: str) -> str:
        return f"{self.namespace}.{name}" if self.namespace else name

    def bounds(self) -> list[float]:
        """The explicit bucket bounds in the histogram's unit."""
        per_unit_ns = 1_000_000 if self.histogram.unit == "ms" else 1_000_000_000
        explicit = self.histogram.explicit
        if explicit is not None and explicit.buckets is not None:
            # Through whole nanoseconds, so that 1.4s is 1400 ms exactly.
            return [round(b * 1e9) / per_unit_ns for b in explicit.buckets]
        return [b * 1_000_000 / per_unit_ns for b in DEFAULT_BUCKETS_MS]


def _duplicates(path: tuple[str, ...], dimensions: list[Dimension]) -> list[Problem]:
    seen = set(FIXED_DIMENSIONS)
    problems = []
    for dimension in dimensions:
        if dimension.name in seen:
            problems.append(Problem(path, f"duplicate dimension name {dimension.name}"))
        seen.add(dimension.name)
    return problems
