"""The in-memory state behind /metrics: one entry per exposed series.

``ingest`` applies an OTLP metrics request: cumulative points replace the stored
one when they are not older, delta monotonic sums and delta histograms are added
to a running total, and what cannot be represented is dropped and counted by
reason. ``sweep`` removes series not updated within the expiration; the exporter
runs it on a timer, because the collector's expiry-on-scrape-only lets memory grow
without bound while nothing scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.proto.metrics.v1 import metrics_pb2

from relay.prometheus import naming
from relay.prometheus.labels import LabelMaker
from relay.prometheus.series import INVALID_POINT, Histogram, Number, Summary

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

UNSUPPORTED_TYPE = "unsupported_type"
UNSPECIFIED_TEMPORALITY = "unspecified_temporality"
DELTA_NON_MONOTONIC = "delta_non_monotonic"
INVALID_NAME = "invalid_name"
TYPE_CONFLICT = "type_conflict"
SERIES_LIMIT = "series_limit"


@dataclass
class Drops:
    """Points not stored in one request, by reason, with a metric name as an example."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, count: int, metric: str) -> None:
        if count:
            self.counts[reason] = self.counts.get(reason, 0) + count
            self.examples.setdefault(reason, metric)


class Family:
    """Series sharing one exposed name and type. ``kind`` is counter, gauge, histogram or summary."""

    __slots__ = ("name", "kind", "help", "series", "claims")

    def __init__(self, name: str, kind: str, help_: str):
        self.name = name
        self.kind = kind
        self.help = help_
        self.series: dict[tuple, object] = {}
        self.claims = _claims(name, kind)


def _claims(name: str, kind: str) -> frozenset[str]:
    """Every name the family writes, its OpenMetrics family name included: two families
    that share one would make the exposition ambiguous, and parsers refuse it."""
    if kind == "counter" and name.endswith("_total"):
        return frozenset((name, name[:-6]))
    if kind == "histogram":
        return frozenset((name, f"{name}_bucket", f"{name}_sum", f"{name}_count"))
    if kind == "summary":
        return frozenset((name, f"{name}_sum", f"{name}_count"))
    return frozenset((name,))


class SeriesStore:
    def __init__(self, *, namespace: str = "", const_labels: dict[str, str] | None = None,
                 add_metric_suffixes: bool = True, resource_to_telemetry: bool = False,
                 expiration: float = 300.0, max_series: int = 20000,
                 now: Callable[[], float] = time.monotonic):
        self.namespace = namespace
        self.suffixes = add_metric_suffixes
        self.expiration = expiration
        self.max_series = max_series
        self.now = now
        self.labels = LabelMaker(const_labels or {}, resource_to_telemetry)
        self.target_info_name = naming.target_info_name(namespace)
        self.families: dict[str, Family] = {}
        self.series_count = 0
        self._claimed: dict[str, str] = {self.target_info_name: self.target_info_name}

    def ingest(self, request) -> Drops:
        drops = Drops()
        now = self.now()
        for rm in request.resource_metrics:
            resource = self.labels.resource(rm.resource)
            for sm in rm.scope_metrics:
                fixed = self.labels.fixed(resource, sm)
                for metric in sm.metrics:
                    self._metric(metric, resource, fixed, now, drops)
        return drops

    def _metric(self, metric, resource, fixed, now: float, drops: Drops) -> None:
        data_kind = metric.WhichOneof("data")
        if data_kind is None:
            return
        points = getattr(metric, data_kind).data_points
        shape = _shape(metric, data_kind)
        if isinstance(shape, str):
            drops.add(shape, len(points), metric.name)
            return
        kind, name_kind, delta = shape
        name = naming.metric_name(metric.name, metric.unit, name_kind, self.namespace, self.suffixes)
        family = self._family(name, kind, metric.description) if name else None
        if family is None:
            drops.add(TYPE_CONFLICT if name else INVALID_NAME, len(points), metric.name)
            return
        for point in points:
            reason = self._point(family, point, delta, resource, fixed, now)
            if reason is not None:
                drops.add(reason, 1, metric.name)
        if not family.series:
            self._release(family)

    def _family(self, name: str, kind: str, help_: str) -> Family | None:
        family = self.families.get(name)
        if family is not None:
            # The first description stays, as in the collector.
            return family if family.kind == kind else None
        family = Family(name, kind, help_)
        if any(self._claimed.get(claim, name) != name for claim in family.claims):
            return None
        for claim in family.claims:
            self._claimed[claim] = name
        self.families[name] = family
        return family

    def _release(self, family: Family) -> None:
        del self.families[family.name]
        for claim in family.claims:
            del self._claimed[claim]

    def _point(self, family: Family, point, delta: bool, resource, fixed, now: float) -> str | None:
        key = self.labels.key(point.attributes, resource, fixed)
        series = family.series.get(key)
        if point.flags & NO_RECORDED_VALUE:
            # The producer says the series ended (e.g. a scrape target vanished).
            if series is not None:
                del family.series[key]
                self.series_count -= 1
            return None
        if series is None:
            if self.series_count >= self.max_series:
                return SERIES_LIMIT
            series = _new(family.kind, point, resource)
            if series is None:
                return INVALID_POINT
            family.series[key] = series
            self.series_count += 1
        else:
            reason = series.add(point, resource) if delta else series.replace(point, resource)
            if reason is not None:
                return reason
        series.updated = now
        return None

    def sweep(self) -> int:
        """Drop series not updated within the expiration; returns how many went."""
        cutoff = self.now() - self.expiration
        removed = 0
        for family in list(self.families.values()):
            stale = [key for key, series in family.series.items() if series.updated < cutoff]
            for key in stale:
                del family.series[key]
            removed += len(stale)
            if not family.series:
                self._release(family)
        self.series_count -= removed
        return removed

    def targets(self) -> list[tuple]:
        """target_info label sets of the resources that still have a live series, once each."""
        seen: dict[tuple, tuple] = {}
        for family in self.families.values():
            for series in family.series.values():
                resource = series.resource
                if resource.target_key is not None and resource.target_key not in seen:
                    seen[resource.target_key] = resource.target()
        return list(seen.values())


def _shape(metric, data_kind: str) -> tuple[str, str, bool] | str:
    """(family kind, naming kind, is delta) of a metric, or why none of its points can be stored."""
    if data_kind == "exponential_histogram":
        return UNSUPPORTED_TYPE
    data = getattr(metric, data_kind)
    delta = False
    if data_kind in ("sum", "histogram"):
        if data.aggregation_temporality not in (DELTA, CUMULATIVE):
            return UNSPECIFIED_TEMPORALITY
        delta = data.aggregation_temporality == DELTA
    if data_kind != "sum":
        return data_kind, data_kind, delta
    if not data.is_monotonic:
        # A delta of an up-down quantity has no running total a gauge could show
        # without knowing where it started.
        return DELTA_NON_MONOTONIC if delta else ("gauge", naming.NON_MONOTONIC, False)
    return "counter", naming.COUNTER, delta


def _new(kind: str, point, resource):
    if kind == "histogram":
        return Histogram.create(point, resource)
    if kind == "summary":
        return Summary(point, resource)
    return Number(point, resource)
