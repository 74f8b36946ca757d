"""Cost from the GenAI usage metrics: ``gen_ai.client.token.usage`` priced per data point.

The OpenTelemetry GenAI instrumentations record one ``gen_ai.client.token.usage`` histogram
observation per call and token type (``gen_ai.token.type``: ``input``, ``output``). A point's
tokens are its histogram sum, its calls the count of its ``input`` points. Each point is
priced by ``gen_ai.response.model`` (else ``gen_ai.request.model``) and provider at the point's
time, at the model's base rates (a histogram does not say which calls reached a long-context
tier), and adds to the same series as spans do.

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
TEAM, PROJECT = "genops.team", "genops.project"
TOKEN_TYPE = "gen_ai.token.type"
CUMULATIVE = 2  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
# gen_ai.token.type values, and the series they add to. Cached and reasoning tokens are part
# of input and output in the GenAI convention, so only those two are priced.
TOKEN_TYPES = {"input": "input", "output": "output"}
_SERIES_LIMIT = 100_000  # cumulative series remembered; the oldest is forgotten first


@dataclass(slots=True)
class _Last:
    start_ns: int
    total: float
    count: int


def resource_identity(resource) -> frozenset:
    """The resource's attributes as a set: the same service instance sends the same set
    with its spans and its metrics, in whatever order."""
    return frozenset((kv.key, kv.value.SerializeToString()) for kv in resource.attributes)


class UsageMetrics:
    """Reads usage histograms into an ``Aggregator``'s series."""

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
            usage = [m for sm in rm.scope_metrics for m in sm.metrics
                     if m.name == USAGE and m.WhichOneof("data") == "histogram"]
            if not usage:
                continue
            identity = resource_identity(rm.resource)
            senders.add(identity)
            resource = {kv.key: to_python(kv.value) for kv in rm.resource.attributes}
            for metric in usage:
                cumulative = metric.histogram.aggregation_temporality == CUMULATIVE
                for point in metric.histogram.data_points:
                    self._point(identity, resource, point, cumulative, identity in skip_first_of)
        return senders

    def _point(self, identity, resource: dict, point, cumulative: bool, baseline_only: bool) -> None:
        attributes = {kv.key: to_python(kv.value) for kv in point.attributes}
        role = TOKEN_TYPES.get(attributes.get(TOKEN_TYPE))
        if role is None:
            return
        total, count = point.sum, point.count
        if not (total >= 0 and total == total and count >= 0):  # not a number, or negative: adds nothing
            return
        if cumulative:
            key = (identity, tuple(sorted((kv.key, kv.value.SerializeToString()) for kv in point.attributes)))
            last = self.last.get(key)
            if last is not None and last.start_ns == point.start_time_unix_nano and total >= last.total:
                total, count = total - last.total, max(0, count - last.count)
                last.total, last.count = point.sum, point.count
                self.last.move_to_end(key)
            else:
                first = last is None
                self.last[key] = _Last(point.start_time_unix_nano, point.sum, point.count)
                if len(self.last) > _SERIES_LIMIT:
                    self.last.popitem(last=False)
                if first and (baseline_only or not point.start_time_unix_nano >= self.started_ns):
                    return  # a baseline: what it holds was counted elsewhere, or before we started
        elif baseline_only:
            return
        if total == 0 and count == 0:
            return
        self._add(attributes, resource, role, total, count, point.time_unix_nano)

    def _add(self, attributes: dict, resource: dict, role: str, tokens: float, calls: int, at_ns: int) -> None:
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
        model = first(dialects.MODEL)
        provider = first((keys.ACTUAL_PROVIDER,) + dialects.PROVIDER)
        extra = tuple((name, label(str(attributes.get(name) or resource.get(name) or default or "")))
                      for name, default in aggregator.extra)
        cost_key = (("genops.team", team), ("genops.project", project), ("genops.model", model),
                    ("genops.openrouter.actual_provider", provider)) + extra
        aggregator.add_to("tokens", cost_key + (("token_type", role),), tokens)
        if role == "input":
            status = "500" if attributes.get("error.type") else "200"
            aggregator.add_to("requests", cost_key + (("http.status_code", status),), calls)
        models = tuple(m for m in (attributes.get(k) for k in dialects.MODEL) if isinstance(m, str) and m)
        rates = self.book.rates_in_force(models, provider or None, at_ns)[0] if models else None
        if rates is None:
            self.unpriced += 1
            return
        aggregator.add_to("cost", cost_key, tokens * (rates.input if role == "input" else rates.output)
                          + (calls * rates.request if role == "input" else 0.0))
