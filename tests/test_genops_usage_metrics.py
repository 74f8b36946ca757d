"""Cost from gen_ai.client.token.usage in the genops_metrics connector: temporality, and no
call counted twice when an app sends spans and usage metrics alike (cost_from)."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from relay import attrs
from relay.config.decode import decode
from relay.connectors import genops_metrics
from tests.test_genops_metrics import START, connector, flushed, points, spans_request

# Rates written here, per million tokens, so expected costs never come from the code under test.
PRICING = {"overrides": [{"model": "openai/gpt-4o", "input": 2.5, "output": 10.0}]}
IN, OUT = 2.5e-6, 10e-6
CUMULATIVE, DELTA = 2, 1
SECOND = 1_000_000_000
RESOURCE = {"service.name": "chat", "service.instance.id": "pod-1", "genops.team": "search"}


def usage(points_: list[tuple[str, float, int]], temporality: int = CUMULATIVE, start: int = START + SECOND,
          at: int = START + 10 * SECOND, resource: dict | None = None) -> ExportMetricsServiceRequest:
    """One gen_ai.client.token.usage histogram: (token type, sum, count) per point."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    for key, value in (resource or RESOURCE).items():
        attrs.put(rm.resource.attributes, key, value)
    metric = rm.scope_metrics.add().metrics.add(name="gen_ai.client.token.usage", unit="{token}")
    metric.histogram.aggregation_temporality = temporality
    for token_type, total, count in points_:
        point = metric.histogram.data_points.add(start_time_unix_nano=start, time_unix_nano=at, sum=total,
                                                 count=count)
        for key, value in {"gen_ai.token.type": token_type, "gen_ai.request.model": "openai/gpt-4o",
                           "gen_ai.response.model": "openai/gpt-4o", "gen_ai.system": "openai"}.items():
            attrs.put(point.attributes, key, value)
    return request


def made(cost_from: str = "metrics"):
    connector_, sink = connector({"cost_from": cost_from, "pricing": PRICING})
    if connector_.usage is not None:
        connector_.usage.started_ns = START
    return connector_, sink


def totals(connector_, sink) -> dict:
    """Each sum's total over its series (tokens by token type); {} when nothing was flushed."""
    asyncio.run(connector_.flush())
    if not sink.requests:
        return {}
    out = {}
    for name, table in points(flushed(connector_, sink)).items():
        for key, value in table.items():
            if isinstance(value, tuple):
                continue  # a histogram
            label = dict(key).get("token_type", "")
            name_ = name + (f":{label}" if label else "")
            out[name_] = out.get(name_, 0) + value
    return out


def send(connector_, *requests):
    async def go():
        for request in requests:
            await connector_.consume(request)
    asyncio.run(go())


# (what the app exports, in order) -> (input tokens, output tokens, calls) the counters must show
TEMPORALITY = {
    "cumulative, first point after start: all of it": (
        [usage([("input", 1000, 2), ("output", 200, 2)])], (1000, 200, 2)),
    "cumulative, increases priced once": (
        [usage([("input", 1000, 2), ("output", 200, 2)]),
         usage([("input", 1000, 2), ("output", 200, 2)], at=START + 20 * SECOND),   # nothing new
         usage([("input", 1500, 3), ("output", 260, 3)], at=START + 30 * SECOND)], (1500, 260, 3)),
    "cumulative, series older than the relay: a baseline": (
        [usage([("input", 9000, 9), ("output", 900, 9)], start=START - SECOND),
         usage([("input", 9400, 10), ("output", 950, 10)], start=START - SECOND, at=START + 20 * SECOND)],
        (400, 50, 1)),
    "cumulative, reset (new start time): starts over, no negative step": (
        [usage([("input", 1000, 2), ("output", 200, 2)]),
         usage([("input", 300, 1), ("output", 30, 1)], start=START + 15 * SECOND, at=START + 20 * SECOND)],
        (1300, 230, 3)),
    "cumulative, a value below the last: a reset too": (
        [usage([("input", 1000, 2), ("output", 200, 2)]),
         usage([("input", 100, 1), ("output", 10, 1)], at=START + 20 * SECOND)], (1100, 210, 3)),
    "cumulative, a series that stops and comes back": (
        [usage([("input", 1000, 2), ("output", 200, 2)]),
         usage([("output", 200, 2)], at=START + 20 * SECOND),                       # input absent
         usage([("input", 1200, 3), ("output", 240, 3)], at=START + 30 * SECOND)], (1200, 240, 3)),
    "delta: each point as it is": (
        [usage([("input", 1000, 2), ("output", 200, 2)], temporality=DELTA),
         usage([("input", 500, 1), ("output", 50, 1)], temporality=DELTA, at=START + 20 * SECOND)],
        (1500, 250, 3)),
}


