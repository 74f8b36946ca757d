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

Speed: the same services send the same series export after export, so what a point's
attributes decide (its series, its labels, the kind of call it belongs to and that call's
cells and rates) is worked out once and kept. Whether a metric's points still carry the same
attributes is seen without building them: ``relay.points.histograms`` walks the request's wire
form once and gives each metric's point attributes (raw bytes) and bucket bounds as its shape,
with only the numbers read out. A metric whose shape matches the last one runs its kept plan
(``plans.py``: natively where the extension is built) over those numbers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from operator import add, sub

from relay import points
from relay.attrs import to_python
from relay.connectors.genops_metrics.plans import CONFLICT, NATIVE, ROLE_INDEX, ROLES, Last, Plans
from relay.genai import dialects, keys

USAGE = "gen_ai.client.token.usage"
DURATION = "gen_ai.client.operation.duration"
_READ = (USAGE, DURATION)
_NAMES, _WITH_BUCKETS = tuple(name.encode() for name in _READ), (False, True)
TEAM, PROJECT = "genops.team", "genops.project"
TOKEN_TYPE = "gen_ai.token.type"
CUMULATIVE = 2  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
# gen_ai.token.type values, and the roles they count as: the convention's input and output,
# and the cache and reasoning types where an instrumentation reports them, under this
# project's names. Cache and reasoning counts are part of input and output (inclusive), as on spans.
TOKEN_TYPES = {"input": "input", "output": "output", "cache_read": "cache_read", "cache_write": "cache_write",
               "reasoning": "reasoning"}
_SERIES_LIMIT = 100_000  # cumulative series remembered; the oldest is forgotten first
_NONE = (0, 0)
# Bounds on what is kept to save work: resources (and a resource this large is not kept), the
# attributes of metrics, and kinds of call.
_RESOURCES_CACHED = 1024
_CACHEABLE = 8 * 1024
_SHAPES_CACHED = 8192
_SHAPES_BYTES = 16 << 20  # of attributes remembered in all; then they are forgotten and learnt again
_CALLS_CACHED = 8192
_UNKNOWN = object()  # a price book version no lookup has seen


def resource_identity(resource) -> frozenset:
    """The resource's attributes as a set: the same service instance sends the same set
    with its spans and its metrics, in whatever order."""
    return frozenset((kv.key, kv.value.SerializeToString()) for kv in resource.attributes)


def _series_attributes(point) -> bytes:
    """The point's attributes in any order, as the last part of its series' key (one value, so
    that looking a series up does not hash every attribute again)."""
    parts = []
    for key, value in sorted((kv.key, kv.value.SerializeToString()) for kv in point.attributes):
        name = key.encode()
        parts += (len(name).to_bytes(4, "little"), name, len(value).to_bytes(4, "little"), value)
    return b"".join(parts)


class _Call:
    """One kind of call (labels, models, status): the cells it adds to, each found once, and
    the rates last in force for it with the period they hold for."""

    __slots__ = ("labels", "models", "status", "cost_key", "cells", "rates", "since", "until", "version", "slot")
    # Where each cell is in ``cells``: a token role's at its index in ROLES, then requests and cost.
    REQUESTS, COST = len(ROLES), len(ROLES) + 1

    def __init__(self, labels: tuple, models: tuple, status: str):
        team, project, model, provider, extra = labels
        self.labels, self.models, self.status = labels, models, status
        self.cost_key = (("genops.team", team), ("genops.project", project), ("genops.model", model),
                         ("genops.openrouter.actual_provider", provider)) + extra
        self.cells: list = [None] * (len(ROLES) + 2)
        self.rates, self.since, self.until, self.version = None, 0, 0, _UNKNOWN

    def add(self, aggregator, at: int, amount) -> None:
        """What ``aggregator.add_to`` does to the ``at``-th cell, found on first use."""
        found = self.cells[at]
        metric = "tokens" if at < _Call.REQUESTS else "requests" if at == _Call.REQUESTS else "cost"
        if found is None:
            key = self.cost_key
            if metric == "tokens":
                key += (("token_type", ROLES[at]),)
            else:  # requests and cost carry the same labels, as the spans' do (see aggregate)
                key += (("http.status_code", self.status),)
            found = self.cells[at] = aggregator.sums[metric].cell(key)
        cell, overflowed = found
        cell[0] += amount
        if overflowed:
            aggregator.overflowed[metric] += 1

    def rates_at(self, book, at_ns: int):
        version = book.data_version()
        if version is not self.version or not self.since <= at_ns < self.until:
            self.rates, self.since, self.until = book.rates_in_force(self.models, self.labels[3] or None, at_ns)
            self.version = version
        return self.rates


