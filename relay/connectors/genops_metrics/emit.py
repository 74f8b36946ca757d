"""The aggregated series as an OTLP metrics request: cumulative sums and histograms."""

from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from relay import attrs
from relay.genai.numbers import INT64_MAX

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
# The names and units of the metrics contract: the prometheus exporter's naming rules turn
# "cost" with unit "{USD}" into <namespace>_cost_total, "request.duration" with "s" into
# <namespace>_request_duration_seconds.
UNITS = {"requests": "{request}", "cost": "{USD}", "tokens": "{token}", "errors": "{error}",
         "provider.switches": "{switch}", "request.duration": "s"}
DESCRIPTIONS = {
    "requests": "LLM requests", "cost": "LLM cost in USD", "tokens": "LLM tokens by type",
    "errors": "Failed LLM requests by error type", "provider.switches": "OpenRouter provider fallbacks",
    "request.duration": "LLM request duration",
}


def _attributes(target, key: tuple) -> None:
    for name, value in key:
        if value != "":
            attrs.put(target, name, value)


def new_request(resource: dict, scope: str) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    for key, value in resource.items():
        attrs.put(rm.resource.attributes, key, value)
    rm.scope_metrics.add().scope.name = scope
    return request


def build(aggregator, resource: dict, scope: str, start_ns: int, now_ns: int,
          zero_fresh: bool = True) -> ExportMetricsServiceRequest | None:
    """The cumulative series; with ``zero_fresh``, series new since the last build report zero
    (the last build before shutdown reports everything as it is: there is no next one)."""
    aggregator.fold()
    request = new_request(resource, scope)
    sm = request.resource_metrics[0].scope_metrics[0]
    for name, table in aggregator.sums.items():
        if not table.cells:
            continue
        metric = sm.metrics.add(name=name, unit=UNITS[name], description=DESCRIPTIONS[name])
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = CUMULATIVE
        for key, (value,) in table.cells.items():
            point = metric.sum.data_points.add(start_time_unix_nano=start_ns, time_unix_nano=now_ns)
            if zero_fresh and key in table.fresh:
                value = table.zero
            if isinstance(value, float):
                point.as_double = value
            else:
                point.as_int = min(value, INT64_MAX)  # a counter saturates rather than wrap
            _attributes(point.attributes, key)
    histograms = aggregator.durations
    if histograms.cells:
        metric = sm.metrics.add(name="request.duration", unit=UNITS["request.duration"],
                                description=DESCRIPTIONS["request.duration"])
        metric.histogram.aggregation_temporality = CUMULATIVE
        for key, (counts, total, count) in histograms.cells.items():
            if zero_fresh and key in histograms.fresh:
                counts, total, count = [0] * len(counts), 0.0, 0
            point = metric.histogram.data_points.add(start_time_unix_nano=start_ns, time_unix_nano=now_ns,
                                                     count=count, sum=total, bucket_counts=counts,
                                                     explicit_bounds=histograms.bounds)
            _attributes(point.attributes, key)
    for table in list(aggregator.sums.values()) + [histograms]:
        table.fresh.clear()
    return request if sm.metrics else None


BUDGET_GAUGES = (("budget.limit_usd", "Budget for the period, USD", lambda s: s.limit),
                 ("budget.spent_usd", "Spend in the period so far, USD (this relay's share)", lambda s: s.spent),
                 ("budget.utilization_ratio", "Spend over budget in the period (1 = all of it)",
                  lambda s: s.utilization))


def add_budget_gauges(request: ExportMetricsServiceRequest, statuses, now_ns: int) -> None:
    """One gauge per budget and period kind, named so that the prometheus exporter serves
    <namespace>_budget_limit_usd, _budget_spent_usd and _budget_utilization_ratio."""
    sm = request.resource_metrics[0].scope_metrics[0]
    for name, description, value_of in BUDGET_GAUGES:
        metric = sm.metrics.add(name=name, description=description)
        for status in statuses:
            point = metric.gauge.data_points.add(time_unix_nano=now_ns, as_double=float(value_of(status)))
            budget = status.budget
            _attributes(point.attributes, (("genops.team", budget.team), ("genops.project", budget.project),
                                           ("genops.customer_id", budget.customer), ("budget", budget.name),
                                           ("period", status.period.kind)))