@pytest.mark.parametrize("name", list(TEMPORALITY))
def test_temporality(name):
    exports, (tokens_in, tokens_out, calls) = TEMPORALITY[name]
    connector_, sink = made()
    send(connector_, *exports)
    got = totals(connector_, sink)
    assert got.get("tokens:input", 0) == tokens_in and got.get("tokens:output", 0) == tokens_out
    assert got.get("requests", 0) == calls
    assert got.get("cost", 0.0) == pytest.approx(tokens_in * IN + tokens_out * OUT, rel=1e-12)


def test_the_cost_counter_only_grows_across_a_reset():
    connector_, sink = made()
    seen = []
    for export in TEMPORALITY["cumulative, reset (new start time): starts over, no negative step"][0]:
        send(connector_, export)
        seen.append(totals(connector_, sink)["cost"])
    assert seen == sorted(seen) and seen[0] > 0


def priced_spans(count: int):
    """What the genops processor leaves on a span of the same calls: cost and tokens."""
    request = spans_request([({"genops.team": "search", "genops.model": "openai/gpt-4o",
                               "gen_ai.usage.input_tokens": 500, "gen_ai.usage.output_tokens": 100,
                               "genops.cost.total": 500 * IN + 100 * OUT}, 0.5, False)] * count)
    for key, value in RESOURCE.items():
        attrs.put(request.resource_spans[0].resource.attributes, key, value)
    return request


ONE_COPY = 2 * (500 * IN + 100 * OUT)


@pytest.mark.parametrize("cost_from, order", [("traces", "spans first"), ("metrics", "spans first"),
                                              ("auto", "spans first"), ("auto", "metrics first")])
def test_an_app_sending_spans_and_usage_is_charged_once(cost_from, order):
    """Two calls, seen as two priced spans and as usage points worth the same."""
    connector_, sink = made(cost_from)
    calls = [priced_spans(2), usage([("input", 1000, 2), ("output", 200, 2)])]
    send(connector_, *(calls if order == "spans first" else calls[::-1]))
    # Later calls, again both ways: one more call.
    send(connector_, priced_spans(1), usage([("input", 1500, 3), ("output", 300, 3)], at=START + 20 * SECOND))
    got = totals(connector_, sink)
    assert got["cost"] == pytest.approx(ONE_COPY * 1.5, rel=1e-12)
    assert got["requests"] == 3


def test_traces_is_the_default_and_metrics_are_then_ignored():
    config, problems = decode(genops_metrics.Config, {})
    assert problems == [] and config.cost_from == "traces"
    connector_, sink = connector()
    send(connector_, usage([("input", 1000, 2)]))
    assert totals(connector_, sink) == {}


def test_an_unpriced_model_counts_tokens_and_calls_but_no_cost():
    connector_, sink = made()
    request = usage([("input", 1000, 2), ("output", 10, 2)])
    for point in request.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points:
        for kv in point.attributes:
            if kv.key.endswith(".model"):
                kv.value.string_value = "acme/unknown"
    send(connector_, request)
    got = totals(connector_, sink)
    assert (got["tokens:input"], got["requests"], got.get("cost", 0.0)) == (1000, 2, 0.0)
    assert connector_.unpriced.labels("genops_metrics")._value.get() == 2


