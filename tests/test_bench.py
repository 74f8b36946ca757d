"""The benchmark runs end to end and its figures are consistent (no speed is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT


def test_bench_reports_relay_rate_next_to_the_ceiling():
    out = subprocess.run(
        [sys.executable, "-m", "relay", "bench", "--json", "--duration", "1", "--warmup", "0.5",
         "--spans-per-request", "64", "--concurrency", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["errors"] == {}
    assert result["relay_exit_status"] == 0
    assert result["spans_per_request"] == 64
    assert result["acked_requests"] > 0
    # Everything the relay acknowledged had reached the sink first.
    assert result["sink_requests"] >= result["acked_requests"]
    expected = result["acked_requests"] * 64 / result["duration_s"]
    assert abs(result["relay_spans_per_s"] - expected) <= 0.01 * expected + 1
    assert result["ratio"] == round(result["relay_spans_per_s"] / result["ceiling_spans_per_s"], 3)
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]


def test_the_dialect_payload_holds_every_dialect_and_unique_call_ids():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from relay import attrs
    from relay.bench.payload import llm_spans, numbered

    request = llm_spans(512, payload="dialects")
    keys = {kv.key for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans
            for kv in span.attributes}
    # One key only its dialect writes, for each row of the table that has one.
    for key in ("llm.token_count.prompt", "gen_ai.usage.raw", "gen_ai.usage.cost", "gen_ai.usage.total_cost",
                "genops.tokens.input", "gen_ai.usage.reasoning_tokens"):
        assert key in keys, key
    data = request.SerializeToString()
    ids = []
    for number in (0, 1):
        copy = ExportTraceServiceRequest.FromString(numbered(data, number))
        ids += [attrs.get(span.attributes, "gen_ai.response.id") for rs in copy.resource_spans
                for ss in rs.scope_spans for span in ss.spans]
    ids = [i for i in ids if i]
    assert len(ids) > 100 and len(set(ids)) == len(ids)


def test_bench_runs_the_dialect_payload_through_genops():
    out = subprocess.run(
        [sys.executable, "-m", "relay", "bench", "--json", "--duration", "1", "--warmup", "0.5", "--pipeline",
         "genops", "--payload", "dialects", "--spans-per-request", "64", "--concurrency", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["payload"] == "dialects" and result["errors"] == {} and result["acked_requests"] > 0
    assert result["genops_us_per_span"] > 0


def test_bench_runs_genai_usage_metrics_through_genops_and_the_connector():
    out = subprocess.run(
        [sys.executable, "-m", "relay", "bench", "--json", "--signal", "metrics", "--pipeline", "genops-metrics",
         "--duration", "1", "--warmup", "0.5", "--points-per-request", "64", "--concurrency", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["signal"] == "metrics" and result["payload"] == "genai-usage"
    assert "cost_from: metrics" in result["config"] and "spans_per_request" not in result
    assert result["errors"] == {} and result["relay_exit_status"] == 0 and result["acked_requests"] > 0
    assert result["sink_requests"] >= result["acked_requests"]
    points = result["points_per_request"]
    assert 64 <= points <= 66  # whole calls
    expected = result["acked_requests"] * points / result["duration_s"]
    assert abs(result["relay_points_per_s"] - expected) <= 0.01 * expected + 1
    assert result["ratio"] == round(result["relay_points_per_s"] / result["ceiling_points_per_s"], 3)
    assert result["genops_us_per_point"] > 0 and result["genops_metrics_us_per_point"] > 0


def test_the_usage_payload_is_the_instrumentations_shape_and_grows_export_by_export():
    import asyncio
    import time

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from relay import attrs
    from relay.bench.usage_payload import DURATION_BUCKETS, TOKEN_BUCKETS, Stream, usage_request
    from tests.test_genops_metrics import connector, flushed, points

    request, count = usage_request(100)
    assert 100 <= count <= 102
    data = request.SerializeToString()
    now = time.time_ns()
    streams = [Stream(data, worker, now) for worker in (0, 1)]
    exports = [[ExportMetricsServiceRequest.FromString(stream.next(now + n)) for n in (1, 2, 3)]
               for stream in streams]
    first = exports[0][0]
    models, shapes = set(), set()
    for rm in first.resource_metrics:
        assert {"service.name", "service.instance.id"} <= {kv.key for kv in rm.resource.attributes}
        (sm,) = rm.scope_metrics
        assert sm.scope.name == "opentelemetry.instrumentation.openai_v2"
        by_name = {metric.name: metric for metric in sm.metrics}
        assert set(by_name) == {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"}
        for name, bounds in (("gen_ai.client.operation.duration", DURATION_BUCKETS),
                             ("gen_ai.client.token.usage", TOKEN_BUCKETS)):
            histogram = by_name[name].histogram
            assert histogram.aggregation_temporality == 2  # cumulative
            for point in histogram.data_points:
                assert list(point.explicit_bounds) == list(bounds) and point.count == sum(point.bucket_counts)
                values = {kv.key: attrs.to_python(kv.value) for kv in point.attributes}
                models.add(values["gen_ai.request.model"])
                shapes.add(tuple(sorted(values.items())))
    assert len(models) >= 4 and len(shapes) >= 10
    # Each worker has instances of its own; export k holds k intervals' worth in every series.
    ids = [{attrs.get(rm.resource.attributes, "service.instance.id") for rm in worker[0].resource_metrics}
           for worker in exports]
    assert not ids[0] & ids[1]
    sums = [[point.sum for rm in export.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
             for point in metric.histogram.data_points] for export in exports[0]]
    assert all(b == 2 * a and c == 3 * a for a, b, c in zip(*sums))

    # The connector prices every export's increase, not only the first.
    made, sink = connector({"cost_from": "metrics"})
    made.usage.started_ns = now - 1
    costs = []
    for export in exports[0]:
        asyncio.run(made.consume(export))
        costs.append(sum(points(flushed(made, sink))["cost"].values()))
    assert 0 < costs[0] < costs[1] < costs[2]
    assert costs[1] == pytest.approx(2 * costs[0]) and costs[2] == pytest.approx(3 * costs[0])


def test_the_budget_check_scenario_measures_hits_and_misses_next_to_a_ceiling():
    out = subprocess.run(
        [sys.executable, "-m", "relay", "bench", "--json", "--scenario", "budget-check", "--requests", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["scenario"] == "budget-check" and result["requests"] == 20
    assert result["passed"] is True and result["errors"] == {} and result["relay_exit_status"] == 0
    # 50 seeded rows of 0.25 USD, every answer decided by the project budget that counts them.
    assert result["expected_spent_usd"] == 12.5 and result["wrong_answers"] == 0
    for name in ("ceiling_ms", "check_hit_ms", "check_miss_ms"):
        figures = result[name]
        assert 0 < figures["p50"] <= figures["p99"] <= figures["max"], name
    for kind in ("hit", "miss"):
        assert result[f"ratio_{kind}"] == round(result["ceiling_ms"]["p50"] / result[f"check_{kind}_ms"]["p50"], 3)
