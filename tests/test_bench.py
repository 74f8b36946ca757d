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
