"""One client with megabyte-long model, team and attribute values cannot grow the relay's memory or /metrics.

Each trace request is one LLM span whose model and team are distinct 1 MiB strings; each
metrics request one counter point with a distinct 1 MiB attribute, for the prometheus exporter. Every value
that becomes a metric label, a cache key or a plan key is capped (relay.genai.bounds), so
after 30 such requests resident memory has grown by little, and a scrape stays small.
"""

from __future__ import annotations

import time
import urllib.request

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import attrs
from tests.e2e.test_cardinality import rss_mb
from tests.e2e.test_default_config import default_config_on_free_ports
from tests.support import RelayProcess

REQUESTS = 30
NAME_BYTES = 1024 * 1024
RSS_GROWTH_BOUND_MB = 50
METRICS_BOUND_BYTES = 1024 * 1024


def huge_span_request(index: int) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attrs.put(rs.resource.attributes, "service.name", "flooder")
    span = rs.scope_spans.add().spans.add(name="chat", trace_id=bytes([index + 1]) * 16, span_id=b"\x01" * 8,
                                          start_time_unix_nano=1_767_225_600_000_000_000,
                                          end_time_unix_nano=1_767_225_601_000_000_000)
    fill = chr(ord("a") + index % 26)
    for key, value in {"gen_ai.request.model": f"{index:04d}" + fill * NAME_BYTES,
                       "genops.team": f"{index:04d}" + fill.upper() * NAME_BYTES,
                       "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}.items():
        attrs.put(span.attributes, key, value)
    return request.SerializeToString()


def huge_metric_request(index: int) -> bytes:
    """A counter point whose attribute is a distinct 1 MiB string: a label of the prometheus exporter."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    attrs.put(rm.resource.attributes, "service.name", "flooder")
    metric = rm.scope_metrics.add().metrics.add(name="flood.calls")
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = 2
    point = metric.sum.data_points.add(as_int=1, start_time_unix_nano=1_767_225_600_000_000_000,
                                       time_unix_nano=1_767_225_601_000_000_000)
    attrs.put(point.attributes, "route", f"route{index:04d}" + "r" * NAME_BYTES)
    return request.SerializeToString()


def post(port: int, body: bytes, path: str = "/v1/traces") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        return answer.read().decode()


def test_megabyte_model_and_team_names_leave_memory_and_metrics_bounded(tmp_path):
    config, ports = default_config_on_free_ports()
    relay = RelayProcess(config, tmp_path, ports["health"]).start()
    try:
        # Warm up every path once (parsing, plans, series, a scrape) before the baseline.
        assert post(ports["otlp_http"], huge_span_request(REQUESTS)) == 200
        assert post(ports["otlp_http"], huge_metric_request(REQUESTS), "/v1/metrics") == 200
        scrape(ports["prometheus"])
        before = rss_mb(relay.process.pid)
        for index in range(REQUESTS):
            assert post(ports["otlp_http"], huge_span_request(index)) == 200
            assert post(ports["otlp_http"], huge_metric_request(index), "/v1/metrics") == 200
        deadline = time.monotonic() + 30  # the connector flushes every 5 s
        text = ""
        while time.monotonic() < deadline:
            text = scrape(ports["prometheus"])
            if '"0029' in text and '"route0029' in text:  # the last requests' capped names have reached it
                break
            time.sleep(0.5)
        size = len(text.encode())
        after = rss_mb(relay.process.pid)
        print(f"RSS {before:.1f} MB -> {after:.1f} MB after {REQUESTS} requests; /metrics {size} bytes")
        assert '"0029' in text and '"route0029' in text, "the last requests' series never reached /metrics"
        assert "...[truncated]" in text
        assert size < METRICS_BOUND_BYTES, f"/metrics is {size} bytes"
        assert after - before < RSS_GROWTH_BOUND_MB, f"RSS grew {after - before:.1f} MB"
        telemetry = scrape(ports["telemetry"])
        assert len(telemetry.encode()) < METRICS_BOUND_BYTES
        truncated = [line for line in telemetry.splitlines()
                     if line.startswith("otelcol_connector_genops_metrics_truncated_values_total")]
        # The team of each of the 31 requests, once per request (each is a new plan); the model
        # reached the connector already cut, as the genops processor wrote it into genops.model.
        assert truncated and float(truncated[0].rsplit(" ", 1)[1]) == REQUESTS + 1
        relayed = [line for line in telemetry.splitlines()
                   if line.startswith("otelcol_exporter_prometheus_truncated_values_total")]
        # Each metric request's route attribute, once each.
        assert relayed and float(relayed[0].rsplit(" ", 1)[1]) == REQUESTS + 1
    finally:
        assert relay.stop(timeout=15) == 0
