"""A flood of distinct customer ids: series stay under the limit plus one overflow, memory stays bounded."""

from __future__ import annotations

import random
import time
import urllib.request
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from relay import attrs
from relay.signals import Signal
from tests.support import RelayProcess, free_port

LIMIT = 500
CUSTOMERS = 100_000
PER_REQUEST = 1_000
# Resident memory the relay may gain while taking 100,000 distinct customer ids. What it keeps
# is bounded by the limit (series, plans and caches all have caps); the allowance covers the
# allocator keeping freed request memory and caches filling to their caps.
RSS_GROWTH_BOUND_MB = 30  # measured here: about 5 MB

CONFIG = """
receivers: {{otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}}}}}
processors: {{genops: {{}}}}
connectors:
  genops_metrics:
    metrics_flush_interval: 1s
    aggregation_cardinality_limit: {limit}
    dimensions: [{{name: genops.customer_id}}]
exporters:
  prometheus: {{endpoint: "127.0.0.1:{prom_port}", namespace: genops_openrouter}}
extensions: {{health_check: {{endpoint: "127.0.0.1:{health}"}}}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], processors: [genops], exporters: [genops_metrics]}}
    metrics: {{receivers: [genops_metrics], exporters: [prometheus]}}
  telemetry: {{metrics: {{level: none}}, logs: {{level: warn}}}}
"""


def batch(first_customer: int, count: int, rng: random.Random) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for customer in range(first_customer, first_customer + count):
        span = scope.spans.add(name="chat", trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                               start_time_unix_nano=1_767_225_600_000_000_000,
                               end_time_unix_nano=1_767_225_601_000_000_000)
        for key, value in (("gen_ai.request.model", "openai/gpt-4o"), ("genops.team", "growth"),
                           ("genops.customer_id", f"customer-{customer:06d}"),
                           ("gen_ai.usage.input_tokens", 100), ("gen_ai.usage.output_tokens", 10)):
            attrs.put(span.attributes, key, value)
    return request.SerializeToString()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def series(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        counts[family.name] = len({tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                                   for s in family.samples})
    return counts


def test_a_hundred_thousand_customers(tmp_path):
    ports = {name: free_port() for name in ("port", "prom_port", "health")}
    relay = RelayProcess(CONFIG.format(limit=LIMIT, **ports), tmp_path, ports["health"]).start()
    rng = random.Random(9)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{ports['port']}") as channel:
            export = channel.unary_unary(Signal.TRACES.method)
            export(batch(0, PER_REQUEST, rng), timeout=30)  # warm up: code paths, caches, first series
            before = rss_mb(relay.process.pid)
            for first in range(PER_REQUEST, CUSTOMERS, PER_REQUEST):
                export(batch(first, PER_REQUEST, rng), timeout=30)
            after = rss_mb(relay.process.pid)

        counts = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the last flush lands within a second
            counts = series(ports["prom_port"])
            if counts.get("genops_openrouter_requests", 0) > LIMIT:
                break
            time.sleep(0.5)
        for name in ("genops_openrouter_requests", "genops_openrouter_cost",
                     "genops_openrouter_request_duration_seconds"):
            assert counts[name] == LIMIT + 1, (name, counts[name])  # the limit, plus the overflow series
        # tokens: one series per key and token type, capped the same way
        assert counts["genops_openrouter_tokens"] <= LIMIT + 1
        print(f"RSS {before:.1f} MB -> {after:.1f} MB")
        assert after - before < RSS_GROWTH_BOUND_MB, f"RSS grew {after - before:.1f} MB"
    finally:
        assert relay.stop() == 0
