"""The prometheusremotewrite exporter writes into a real Prometheus (its remote write receiver).

Prometheus runs with no scrape jobs: everything it holds came through remote write.
Its HTTP API then answers PromQL over the counter, gauge, histogram and summary
sent, with their names, labels, values and timestamps. Samples are stamped "now":
Prometheus refuses samples older than its head block can take.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from relay import attrs
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.exporters import prometheusremotewrite as remote_write
from relay.telemetry import SelfMetrics
from tests import promtools
from tests.support import free_port

RESOURCE = {"service.name": "checkout", "service.namespace": "shop", "service.instance.id": "pod-1",
            "host.name": "node-7"}
SERIES_LABELS = {"job": "shop/checkout", "instance": "pod-1", "otel_scope_name": "e2e",
                 "otel_scope_version": "2.0", "cluster": "eu-1", "replica": "a"}
NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK


class Prometheus:
    """A Prometheus server that only receives remote writes, in its own temporary directory."""

    def __init__(self, tmp_path):
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  evaluation_interval: 1m\n")  # no scrape jobs
        self.log_path = tmp_path / "prometheus.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [promtools.binary("prometheus"), "--web.enable-remote-write-receiver",
             f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def write_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout}s")

    def query(self, expr: str) -> list:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        (result,) = self.query(expr)
        return float(result["value"][1])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def prometheus_server(tmp_path):
    server = Prometheus(tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def build_request(now_ns: int) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for key, value in RESOURCE.items():
        attrs.put(rm.resource.attributes, key, value)
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = "e2e", "2.0"

    counter = sm.metrics.add(name="http.requests", unit="{request}", description="Requests served")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    for route, count in (("/pay", 42), ("/cart", 7)):
        point = counter.sum.data_points.add(time_unix_nano=now_ns, start_time_unix_nano=now_ns - 60 * 10**9,
                                            as_int=count)
        attrs.put(point.attributes, "http.route", route)

    gauge = sm.metrics.add(name="queue.depth", unit="{item}")
    gauge.gauge.data_points.add(time_unix_nano=now_ns, as_double=12.5)

    histogram = sm.metrics.add(name="request.duration", unit="s")
    histogram.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    # 10 observations: 2 at or below 0.1, 6 in (0.1, 0.5], 2 in (0.5, 1]; none above.
    histogram.histogram.data_points.add(time_unix_nano=now_ns, count=10, sum=3.9,
                                        explicit_bounds=[0.1, 0.5, 1.0], bucket_counts=[2, 6, 2, 0])

    summary = sm.metrics.add(name="rpc.latency", unit="ms")
    point = summary.summary.data_points.add(time_unix_nano=now_ns, count=100, sum=2500.0)
    point.quantile_values.add(quantile=0.5, value=20.0)
    point.quantile_values.add(quantile=0.99, value=95.0)
    return req


def stale_request(now_ns: int) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for key, value in RESOURCE.items():
        attrs.put(rm.resource.attributes, key, value)
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = "e2e", "2.0"
    gauge = sm.metrics.add(name="queue.depth", unit="{item}")
    gauge.gauge.data_points.add(time_unix_nano=now_ns, flags=NO_RECORDED_VALUE)
    return req


def export(url: str, *requests) -> SelfMetrics:
    cfg, problems = decode(remote_write.Config, {
        "endpoint": url, "namespace": "e2e", "external_labels": {"cluster": "eu-1", "replica": "a"},
        "send_metadata": True,
        # Small enough that each request goes as several WriteRequests.
        "max_batch_size_bytes": 600,
        "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}, "timeout": "10s"})
    assert problems == []
    telemetry = SelfMetrics()
    exporter = remote_write.create(Settings(ComponentID.parse("prometheusremotewrite"), telemetry), cfg)

    async def run():
        await exporter.start()
        try:
            for req in requests:
                await exporter.consume(req)  # raises if Prometheus refused anything
        finally:
            await exporter.shutdown()

    asyncio.run(run())
    return telemetry


def test_counter_gauge_histogram_and_summary_land_in_prometheus(prometheus_server):
    prom = prometheus_server
    now_ns = time.time_ns()
    telemetry = export(prom.write_url, build_request(now_ns))
    assert telemetry.registry.get_sample_value("otelcol_exporter_sent_metric_points_total",
                                               {"exporter": "prometheusremotewrite"}) == 5

    # Names, every label, and the value of the counter: job/instance from the resource,
    # scope labels, the attribute, and the external labels.
    (pay,) = prom.query('e2e_http_requests_total{http_route="/pay"}')
    assert pay["metric"] == {"__name__": "e2e_http_requests_total", "http_route": "/pay", **SERIES_LABELS}
    assert float(pay["value"][1]) == 42
    assert prom.value('sum(e2e_http_requests_total{job="shop/checkout", cluster="eu-1"})') == 49
    # The sample's own time, to the millisecond.
    assert prom.value('timestamp(e2e_http_requests_total{http_route="/cart"})') == pytest.approx(
        (now_ns // 1_000_000) / 1000, abs=1e-6)

    assert prom.value("e2e_queue_depth") == 12.5

    buckets = {r["metric"]["le"]: float(r["value"][1]) for r in prom.query("e2e_request_duration_seconds_bucket")}
    assert buckets == {"0.1": 2, "0.5": 8, "1": 10, "+Inf": 10}
    assert prom.value("e2e_request_duration_seconds_count") == 10
    assert prom.value("e2e_request_duration_seconds_sum") == pytest.approx(3.9)
    # The median is in (0.1, 0.5]: 3 of its 6 observations in, linearly: 0.1 + 0.4 * 3/6.
    assert prom.value("histogram_quantile(0.5, e2e_request_duration_seconds_bucket)") == pytest.approx(0.3)

    quantiles = {r["metric"]["quantile"]: float(r["value"][1]) for r in prom.query("e2e_rpc_latency_milliseconds")}
    assert quantiles == {"0.5": 20.0, "0.99": 95.0}
    assert prom.value("e2e_rpc_latency_milliseconds_sum / e2e_rpc_latency_milliseconds_count") == 25.0

    (info,) = prom.query("e2e_target_info")
    assert info["metric"] == {"__name__": "e2e_target_info", "job": "shop/checkout", "instance": "pod-1",
                              "host_name": "node-7", "cluster": "eu-1", "replica": "a"}

    # Every series Prometheus holds carries the external labels.
    assert prom.query('{__name__=~"e2e_.+", cluster!="eu-1"}') == []
    assert len(prom.query('{__name__=~"e2e_.+"}')) == 14


def test_a_point_without_a_recorded_value_ends_the_series(prometheus_server):
    prom = prometheus_server
    first = time.time_ns()
    export(prom.write_url, build_request(first))
    assert prom.value("e2e_queue_depth") == 12.5
    # A millisecond later at least, so the marker is a new sample, not a duplicate.
    export(prom.write_url, stale_request(max(time.time_ns(), first + 2_000_000)))
    # Prometheus' stale marker hides the series at once; a plain NaN would be returned as "NaN".
    assert prom.query("e2e_queue_depth") == []
    assert prom.value("e2e_http_requests_total{http_route='/pay'}") == 42
    assert not math.isnan(prom.value("count(e2e_http_requests_total)"))