def test_ten_thousand_teams_stay_within_the_cardinality_limit():
    connector_, sink = connector({"cost_from": "metrics", "pricing": PRICING, "aggregation_cardinality_limit": 100})
    connector_.usage.started_ns = START
    request = ExportMetricsServiceRequest()
    for index in range(10_000):
        one = usage([("input", 10, 1)], resource={**RESOURCE, "genops.team": f"team-{index}"})
        request.resource_metrics.extend(one.resource_metrics)
    send(connector_, request)
    out = points(flushed(connector_, sink))
    assert len(out["cost"]) == 100 + 1  # the limit, and the one overflow series
    assert (("otel.metric.overflow", True),) in out["cost"]
    assert sum(out["requests"].values()) == 10_000  # nothing lost: the overflow series holds the rest
    assert connector_.overflow.labels("genops_metrics", "cost")._value.get() == 10_000 - 100


def test_operation_duration_feeds_the_request_duration_histogram():
    connector_, sink = made()
    request = usage([("input", 1000, 3), ("output", 200, 3)])
    scope = request.resource_metrics[0].scope_metrics[0]
    durations = scope.metrics.add(name="gen_ai.client.operation.duration", unit="s")
    durations.histogram.aggregation_temporality = CUMULATIVE
    # The instrumentation's own buckets: three calls of 0.03 s, 0.7 s and 3 s.
    point = durations.histogram.data_points.add(
        start_time_unix_nano=START + SECOND, time_unix_nano=START + 10 * SECOND, count=3, sum=3.73,
        explicit_bounds=[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12],
        bucket_counts=[0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0])
    for key, value in {"gen_ai.request.model": "openai/gpt-4o", "gen_ai.response.model": "openai/gpt-4o",
                       "gen_ai.system": "openai"}.items():
        attrs.put(point.attributes, key, value)
    send(connector_, request)
    ((key, (buckets, total, count)),) = points(flushed(connector_, sink))["request.duration"].items()
    assert dict(key)["genops.team"] == "search" and dict(key)["genops.model"] == "openai/gpt-4o"
    # Ours: 0.1, 0.25, 0.5, 1, 2.5, 5, ... Each lands in the first bucket holding its upper bound.
    assert buckets[:7] == [1, 0, 0, 0, 1, 0, 1] and sum(buckets) == 3  # (0.64, 1.28] -> 2.5; (2.56, 5.12] -> 10
    assert (total, count) == (pytest.approx(3.73), 3)


def test_cache_and_reasoning_types_are_priced_at_their_rates_once():
    connector_, sink = connector({"cost_from": "metrics", "pricing": {"overrides": [
        {"model": "openai/gpt-4o", "input": 2.5, "output": 10.0, "cache_read": 1.25, "reasoning": 12.0}]}})
    connector_.usage.started_ns = START
    send(connector_, usage([("input", 1000, 2), ("cache_read", 600, 2), ("output", 300, 2),
                            ("reasoning", 100, 2)]))
    got = totals(connector_, sink)
    # Disjoint, as spans give them: uncached input, cached input, output without reasoning, reasoning.
    assert (got["tokens:input"], got["tokens:cache_read"], got["tokens:output"], got["tokens:reasoning"]) == (
        400, 600, 200, 100)
    assert got["requests"] == 2
    assert got["cost"] == pytest.approx((400 * 2.5 + 600 * 1.25 + 200 * 10.0 + 100 * 12.0) / 1e6, rel=1e-12)


