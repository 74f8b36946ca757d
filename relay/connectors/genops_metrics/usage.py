"""Cost from the GenAI usage metrics: ``gen_ai.client.token.usage`` priced per data point,
and ``gen_ai.client.operation.duration`` into the request duration histogram.

The OpenTelemetry GenAI instrumentations record one ``gen_ai.client.token.usage`` histogram
observation per call and token type (``gen_ai.token.type``: ``input``, ``output``). A point's
tokens are its histogram sum, its calls the count of its ``input`` points. Each point is
priced by ``gen_ai.response.model`` (else ``gen_ai.request.model``) and provider at the point's
time, at the model's base rates (a histogram does not say which calls reached a long-context
tier), and adds to the same series as spans do. A duration point's buckets go into the
connector's buckets by their upper bounds (a bucket lands in the first one that holds its upper
bound, so a duration is never reported shorter than it was); its sum and count are exact.

Temporality: a delta point adds what it holds. A cumulative series (resource, metric and point
attributes) adds its increase since the last point seen. Its first point adds all it holds
only if the series started after this relay did (as the collector's cumulativetodelta does with
``initial_value: auto``); otherwise it is the baseline. A new start time, or a value below the
last, is a reset: the point adds all it holds, never a negative step.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from relay.attrs import to_python
from relay.genai import dialects, keys

USAGE = "gen_ai.client.token.usage"
DURATION = "gen_ai.client.operation.duration"
_READ = (USAGE, DURATION)
TEAM, PROJECT = "genops.team", "genops.project"
TOKEN_TYPE = "gen_ai.token.type"
CUMULATIVE = 2  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
# gen_ai.token.type values, and the roles they count as: the convention's input and output,
# and the cache and reasoning types where an instrumentation reports them, under this
# project's names. Cache and reasoning counts are part of input and output (inclusive), as on spans.
TOKEN_TYPES = {"input": "input", "output": "output", "cache_read": "cache_read", "cache_write": "cache_write",
               "reasoning": "reasoning"}
_SERIES_LIMIT = 100_000  # cumulative series remembered; the oldest is forgotten first


@dataclass(slots=True)
class _Last:
    start_ns: int
    total: float
    count: int
    buckets: list


def resource_identity(resource) -> frozenset:
    """The resource's attributes as a set: the same service instance sends the same set
    with its spans and its metrics, in whatever order."""
    return frozenset((kv.key, kv.value.SerializeToString()) for kv in resource.attributes)


class UsageMetrics:
    """Reads usage and duration histograms into an ``Aggregator``'s series."""

    def __init__(self, aggregator, price_book, started_ns: int):
        self.aggregator = aggregator
        self.book = price_book
        self.started_ns = started_ns
        self.last: OrderedDict[tuple, _Last] = OrderedDict()
        self.unpriced = 0  # usage points whose model has no price

    def add(self, request, skip_first_of=frozenset()) -> set:
        """Prices every usage point of ``request``; returns the identities of the resources
        that sent usage. A resource in ``skip_first_of`` adds only increases past what its
        first points hold (its calls until then were counted from its spans)."""
        senders = set()
        for rm in request.resource_metrics:
            wanted = [m for sm in rm.scope_metrics for m in sm.metrics
                      if m.name in _READ and m.WhichOneof("data") == "histogram"]
            if not any(m.name == USAGE for m in wanted):
                continue  # durations alone say nothing of cost: the instance's spans still count
            identity = resource_identity(rm.resource)
            senders.add(identity)
            baseline_only = identity in skip_first_of
            resource = {kv.key: to_python(kv.value) for kv in rm.resource.attributes}
            calls: dict[tuple, dict] = {}  # the usage of one kind of call at one time, by role
            for metric in wanted:
                cumulative = metric.histogram.aggregation_temporality == CUMULATIVE
                for point in metric.histogram.data_points:
                    attributes = {kv.key: to_python(kv.value) for kv in point.attributes}
                    role = TOKEN_TYPES.get(attributes.get(TOKEN_TYPE)) if metric.name == USAGE else None
                    if metric.name == USAGE and role is None:
                        continue
                    grown = self._increase((identity, metric.name), point, cumulative, baseline_only)
                    if grown is None:
                        continue
                    labels = self._labels(attributes, resource)
                    if role is None:
                        self.aggregator.add_durations(labels, point.explicit_bounds, *grown)
                        continue
                    models = tuple(m for m in (attributes.get(k) for k in dialects.MODEL) if isinstance(m, str) and m)
                    status = "500" if attributes.get("error.type") else "200"
                    group = calls.setdefault((labels, models, status, point.time_unix_nano), {})
                    tokens, count = group.get(role, (0, 0))
                    group[role] = (tokens + grown[0], count + grown[1])
            for (labels, models, status, at_ns), roles in calls.items():
                self._add(labels, models, status, roles, at_ns)
        return senders

    def _increase(self, series, point, cumulative: bool, baseline_only: bool) -> tuple | None:
        """(sum, count, bucket counts) the point adds, None for nothing."""
        total, count, buckets = point.sum, point.count, list(point.bucket_counts)
        if not (total >= 0 and total == total and count >= 0):  # not a number, or negative: adds nothing
            return None
        if cumulative:
            key = series + (tuple(sorted((kv.key, kv.value.SerializeToString()) for kv in point.attributes)),)
            last = self.last.get(key)
            if (last is not None and last.start_ns == point.start_time_unix_nano and total >= last.total
                    and count >= last.count and len(buckets) == len(last.buckets)):
                grown = (total - last.total, count - last.count,
                         [max(0, now - before) for now, before in zip(buckets, last.buckets)])
                last.total, last.count, last.buckets = total, count, buckets
                self.last.move_to_end(key)
                total, count, buckets = grown
            else:
                first = last is None
                self.last[key] = _Last(point.start_time_unix_nano, total, count, buckets)
                if len(self.last) > _SERIES_LIMIT:
                    self.last.popitem(last=False)
                if first and (baseline_only or not point.start_time_unix_nano >= self.started_ns):
                    return None  # a baseline: what it holds was counted elsewhere, or before we started
        elif baseline_only:
            return None
        if total == 0 and count == 0:
            return None
        return total, count, buckets

    def _labels(self, attributes: dict, resource: dict) -> tuple:
        """(team, project, model, provider, extra dimensions) of a point, as spans are labelled."""
        aggregator = self.aggregator
        label = aggregator.label

        def first(names) -> str:
            for name in names:
                text = attributes.get(name)
                if isinstance(text, str) and text.strip():
                    return label(text.strip())
            return ""

        team = first((TEAM,)) or label(str(resource.get(TEAM) or ""))
        project = first((PROJECT,)) or label(str(resource.get(PROJECT) or ""))
        extra = tuple((name, label(str(attributes.get(name) or resource.get(name) or default or "")))
                      for name, default in aggregator.extra)
        return team, project, first(dialects.MODEL), first((keys.ACTUAL_PROVIDER,) + dialects.PROVIDER), extra

    def _add(self, labels: tuple, models: tuple, status: str, roles: dict, at_ns: int) -> None:
        """Adds one kind of call's usage: its token types together, so that cached and reasoning
        tokens come out of input and output once, as a span's do."""
        aggregator = self.aggregator
        team, project, model, provider, extra = labels
        cost_key = (("genops.team", team), ("genops.project", project), ("genops.model", model),
                    ("genops.openrouter.actual_provider", provider)) + extra
        tokens = {role: roles.get(role, (0, 0))[0] for role in ("input", "output", "cache_read", "cache_write",
                                                                "reasoning")}
        calls = roles.get("input", roles.get("output", (0, 0)))[1]
        cached = tokens["cache_read"] + tokens["cache_write"]
        if cached > tokens["input"]:  # counts that cannot be inclusive were exclusive
            tokens["input"] += cached
        if tokens["reasoning"] > tokens["output"]:
            tokens["output"] += tokens["reasoning"]
        disjoint = {"input": tokens["input"] - cached, "output": tokens["output"] - tokens["reasoning"],
                    "cache_read": tokens["cache_read"], "cache_write": tokens["cache_write"],
                    "reasoning": tokens["reasoning"]}
        for role, count in disjoint.items():
            if count or role in roles:
                aggregator.add_to("tokens", cost_key + (("token_type", role),), count)
        if calls:
            aggregator.add_to("requests", cost_key + (("http.status_code", status),), calls)
        rates = self.book.rates_in_force(models, provider or None, at_ns)[0] if models else None
        if rates is None:
            self.unpriced += len(roles)  # counted as points, as the counter says
            return
        # Base rates: a histogram's sum spans many calls, so no one call's long-context tier applies.
        cost = (disjoint["input"] * rates.input + disjoint["output"] * rates.output
                + disjoint["cache_read"] * _or(rates.cache_read, rates.input)
                + disjoint["cache_write"] * _or(rates.cache_write, rates.input)
                + disjoint["reasoning"] * _or(rates.reasoning, rates.output) + calls * rates.request)
        aggregator.add_to("cost", cost_key, float(cost))


def _or(rate: float | None, default: float) -> float:
    return default if rate is None else rate
