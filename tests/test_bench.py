"""The benchmark runs end to end and its figures are consistent (no speed is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

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