def random_exports(seed: int, steps: int = 30) -> list:
    """What a few instances export over time, with everything the series can do between exports:
    grow, stay, reset, fall, stop and come back, change shape, carry NaN, change temporality."""
    rng = random.Random(seed)
    bounds = [0.1, 0.5, 2.0]
    instances = [dict(RESOURCE, **{"service.instance.id": f"pod-{n}", "genops.team": team})
                 for n, team in enumerate(["search", "ads", "search"])]
    state: dict = {}  # (instance, series) -> (start, sum, count, buckets)
    exports = []
    for step in range(steps):
        request = ExportMetricsServiceRequest()
        at = START + (step + 2) * SECOND
        for n, resource in enumerate(instances):
            rm = request.resource_metrics.add()
            for key, value in resource.items():
                attrs.put(rm.resource.attributes, key, value)
            temporality = DELTA if n == 1 else CUMULATIVE
            if rng.random() < 0.05:
                temporality = DELTA + CUMULATIVE - temporality
            scope = rm.scope_metrics.add()
            used = scope.metrics.add(name="gen_ai.client.token.usage", unit="{token}")
            used.histogram.aggregation_temporality = temporality
            took = scope.metrics.add(name="gen_ai.client.operation.duration", unit="s")
            took.histogram.aggregation_temporality = temporality
            series = [(kind, model) for kind in ("input", "output", "cache_read", "reasoning", "other")
                      for model in ("openai/gpt-4o", "nobody/unpriced")]
            if rng.random() < 0.2:
                rng.shuffle(series)  # the same series in another order: another shape
            for kind, model in series + [("duration", "openai/gpt-4o"), ("duration", "nobody/unpriced")]:
                if rng.random() < 0.15:
                    continue  # this series stops for a while
                key = (n, kind, model)
                start, total, count, buckets = state.get(key, (START + SECOND, 0.0, 0, [0] * 4))
                if rng.random() < 0.08:
                    start, total, count, buckets = at - SECOND, 0.0, 0, [0] * 4  # a reset
                calls = rng.choice([0, 0, 1, 2, 5])
                grown = [rng.randint(0, calls) for _ in range(4)]
                total += calls * rng.choice([1, 10, 123, 1000]) * (0.01 if kind == "duration" else 1)
                count, buckets = count + calls, [a + b for a, b in zip(buckets, grown)]
                if rng.random() < 0.05:
                    total, count = total / 2, count // 2  # below the last: a reset without a new start
                state[key] = (start, total, count, buckets)
                sent = state[key] if temporality == CUMULATIVE else (at - SECOND, total, count, buckets)
                if temporality == DELTA:
                    state[key] = (start, 0.0, 0, [0] * 4)
                metric = took if kind == "duration" else used
                point = metric.histogram.data_points.add(start_time_unix_nano=sent[0], time_unix_nano=at,
                                                         sum=float("nan") if rng.random() < 0.03 else sent[1],
                                                         count=sent[2])
                if kind == "duration":
                    point.explicit_bounds.extend(bounds if rng.random() < 0.9 else bounds[:2])
                    point.bucket_counts.extend(sent[3][:len(point.explicit_bounds) + 1])
                for name, value in {"gen_ai.token.type": kind, "gen_ai.request.model": model,
                                    "gen_ai.system": "openai"}.items():
                    if name != "gen_ai.token.type" or kind != "duration":
                        attrs.put(point.attributes, name, value)
                if rng.random() < 0.05:
                    attrs.put(point.attributes, "error.type", "timeout")  # another kind of call, another shape
        exports.append(request)
    return exports


def flushed_points(connector_, sink) -> dict:
    asyncio.run(connector_.flush())
    return points(flushed(connector_, sink)) if sink.requests else {}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("small_caches", [False, True])