class _Durations:
    """The request duration cell of one set of labels, found on first use as
    ``Aggregator.add_durations`` finds it, and where each bucket of points with one set of
    bounds goes in it (the first of ours that holds its upper bound). Bucket counts and counts
    wait in ``waiting`` until the request is read: they are integers, so only sums are added
    point by point, in order."""

    __slots__ = ("key", "moves", "found", "waiting", "slot")

    def __init__(self, labels: tuple, moves: tuple):
        team, _, model, provider, extra = labels
        self.key = (("genops.team", team), ("genops.model", model),
                    ("genops.openrouter.actual_provider", provider)) + extra
        self.moves = moves
        self.found = None
        self.waiting = None  # [bucket counts, count]

    def settle(self) -> None:
        buckets, count = self.waiting
        self.waiting = None
        self.count_in(buckets, count)

    def count_in(self, buckets, count: int) -> None:
        cell = self.found[0]
        ours, moves, beyond = cell[0], self.moves, len(self.moves) - 1
        for index, observed in enumerate(buckets):
            if observed:
                ours[moves[min(index, beyond)]] += observed
        cell[2] += count


class UsageMetrics:
    """Reads usage and duration histograms into an ``Aggregator``'s series."""

    def __init__(self, aggregator, price_book, started_ns: int, native: bool = NATIVE):
        self.aggregator = aggregator
        self.book = price_book
        self.started_ns = started_ns
        self.last: OrderedDict[tuple, Last] = OrderedDict()
        self.unpriced = 0  # usage points whose model has no price
        self.forgotten = 0  # cumulative series forgotten for the limit (_SERIES_LIMIT)
        self._resources: dict[tuple, tuple] = {}  # raw resource -> (identity, attributes)
        self._shapes: dict[tuple, tuple] = {}  # (raw resource, place) -> (name, attributes, what they decide)
        self._kept = 0  # bytes of attributes in _shapes
        self._calls: dict[tuple, _Call] = {}
        self._durations_of: dict[tuple, _Durations] = {}
        self._waiting: list[_Durations] = []  # with buckets and counts not yet in their cells
        self.plans = Plans(self.last) if native and NATIVE else None

    def add(self, request, skip_first_of=frozenset()) -> set:
        """Prices every usage point of ``request``; returns the identities of the resources
        that sent usage. A resource in ``skip_first_of`` adds only increases past what its
        first points hold (its calls until then were counted from its spans)."""
        senders = set()
        shapes = self._shapes
        for at, (raw, metrics) in enumerate(points.histograms(request, _NAMES, _WITH_BUCKETS)):
            if not any(metric[2] == 0 for metric in metrics):
                continue  # durations alone say nothing of cost: the instance's spans still count
            identity, resource = self._resource(raw, request, at)
            senders.add(identity)
            baseline_only = identity in skip_first_of
            calls: dict[tuple, dict] = {}  # the usage of one kind of call at one time, by role
            for place, (scope, index, which, temporality, shape, numbers, count) in enumerate(metrics):
                name = _READ[which]
                cumulative = temporality == CUMULATIVE
                known = shapes.get((raw, place))  # self._known, inline: this runs per metric
                if known is not None and (known[0] != name or known[1] != shape):
                    known = None
                if known is not None and known[3] is not None and \
                        self._planned(known, numbers, count, cumulative, baseline_only):
                    continue
                decided = known[2] if known is not None else self._decided(
                    raw, place, name, shape, count, identity, resource,
                    request.resource_metrics[at].scope_metrics[scope].metrics[index])
                if self.plans is not None:
                    for found in decided:  # their states come back to self.last first
                        holder = self.plans.owner.get(found[0]) if found is not None else None
                        if holder is not None:
                            self.plans.spill(holder)
                rows = points.rows(numbers, name == DURATION)
                if name == USAGE:
                    self._usage(rows, decided, cumulative, baseline_only, calls)
                else:
                    self._durations(rows, decided, cumulative, baseline_only)
                known = self._known(raw, place, name, shape)
                if known is not None and self.plans is not None:
                    known[3] = self.plans.build(decided, numbers, name == DURATION)
            for (call, at_ns), roles in calls.items():
                self._add(call, sum(1 << ROLE_INDEX[role] for role in roles),
                          [roles.get(role, _NONE)[0] for role in ROLES],
                          [roles.get(role, _NONE)[1] for role in ROLES], at_ns)
        for durations in self._waiting:
            durations.settle()
        self._waiting.clear()
        if self.plans is not None:
            self._add_planned()
        return senders

    def _known(self, raw: bytes, place: int, name: str, shape: bytes) -> list | None:
        """[name, shape, what its points decide, plan] of the metric last seen at this place of
        this resource, if it had the same name and shape."""
        known = self._shapes.get((raw, place))
        return known if known is not None and known[0] == name and known[1] == shape else None

    def _planned(self, known: list, numbers: bytes, count: int, cumulative: bool, baseline_only: bool) -> bool:
        """Whether the metric was added by its plan (``plans``)."""
        plan = known[3]
        if plan is None or not plan.live:
            return False
        cut = self.plans.run(plan, numbers, count, cumulative, baseline_only, self.started_ns)
        if cut == CONFLICT:
            self._add_planned()
            cut = self.plans.run(plan, numbers, count, cumulative, baseline_only, self.started_ns)
        if cut < 0:  # REPLAN: read point by point, then planned again
            self.plans.spill(plan)
            known[3] = None
            return False
        self.aggregator.truncated += cut
        return True

    def _add_planned(self) -> None:
        """Prices and adds what the plans' records hold, and starts them over."""
        aggregator = self.aggregator
        for call, mask, tokens, calls, at_ns in self.plans.usage():
            self._add(call, mask, tokens, calls, at_ns)
        for durations, total, count, added, buckets in self.plans.duration_records():
            if durations.found is None:
                durations.found = aggregator.durations.cell(durations.key)
            cell, overflowed = durations.found
            cell[1] += total
            if overflowed:
                aggregator.overflowed["request.duration"] += added
            durations.count_in(buckets, count)
        self.plans.next_generation()

    def _resource(self, raw: bytes, request, at: int) -> tuple:
        """(identity, attributes) of the request's ``at``-th resource, kept by its raw bytes."""
        known = self._resources.get(raw)
        if known is None:
            resource = request.resource_metrics[at].resource
            known = (resource_identity(resource), {kv.key: to_python(kv.value) for kv in resource.attributes})
            if len(raw) <= _CACHEABLE:
                if len(self._resources) >= _RESOURCES_CACHED:
                    self._resources.clear()
                self._resources[raw] = known
        return known

    def _decided(self, raw: bytes, place: int, name: str, shape: bytes, count: int, identity, resource,
                 metric) -> list:
        """What each point's attributes decide (``_decide``), kept for this place of this
        resource with the points' shape."""
        data_points = metric.histogram.data_points
        if len(data_points) != count:
            raise ValueError("the metric's points do not line up with its wire form")
        decided = [self._decide(point, name, identity, resource) for point in data_points]
        if raw in self._resources and len(shape) <= _SHAPES_BYTES // 64:
            key = (raw, place)
            if ((key not in self._shapes and len(self._shapes) >= _SHAPES_CACHED)
                    or self._kept + len(shape) > _SHAPES_BYTES):
                self._forget_shapes()
            old = self._shapes.get(key)
            if old is not None and old[3] is not None:
                self.plans.spill(old[3])
            self._kept += len(shape)
            self._shapes[key] = [name, shape, decided, None]
        return decided

    def _forget_shapes(self) -> None:
        if self.plans is not None:
            self.plans.spill_all()
        self._shapes.clear()
        self._kept = 0

    def _decide(self, point, name: str, identity, resource) -> tuple | None:
        """(series key, label values cut to the cap, the kind of call or the duration labels,
        token role) of a point; None for a usage point of no token type counted."""
        attributes = {kv.key: to_python(kv.value) for kv in point.attributes}
        role = None
        if name == USAGE:
            role = TOKEN_TYPES.get(attributes.get(TOKEN_TYPE))
            if role is None:
                return None
        aggregator = self.aggregator
        before = aggregator.truncated
        labels = self._labels(attributes, resource)
        cut, aggregator.truncated = aggregator.truncated - before, before  # counted when the point adds
        series = (identity, name, _series_attributes(point))
        if role is None:
            ours = self.aggregator.bounds
            moves = tuple(min(len(ours), bisect_left(ours, upper))
                          for upper in list(point.explicit_bounds) + [float("inf")])
            durations = self._durations_of.get((labels, moves))
            if durations is None:
                if len(self._durations_of) >= _CALLS_CACHED:
                    self._forget_calls()
                durations = self._durations_of[(labels, moves)] = _Durations(labels, moves)
                if self.plans is not None:
                    durations.slot = self.plans.slot(durations, True)
            return series, cut, durations, None
        models = tuple(m for m in (attributes.get(k) for k in dialects.MODEL) if isinstance(m, str) and m)
        status = "500" if attributes.get("error.type") else "200"
        call = self._calls.get((labels, models, status))
        if call is None:
            if len(self._calls) >= _CALLS_CACHED:
                self._forget_calls()
            call = self._calls[(labels, models, status)] = _Call(labels, models, status)
            if self.plans is not None:
                call.slot = self.plans.slot(call, False)
        return series, cut, call, role

    def _forget_calls(self) -> None:
        """Kinds of call and duration cells are learnt again; plans made with them are dropped
        (their slots go), and so are the shapes whose decisions name them."""
        if self.plans is not None:
            self._add_planned()
        self._forget_shapes()
        if self.plans is not None:
            self.plans.forget()
        self._calls.clear()
        self._durations_of.clear()

    def _usage(self, rows: list, decided: list, cumulative: bool, baseline_only: bool, calls: dict) -> None:
        """Groups the usage points' increases by kind of call and time, by role."""
        aggregator = self.aggregator
        for row, found in zip(rows, decided):
            if found is None:
                continue
            grown = self._grown(row, found[0], cumulative, baseline_only)
            if grown is None:
                continue
            total, count, _ = grown
            if found[1]:
                aggregator.truncated += found[1]
            group = calls.get(key := (found[2], row[1]))
            if group is None:
                group = calls[key] = {}
            role = found[3]
            tokens, calls_so_far = group.get(role, _NONE)
            group[role] = (tokens + total, calls_so_far + count)

    def _grown(self, row: tuple, series, cumulative: bool, baseline_only: bool) -> tuple | None:
        """(sum, count, bucket counts) a point adds, None for nothing. A usage point's row has
        how many buckets it has (only that is kept), a duration point's its bucket counts."""
        start, _, total, count, buckets = row
        if not (total >= 0 and total == total):  # not a number, or negative: adds nothing
            return None
        if cumulative:
            last_of = self.last
            kept = None if buckets.__class__ is int else buckets  # a duration series keeps its counts
            size = buckets if kept is None else len(buckets)
            last = last_of.get(series)
            if (last is not None and last.start_ns == start and total >= last.total and count >= last.count
                    and size == last.size):
                if kept is not None:
                    grown = list(map(sub, buckets, last.buckets))
                    if grown and min(grown) < 0:
                        grown = [max(0, observed) for observed in grown]
                    last.buckets, buckets = buckets, grown
                total, count, last.total, last.count = total - last.total, count - last.count, total, count
                last_of.move_to_end(series)
            else:
                last_of[series] = Last(start, total, count, size, kept)
                while len(last_of) > _SERIES_LIMIT:
                    self._forget_oldest()
                if last is None and (baseline_only or not start >= self.started_ns):
                    return None  # a baseline: what it holds was counted elsewhere, or before we started
        elif baseline_only:
            return None
        if total == 0 and count == 0:
            return None
        return total, count, buckets

    def _forget_oldest(self) -> None:
        """Forgets the series updated longest ago. Should it come back, it is a series we do not
        know, and its point must not add all it holds again: like a series older than the relay,
        it is a baseline. So series that started before the forgotten one's start are baselines
        from now on (a new series among them loses its first point: counted in ``forgotten``)."""
        _, last = self.last.popitem(last=False)
        self.forgotten += 1
        if last.start_ns >= self.started_ns:
            self.started_ns = last.start_ns + 1

    def _durations(self, rows: list, decided: list, cumulative: bool, baseline_only: bool) -> None:
        """Adds the duration points' increases to the request duration histogram, as
        ``Aggregator.add_durations`` would one by one: each sum in turn, and the bucket counts
        and counts (integers, so their order does not matter) summed per cell and bounds first."""
        aggregator = self.aggregator
        for row, found in zip(rows, decided):
            grown = self._grown(row, found[0], cumulative, baseline_only)
            if grown is None:
                continue
            total, count, buckets = grown
            if found[1]:
                aggregator.truncated += found[1]
            durations = found[2]
            if durations.found is None:
                durations.found = aggregator.durations.cell(durations.key)
            cell, overflowed = durations.found
            cell[1] += total
            if overflowed:
                aggregator.overflowed["request.duration"] += 1
            waiting = durations.waiting
            if waiting is None:
                durations.waiting = [buckets, count]
                self._waiting.append(durations)
            elif len(waiting[0]) == len(buckets):
                waiting[0] = list(map(add, waiting[0], buckets))
                waiting[1] += count
            else:
                durations.settle()
                durations.waiting = [buckets, count]

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

    def _add(self, call: _Call, mask: int, tokens, calls_of, at_ns: int) -> None:
        """Adds one kind of call's usage: ``tokens`` and ``calls_of`` by role in ROLES order, the
        roles reported set in ``mask``. Its token types go together, so that cached and reasoning
        tokens come out of input and output once, as a span's do."""
        aggregator = self.aggregator
        inputs, outputs, cache_read, cache_write, reasoning = tokens
        calls = calls_of[0] if mask & 1 else calls_of[1] if mask & 2 else 0
        cached = cache_read + cache_write
        if cached > inputs:  # counts that cannot be inclusive were exclusive
            inputs += cached
        if reasoning > outputs:
            outputs += reasoning
        inputs, outputs = inputs - cached, outputs - reasoning  # disjoint, as the token series are
        for at, count in enumerate((inputs, outputs, cache_read, cache_write, reasoning)):
            if count or mask >> at & 1:
                call.add(aggregator, at, count)
        if calls:
            call.add(aggregator, _Call.REQUESTS, calls)
        rates = call.rates_at(self.book, at_ns) if call.models else None
        if rates is None:
            self.unpriced += mask.bit_count()  # counted as points, as the counter says
            return
        # Base rates: a histogram's sum spans many calls, so no one call's long-context tier applies.
        cost = (inputs * rates.input + outputs * rates.output
                + cache_read * _or(rates.cache_read, rates.input)
                + cache_write * _or(rates.cache_write, rates.input)
                + reasoning * _or(rates.reasoning, rates.output) + calls * rates.request)
        call.add(aggregator, _Call.COST, float(cost))


def _or(rate: float | None, default: float) -> float:
    return default if rate is None else rate