def test_native_and_python_pricing_paths_agree(seed, small_caches, monkeypatch):
    """Plans over the native walker, the point-by-point path over it, and pure Python: the same
    counters to 1e-9, through every kind of change a series goes through, and with caches so
    small that series, shapes and kinds of call are forgotten and learnt again."""
    from relay import points as walker
    from relay.connectors.genops_metrics import usage as usage_module

    if small_caches:
        # Not _SERIES_LIMIT: series held by plans are outside the remembered ones (test below).
        for name, size in (("_SHAPES_CACHED", 2), ("_CALLS_CACHED", 3), ("_RESOURCES_CACHED", 2)):
            monkeypatch.setattr(usage_module, name, size)
    exports = random_exports(seed)
    spans = priced_spans(3)  # instance pod-1 sends spans too: with auto its first usage is a baseline
    got = {}
    for path in ("plans", "walker", "python"):
        if path == "python":
            monkeypatch.setattr(walker, "_points", None)
        connector_, sink = made("auto")
        if path != "plans":
            connector_.usage.plans = None
        else:
            assert connector_.usage.plans is not None or not walker.NATIVE
        tables = []
        for step, export in enumerate(exports):
            send(connector_, *([spans, export] if step == 0 else [export]))
            if step in (0, 7, len(exports) - 1):
                tables.append(flushed_points(connector_, sink))
        got[path] = tables
    reference = got["python"]
    assert reference[-1]["cost"] and reference[-1]["requests"] and reference[-1]["request.duration"]
    for path in ("plans", "walker"):
        for ours, theirs in zip(got[path], reference):
            assert ours.keys() == theirs.keys()
            for name in theirs:
                assert ours[name].keys() == theirs[name].keys(), name
                for key, value in theirs[name].items():
                    assert _close(ours[name][key], value), (path, name, key, ours[name][key], value)


def _close(ours, theirs) -> bool:
    """Equal to 1e-9, element by element through nested sequences (a histogram's buckets, sum, count)."""
    if isinstance(theirs, (list, tuple)):
        return (isinstance(ours, (list, tuple)) and len(ours) == len(theirs)
                and all(_close(a, b) for a, b in zip(ours, theirs)))
    return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)


def test_counters_only_grow_through_random_changes():
    connector_, sink = made("metrics")
    seen = []
    for export in random_exports(99):
        send(connector_, export)
        table = flushed_points(connector_, sink)
        seen.append({(name, key): value for name in ("cost", "requests", "tokens")
                     for key, value in table.get(name, {}).items()})
    for before, after in zip(seen, seen[1:]):
        assert all(after.get(key, 0) >= value for key, value in before.items())


@pytest.mark.parametrize("path", ["plans", "walker", "python"])
def test_a_forgotten_series_is_not_counted_again(path, monkeypatch):
    """Past the series limit the oldest series is forgotten; when it comes back its point is a
    baseline, so the counters never hold more than with no limit, and the loss is counted."""
    from relay import points as walker
    from relay.connectors.genops_metrics import usage as usage_module

    def run(limit: int):
        monkeypatch.setattr(usage_module, "_SERIES_LIMIT", limit)
        connector_, sink = made("metrics")
        if path != "plans":
            connector_.usage.plans = None
        for export in random_exports(5):
            send(connector_, export)
        table = flushed_points(connector_, sink)
        return table, connector_.forgotten.labels("genops_metrics")._value.get()

    if path == "python":
        monkeypatch.setattr(walker, "_points", None)
    unlimited, none_forgotten = run(100_000)
    limited, forgotten = run(4)
    assert none_forgotten == 0 and forgotten > 0
    for name in ("cost", "requests", "tokens"):
        for key, value in limited[name].items():
            assert value <= unlimited[name][key] + 1e-12, (name, key)
    assert sum(limited["requests"].values()) < sum(unlimited["requests"].values())


def test_usage_cost_has_the_labels_of_requests_status_included():
    """As from spans: the guide's rate(cost_total) / rate(requests_total) must match one to one."""
    connector_, sink = made()
    failed = usage([("input", 400, 1), ("output", 40, 1)], temporality=DELTA)
    for point in failed.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points:
        attrs.put(point.attributes, "error.type", "timeout")
    send(connector_, usage([("input", 1000, 2), ("output", 200, 2)], temporality=DELTA), failed)
    asyncio.run(connector_.flush())
    got = points(flushed(connector_, sink))
    assert set(got["cost"]) == set(got["requests"])
    by_status = {dict(key)["http.status_code"]: value for key, value in got["cost"].items()}
    assert by_status == {"200": pytest.approx(1000 * IN + 200 * OUT, rel=1e-12),
                         "500": pytest.approx(400 * IN + 40 * OUT, rel=1e-12)}
